//! The MiniLM example's own kernels (`examples/embed/ops.wgsl`), each against the CPU reference
//! on small random inputs. No checkpoint needed; the whole model is tests/minilm_model.rs.

mod common;
mod embed_support;

mod embed_app;

use embed_app::{cpu, ops};

use std::sync::OnceLock;

use embed_support::{assert_close, to_f64};
use half::{bf16, f16};
use int8_wgpu::{DType, Gpu, GpuTensor};
use ops::{Kernel, Kernels, Params, Variant, slot};

// ---- helpers --------------------------------------------------------------------------------

fn upload<T: bytemuck::Pod>(gpu: &Gpu, v: &[T]) -> wgpu::Buffer {
    ops::storage(gpu, "test input", std::mem::size_of_val(v) as u64, Some(bytemuck::cast_slice(v))).unwrap()
}

fn upload_as(gpu: &Gpu, v: &[f32], dt: DType) -> wgpu::Buffer {
    match dt {
        DType::F32 => upload(gpu, v),
        DType::F16 => upload(gpu, &v.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>()),
        DType::BF16 => upload(gpu, &v.iter().map(|&x| bf16::from_f32(x)).collect::<Vec<_>>()),
    }
}

fn zeros(gpu: &Gpu, n: usize, dt: DType) -> wgpu::Buffer {
    ops::storage(gpu, "test output", (n * dt.size()) as u64, None).unwrap()
}

fn read(gpu: &Gpu, b: &wgpu::Buffer, n: usize, dt: DType) -> Vec<f32> {
    GpuTensor::from_buffer(gpu, b.clone(), &[n], dt).unwrap().read_f32().unwrap()
}

/// Records one dispatch and submits it.
fn run(gpu: &Gpu, d: &ops::Dispatch) {
    let mut enc = gpu.device().create_command_encoder(&Default::default());
    d.record(&mut enc.begin_compute_pass(&Default::default()));
    gpu.queue().submit([enc.finish()]);
}

/// Values as a tensor of `dt` holds them (what the GPU reads).
fn rounded(v: &[f32], dt: DType) -> Vec<f32> {
    v.iter().map(|&x| dt.round(x)).collect()
}

/// One unit in the last place of `dt` at `x` (f16's subnormal spacing at the bottom).
fn ulp(x: f64, dt: DType) -> f64 {
    let bits = match dt {
        DType::F32 => 23,
        DType::F16 => 10,
        DType::BF16 => 7,
    };
    let e = x.abs().max(f64::MIN_POSITIVE).log2().floor();
    let spacing = 2f64.powf(e - bits as f64);
    if dt == DType::F16 { spacing.max(2f64.powi(-24)) } else { spacing }
}

fn kernels_or_skip() -> Option<(Gpu, &'static Kernels)> {
    static K: OnceLock<Kernels> = OnceLock::new();
    let gpu = common::gpu()?;
    Some((gpu.clone(), K.get_or_init(|| Kernels::new(&gpu).unwrap())))
}

macro_rules! kernels_or_skip {
    () => {
        match kernels_or_skip() {
            Some(k) => k,
            None => return,
        }
    };
}

// ---- (1) each kernel against the CPU reference ---------------------------------------------------

/// `ops.wgsl` parses and validates with naga on any machine, no device needed.
#[test]
fn kernels_wgsl_validates_without_a_device() {
    use naga::valid::{Capabilities, ValidationFlags, Validator};
    let module = naga::front::wgsl::parse_str(ops::SOURCE)
        .unwrap_or_else(|e| panic!("ops.wgsl: {}", e.emit_to_string(ops::SOURCE)));
    // unpack2x16float / pack2x16float (f16 activations) need only this capability, which GL
    // adapters report as DownlevelFlags::F16_IN_F32; no SHADER_F16.
    Validator::new(ValidationFlags::all(), Capabilities::SHADER_FLOAT16_IN_FLOAT32)
        .validate(&module)
        .unwrap_or_else(|e| panic!("ops.wgsl: {e:?}"));
    for k in Kernel::ALL {
        assert!(module.entry_points.iter().any(|e| e.name == k.entry()), "no entry point {}", k.entry());
    }
}

