//! Device test of common.wgsl's exact division and quantize_value against the CPU, through the
//! probe kernel `shaders/test/div_check.wgsl` (compiled only here).

use crate::gpu::Gpu;
use crate::gpu::bindings::slot;
use crate::gpu::family::Family;
use crate::gpu::params::{QuantizeParams, WG};
use crate::gpu::shaders::{Kernel, Variant};
use crate::{DType, reference};

/// The test device (as `tests/common`): under `CI=true` a missing adapter fails the test,
/// elsewhere the test reports itself skipped.
fn gpu_or_skip() -> Option<Gpu> {
    match Gpu::new() {
        Ok(g) => {
            eprintln!("GPU tests run on: {}", g.describe());
            Some(g)
        }
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
            panic!("CI=true and no GPU adapter: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: no GPU adapter ({e})");
            None
        }
    }
}

/// Runs `div_check_main` on `(a, b, zp)` cases. Per case: the bits of `div_rn(a, b)`, then
/// `quantize_value`, `quantize_with` from a quotient off by a few ULP, `quantize_exact`.
fn div_check(gpu: &Gpu, cases: &[(f32, f32, i8)]) -> Vec<[u32; 4]> {
    const CHUNK: usize = 1 << 18;
    let fam = gpu.family(Family::DivCheck).unwrap();
    let pipeline = gpu.pipeline(Kernel::DivCheck, Variant::new(DType::F32, DType::F32)).unwrap();
    let unused: Vec<wgpu::Buffer> = (0..4).map(|_| gpu.zeroed_buffer("unused", 16).unwrap()).collect();
    let mut found = Vec::with_capacity(cases.len());
    for chunk in cases.chunks(CHUNK) {
        let words: Vec<u32> =
            chunk.iter().flat_map(|&(a, b, zp)| [a.to_bits(), b.to_bits(), i32::from(zp) as u32]).collect();
        let input = gpu.storage_buffer("div check cases", bytemuck::cast_slice(&words)).unwrap();
        let out = gpu.zeroed_buffer("div check results", 16 * chunk.len() as u64).unwrap();
        let params = QuantizeParams { elems: chunk.len() as u32, ..Default::default() };
        let params = gpu.storage_buffer("div check params", bytemuck::bytes_of(&params)).unwrap();
        let group = gpu.bind_group(
            &fam,
            &[
                (slot::PARAMS, &params),
                (slot::OUT, &out),
                (slot::Q_INPUT, &input),
                (slot::Q_STATS, &unused[0]),
                (slot::Q_FLAGS, &unused[1]),
                (slot::Q_SCALES, &unused[2]),
                (slot::Q_ZERO_POINTS, &unused[3]),
            ],
        );
        let mut enc = gpu.device().create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &group, &[]);
            let (gx, gy) = gpu.grid((chunk.len() as u32).div_ceil(WG as u32));
            pass.dispatch_workgroups(gx, gy, 1);
        }
        gpu.queue().submit([enc.finish()]);
        let bytes = pollster::block_on(gpu.read_bytes(&out, 0, out.size())).unwrap();
        found.extend(bytemuck::pod_collect_to_vec::<u8, [u32; 4]>(&bytes));
    }
    found
}

/// xorshift64, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `lo ..= hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }

    fn zp(&mut self) -> i8 {
        self.range(-128, 127) as i8
    }

    /// A normal f32 with biased exponent `e` and a random significand and sign (or positive).
    fn normal(&mut self, e: i64, signed: bool) -> f32 {
        let sign = if signed { (self.next() as u32) & 0x8000_0000 } else { 0 };
        f32::from_bits(sign | ((e as u32) << 23) | ((self.next() >> 41) as u32 & 0x7f_ffff))
    }
}

/// `f32` from an exactly representable `f64` (asserts it is).
fn exact(v: f64) -> f32 {
    assert_eq!(f64::from(v as f32), v, "{v:e} is not an f32");
    v as f32
}