/// Word + type + position embeddings: two f32 additions of values in [-1, 1), so at most two
/// roundings of a sum below 3: |gpu - f64| <= 2 * 3 * 2^-24 < 4e-7.
#[test]
fn embed_kernel_matches_cpu() {
    let (gpu, kn) = kernels_or_skip!();
    let (vocab, positions, types, n, seq, batch) = (7, 5, 2, 6, 3, 2);
    let word = common::rand_vec(vocab * n, 1);
    let pos = common::rand_vec(positions * n, 2);
    let typ = common::rand_vec(types * n, 3);
    let ids: Vec<u32> = vec![3, 6, 0, 1, 1, 5];
    let tys: Vec<u32> = vec![0, 1, 1, 0, 0, 1];
    let m = batch * seq;
    let out = zeros(&gpu, m * n, DType::F32);
    let [i0, i1, i2, i3, i4] = slot::IN;
    let p = Params { m: m as u32, n: n as u32, k: positions as u32, seq: seq as u32, ..Params::default() };
    let bufs = [upload(&gpu, &ids), upload(&gpu, &tys), upload(&gpu, &word), upload(&gpu, &pos), upload(&gpu, &typ)];
    let binds = [(i0, &bufs[0]), (i1, &bufs[1]), (i2, &bufs[2]), (i3, &bufs[3]), (i4, &bufs[4]), (slot::OUT[0], &out)];
    run(&gpu, &kn.dispatch(Kernel::Embed, Variant::default(), p, &binds).unwrap());
    let want = cpu::embed(&ids, &tys, &word, &pos, &typ, n, seq);
    assert_close("embed", &read(&gpu, &out, m * n, DType::F32), &want, |_, _| 4e-7);
}

/// (Residual +) LayerNorm, rows of 40 and 384 columns (the strided loops, and MiniLM's width),
/// inputs in f32, bf16 and f16. Tolerance for the f32 output: 2e-6 * (1 + |y|) — the f32 sums
/// of n <= 384 terms err by ~n * 2^-24 relative to the row's magnitudes, then scaled by
/// 1/std (measured below 5e-7 here). The 16-bit copy is the f32 output rounded to nearest
/// (bf16: bit-exact; f16 by `pack2x16float`, whose rounding WGSL leaves to the device: within
/// one f16 ulp).
#[test]
fn layer_norm_kernel_matches_cpu() {
    let (gpu, kn) = kernels_or_skip!();
    for (n, in_dt, residual) in
        [(40, DType::F32, false), (40, DType::BF16, true), (384, DType::F16, true), (384, DType::F32, true)]
    {
        let ctx = format!("layer_norm n={n} in={in_dt} residual={residual}");
        let m = 5;
        // An offset and a spread per row, as hidden states have.
        let x: Vec<f32> =
            common::rand_vec(m * n, 10).iter().enumerate().map(|(i, v)| 3.0 * v + (i / n) as f32).collect();
        let x = rounded(&x, in_dt);
        let res = common::rand_vec(m * n, 11);
        let gamma: Vec<f32> = common::rand_vec(n, 12).iter().map(|v| 1.0 + 0.5 * v).collect();
        let beta = common::rand_vec(n, 13);
        let out = zeros(&gpu, m * n, DType::F32);
        let act = zeros(&gpu, m * n, in_dt);
        let (xb, rb, gb, bb) =
            (upload_as(&gpu, &x, in_dt), upload(&gpu, &res), upload(&gpu, &gamma), upload(&gpu, &beta));
        let [i0, i1, i2, i3, _] = slot::IN;
        let [o0, o1] = slot::OUT;
        let write_act = in_dt != DType::F32;
        let mut binds = vec![(i0, &xb), (i2, &gb), (i3, &bb), (o0, &out)];
        if residual {
            binds.push((i1, &rb));
        }
        if write_act {
            binds.push((o1, &act));
        }
        let v = Variant { in_dt, out_dt: in_dt, residual, write_act };
        let p = Params { m: m as u32, n: n as u32, eps: 1e-12, ..Params::default() };
        run(&gpu, &kn.dispatch(Kernel::LayerNorm, v, p, &binds).unwrap());
        let r64 = to_f64(&res);
        let want = cpu::layer_norm(&to_f64(&x), residual.then_some(&r64[..]), &gamma, &beta, n, 1e-12);
        let got = read(&gpu, &out, m * n, DType::F32);
        assert_close(&ctx, &got, &want, |_, w| 2e-6 * (1.0 + w.abs()));
        if write_act {
            let copy = read(&gpu, &act, m * n, in_dt);
            for (i, (&c, &g)) in copy.iter().zip(&got).enumerate() {
                let exact = in_dt.round(g);
                let ok = if in_dt == DType::BF16 {
                    c.to_bits() == exact.to_bits()
                } else {
                    f64::from((c - exact).abs()) <= ulp(f64::from(exact), in_dt)
                };
                assert!(ok, "{ctx}: 16-bit copy [{i}] {c:e}, f32 result {g:e} rounds to {exact:e}");
            }
        }
    }
}

/// Attention with the padding mask: 3 sentences of 5 tokens, 3 heads of 4 columns; the second
/// sentence has 2 padded tokens, the third is all padding (zeros out, no NaN). Scores up to
/// ~8 in magnitude (q scaled by 4) exercise the softmax's max subtraction. Probabilities:
/// |gpu - f64| <= 2e-6 (score errors ~4 * 2^-24 * 16, exp within 3 + 2|x| ulp: measured below
/// 5e-7); padded keys exactly 0. Context: f32 out within 1e-5 (sums of 5 terms |p v| <= 1);
/// 16-bit q, k, v in and context out within 1e-5 plus one ulp of the output dtype.
#[test]
fn attention_kernels_match_cpu() {
    let (gpu, kn) = kernels_or_skip!();
    let (batch, seq, heads, d) = (3, 5, 3, 4);
    let (n, m) = (heads * d, batch * seq);
    let mask: Vec<u32> = [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 0, 0, 0, 0]].concat();
    for dt in [DType::F32, DType::BF16, DType::F16] {
        let ctx = format!("attention {dt}");
        let q: Vec<f32> = rounded(&common::rand_vec(m * n, 20).iter().map(|v| 4.0 * v).collect::<Vec<_>>(), dt);
        let k = rounded(&common::rand_vec(m * n, 21), dt);
        let v = rounded(&common::rand_vec(m * n, 22), dt);
        let (qb, kb, vb, mb) =
            (upload_as(&gpu, &q, dt), upload_as(&gpu, &k, dt), upload_as(&gpu, &v, dt), upload(&gpu, &mask));
        let probs = zeros(&gpu, batch * heads * seq * seq, DType::F32);
        let out = zeros(&gpu, m * n, dt);
        let p = Params {
            m: m as u32,
            n: n as u32,
            seq: seq as u32,
            heads: heads as u32,
            head_dim: d as u32,
            scale: 1.0 / (d as f32).sqrt(),
            ..Params::default()
        };
        let vt = Variant { in_dt: dt, out_dt: dt, ..Variant::default() };
        let [i0, i1, i2, i3, _] = slot::IN;
        let o0 = slot::OUT[0];
        let a = kn.dispatch(Kernel::AttentionProbs, vt, p, &[(i0, &qb), (i1, &kb), (i3, &mb), (o0, &probs)]).unwrap();
        let c = kn.dispatch(Kernel::AttentionContext, vt, p, &[(i0, &probs), (i2, &vb), (o0, &out)]).unwrap();
        let mut enc = gpu.device().create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            a.record(&mut pass);
            c.record(&mut pass);
        }
        gpu.queue().submit([enc.finish()]);
        let want_p = cpu::attention_probs(&to_f64(&q), &to_f64(&k), &mask, seq, heads, n);
        let got_p = read(&gpu, &probs, want_p.len(), DType::F32);
        assert_close(&format!("{ctx} probabilities"), &got_p, &want_p, |_, _| 2e-6);
        for (i, (&g, &w)) in got_p.iter().zip(&want_p).enumerate() {
            assert!(w != 0.0 || g == 0.0, "{ctx}: padded key's probability [{i}] is {g:e}, not 0");
        }
        let want_c = cpu::attention_context(&want_p, &to_f64(&v), seq, heads, n);
        let got_c = read(&gpu, &out, m * n, dt);
        assert!(got_c.iter().all(|x| x.is_finite()), "{ctx}: {got_c:?}");
        let tol = |_, w: f64| 1e-5 + if dt == DType::F32 { 0.0 } else { ulp(w, dt) };
        assert_close(&format!("{ctx} context"), &got_c, &want_c, tol);
        assert!(got_c[2 * seq * n..].iter().all(|&x| x == 0.0), "{ctx}: an all-padding sentence gives zeros");
    }
}