/// The cases: random pairs over the whole domain, edge cases, and near-tie quantization.
fn cases() -> Vec<(f32, f32, i8)> {
    let mut rng = Rng(0x5DEE_CE66_D1CE_F00D);
    let mut c = Vec::new();
    // Random pairs: a third with any exponents, a third with normal quotients, a third whose
    // quotients straddle the subnormal range.
    for i in 0..(1 << 20) {
        let (ea, eb) = match i % 3 {
            0 => (rng.range(1, 254), rng.range(1, 254)),
            1 => {
                let eb = rng.range(40, 214);
                (eb + rng.range(-30, 30), eb)
            }
            _ => {
                let ea = rng.range(1, 100);
                (ea, ea + rng.range(100, 152))
            }
        };
        let (a, b) = (rng.normal(ea, true), rng.normal(eb, false));
        c.push((a, b, rng.zp()));
    }
    let bs = [1.0, 0.75, 3.0, 127.0, 255.0, 1e-30, 1e10, 1e30, f32::MIN_POSITIVE, f32::MAX, 1.0 - f32::EPSILON / 2.0];
    for &b in &bs {
        for a in [0.0, 1.0, b, 3e38, f32::MAX, f32::MIN_POSITIVE, f32::INFINITY, 1.5 * f32::MIN_POSITIVE] {
            for a in [a, -a] {
                c.push((a, b, rng.zp()));
            }
        }
        // a = b * 2^k: exact powers of two, from overflow down through every subnormal
        // exponent to the tie 2^-150 (rounds to 0) and below.
        for k in -160..=130 {
            let a = f64::from(b) * 2f64.powi(k);
            if a >= f64::from(f32::MIN_POSITIVE) && a <= f64::from(f32::MAX) {
                c.push((exact(a), b, rng.zp()));
                c.push((-exact(a), b, rng.zp()));
            }
        }
    }
    // Around the smallest normal and at the bottom of the subnormals: 2^-126 * small / large.
    for m in 1..=8 {
        for b in [1.0, 1.5, 2.0, 3.0, 1e10, 1e30, f32::MAX] {
            let a = exact(f64::from(m) * 2f64.powi(-126));
            c.push((a, b, rng.zp()));
        }
    }
    // Exact ties in the subnormal range: quotient n * 2^-150 (n odd), for b = odd c * 2^k,
    // with neighbours of a on either side (just above or below the tie). n = 2^24 - 1 is
    // the tie that rounds up to the smallest normal.
    for i in 0..20_000 {
        let c_odd = if i == 0 { 1 } else { 2 * rng.range(0, 1023) + 1 };
        let n = if i == 0 { (1 << 24) - 1 } else { 2 * rng.range(0, ((1 << 24) / c_odd - 1) / 2) + 1 };
        let k = rng.range(24, 116) as i32;
        let b = exact(c_odd as f64 * 2f64.powi(k));
        let a = exact((c_odd * n) as f64 * 2f64.powi(k - 150));
        for d in -2i32..=2 {
            let a = f32::from_bits(a.to_bits().wrapping_add_signed(d));
            c.push((a, b, rng.zp()));
            c.push((-a, b, rng.zp()));
        }
    }
    // Near-tie quantization: x = (k + 0.5) * s and its neighbours within 3 ULP.
    for _ in 0..50_000 {
        let e = rng.range(127 - 40, 127 + 20);
        let s = rng.normal(e, false);
        let k = rng.range(-255, 255);
        let x = ((k as f64 + 0.5) * f64::from(s)) as f32;
        let zp = rng.zp();
        for d in -3i32..=3 {
            c.push((f32::from_bits(x.to_bits().wrapping_add_signed(d)), s, zp));
        }
    }
    c
}

/// `div_rn` and the quantize_value paths against the CPU's correctly rounded division, bit
/// for bit. lavapipe and llvmpipe divide exactly, so the parity tests alone would not see a
/// wrong `div_rn`; this probe checks it directly, and checks `quantize_value`'s fast path
/// against a device quotient that is off by up to 3 ULP.
#[test]
fn div_rn_and_quantize_value_match_cpu_bit_for_bit() {
    let Some(gpu) = gpu_or_skip() else { return };
    let cases = cases();
    let found = div_check(&gpu, &cases);
    assert_eq!(found.len(), cases.len());
    let names = ["div_rn bits", "quantize_value", "quantize_value (quotient off by ULPs)", "quantize_exact"];
    let mut bad = vec![Vec::new(); 4];
    for (&(a, b, zp), got) in cases.iter().zip(&found) {
        let q = i32::from(reference::quantize_value(a, b, zp)) as u32;
        let want = [(a / b).to_bits(), q, q, q];
        for j in 0..4 {
            if got[j] != want[j] {
                let show = |w: u32| {
                    if j == 0 { format!("{:e} ({w:#010x})", f32::from_bits(w)) } else { (w as i32).to_string() }
                };
                bad[j].push(format!(
                    "a {a:e} ({:#010x}) b {b:e} ({:#010x}) zp {zp}: gpu {} cpu {}",
                    a.to_bits(),
                    b.to_bits(),
                    show(got[j]),
                    show(want[j])
                ));
            }
        }
    }
    let report: Vec<String> = (0..4)
        .filter(|&j| !bad[j].is_empty())
        .map(|j| {
            format!("{}: {} mismatches, e.g.\n  {}", names[j], bad[j].len(), bad[j][..bad[j].len().min(8)].join("\n  "))
        })
        .collect();
    assert!(report.is_empty(), "{} cases checked:\n{}", cases.len(), report.join("\n"));
    eprintln!("div_rn / quantize_value: {} cases checked, all equal to the CPU", cases.len());
}