/// GELU (erf form) over [-10, 10] and tiny values: |gpu - f64 erf GELU| <= 5e-7 * max(|x|, 1)
/// in f32 (erfc's fit has relative error < 1.2e-7), and for x in [-6, -0.5], where GELU is a
/// small tail, relative error <= 2e-5 (the erfc form keeps it; exp errs up to 3 + 2|x²/2| ulp).
/// 16-bit in and out: within one ulp of the output dtype of the f64 value.
#[test]
fn gelu_kernel_matches_erf() {
    let (gpu, kn) = kernels_or_skip!();
    let mut x: Vec<f32> = (0..400).map(|i| -10.0 + 20.0 * i as f32 / 399.0).collect();
    x.extend([0.0, 1e-30, -1e-30, 1e-7, -1e-7, 0.5, -0.5, 3.0, -3.0]);
    for dt in [DType::F32, DType::BF16, DType::F16] {
        let xs = rounded(&x, dt);
        let xb = upload_as(&gpu, &xs, dt);
        let out = zeros(&gpu, xs.len(), dt);
        let v = Variant { in_dt: dt, out_dt: dt, ..Variant::default() };
        let p = Params { m: 1, n: xs.len() as u32, ..Params::default() };
        run(&gpu, &kn.dispatch(Kernel::Gelu, v, p, &[(slot::IN[0], &xb), (slot::OUT[0], &out)]).unwrap());
        let want: Vec<f64> = xs.iter().map(|&v| cpu::gelu(f64::from(v))).collect();
        let got = read(&gpu, &out, xs.len(), dt);
        if dt == DType::F32 {
            assert_close("gelu f32", &got, &want, |i, _| 5e-7 * f64::from(xs[i].abs()).max(1.0));
            for (i, &xi) in xs.iter().enumerate().filter(|(_, v)| (-6.0..=-0.5).contains(*v)) {
                let rel = ((f64::from(got[i]) - want[i]) / want[i]).abs();
                assert!(rel <= 2e-5, "gelu({xi}) = {:e}, f64 {:e}: relative error {rel:e}", got[i], want[i]);
            }
        } else {
            assert_close(&format!("gelu {dt}"), &got, &want, |_, w| ulp(w, dt));
        }
    }
}

/// Mean pooling over the mask and L2 normalisation, 3 sentences of 4 tokens of 10 columns,
/// one sentence all padding (pools to zeros, normalises to zeros): f32 sums of <= 4 terms, a
/// square root and a division: |gpu - f64| <= 1e-6.
#[test]
fn pooling_kernels_match_cpu() {
    let (gpu, kn) = kernels_or_skip!();
    let (batch, seq, n) = (3, 4, 10);
    let mask: Vec<u32> = [[1, 1, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]].concat();
    let x = common::rand_vec(batch * seq * n, 30);
    let (xb, mb) = (upload(&gpu, &x), upload(&gpu, &mask));
    let pooled = zeros(&gpu, batch * n, DType::F32);
    let out = zeros(&gpu, batch * n, DType::F32);
    let p = Params { m: (batch * seq) as u32, n: n as u32, seq: seq as u32, ..Params::default() };
    let [i0, _, _, i3, _] = slot::IN;
    let o0 = slot::OUT[0];
    let pool = kn.dispatch(Kernel::MeanPool, Variant::default(), p, &[(i0, &xb), (i3, &mb), (o0, &pooled)]).unwrap();
    let rows = Params { m: batch as u32, ..p };
    let norm = kn.dispatch(Kernel::L2Normalize, Variant::default(), rows, &[(i0, &pooled), (o0, &out)]).unwrap();
    let mut enc = gpu.device().create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pool.record(&mut pass);
        norm.record(&mut pass);
    }
    gpu.queue().submit([enc.finish()]);
    let want_pool = cpu::mean_pool(&to_f64(&x), &mask, seq, n);
    assert_close("mean_pool", &read(&gpu, &pooled, batch * n, DType::F32), &want_pool, |_, _| 1e-6);
    let want = cpu::l2_normalize(&want_pool, n);
    assert_close("l2_normalize", &read(&gpu, &out, batch * n, DType::F32), &want, |_, _| 1e-6);
}

/// The f32 baseline's dense kernel, at shapes off its 4 x 4 and 32 x 32 tiles: f32
/// accumulation of k products errs by at most ~k * 2^-24 * Σ|x w|; allowed 2 (k + 2) * 2^-24 *
/// (Σ|x w| + |b|).
#[test]
fn dense_kernel_matches_cpu() {
    let (gpu, kn) = kernels_or_skip!();
    for (m, n, k) in [(5, 37, 12), (33, 70, 16), (1, 4, 384)] {
        let x = common::rand_vec(m * k, 40);
        let w = common::rand_vec(n * k, 41);
        let b = common::rand_vec(n, 42);
        let (xb, wb, bb) = (upload(&gpu, &x), upload(&gpu, &w), upload(&gpu, &b));
        let out = zeros(&gpu, m * n, DType::F32);
        let p = Params { m: m as u32, n: n as u32, k: k as u32, ..Params::default() };
        let [i0, i1, i2, _, _] = slot::IN;
        let binds = [(i0, &xb), (i1, &wb), (i2, &bb), (slot::OUT[0], &out)];
        run(&gpu, &kn.dispatch(Kernel::Dense, Variant::default(), p, &binds).unwrap());
        let want = cpu::dense(&to_f64(&x), &w, &b, n, k);
        let mag: Vec<f64> = (0..m * n)
            .map(|i| {
                let (r, c) = (i / n, i % n);
                (0..k).map(|j| f64::from((x[r * k + j] * w[c * k + j]).abs())).sum::<f64>() + f64::from(b[c].abs())
            })
            .collect();
        let u = 2f64.powi(-24);
        assert_close(&format!("dense [{m}, {k}] x [{n}, {k}]"), &read(&gpu, &out, m * n, DType::F32), &want, |i, _| {
            2.0 * (k as f64 + 2.0) * u * mag[i]
        });
    }
}

/// Bad launches are errors: a binding the kernel does not have.
#[test]
fn kernel_dispatch_refuses_unknown_bindings() {
    let (gpu, kn) = kernels_or_skip!();
    let b = zeros(&gpu, 4, DType::F32);
    let e = kn.dispatch(Kernel::Gelu, Variant::default(), Params::default(), &[(slot::IN[3], &b)]).unwrap_err();
    assert!(e.to_string().contains("no binding"), "{e}");
}
