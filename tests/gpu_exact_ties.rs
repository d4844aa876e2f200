//! 16-bit outputs at exact ties, bit for bit: dequantization and every kernel of the linear
//! layers (weight-only and int8 activations), each forced through a tuning file.
//!
//! Random scales almost never put a result exactly halfway between two bf16 or f16 values, and
//! the linear tests allow half an ulp, so rounding ties away from zero instead of to even would
//! pass them. Here every output is an exact tie: a scale of `1 + 2^-8` (bf16 keeps 7 fraction
//! bits, so the dropped 16 bits are exactly `0x8000`) or `1 + 2^-11` (f16 keeps 10: the dropped
//! 13 bits are exactly `0x1000`) times a power of two. A second scale per dtype puts the kept
//! part's last bit at 1, where ties to even round up (truncation would round down).

mod common;

use half::{bf16, f16};
use int8_wgpu::gpu::LinearKernel;
use int8_wgpu::{
    ActivationQuant, DType, Element, Gpu, GpuOptions, GpuQuantizedTensor, Granularity, QuantScheme, QuantizedLinear,
    QuantizedTensor, reference,
};
use serde_json::{Value, json};

/// Scales whose products with powers of two are exact ties in `dtype`: the even neighbour below
/// (`1 + 2^-8`: `0x3F808000`), then above (`1 + 2^-7 + 2^-8`: `0x3F818000`); for f16 `1 + 2^-11`
/// (`0x3F801000`) and `1 + 2^-10 + 2^-11` (`0x3F803000`).
fn tie_scales(dtype: DType) -> [f32; 2] {
    let bits = if dtype == DType::BF16 { [0x3F80_8000, 0x3F81_8000] } else { [0x3F80_1000, 0x3F80_3000] };
    bits.map(f32::from_bits)
}

/// Int8 weight values less the zero point: powers of two, so every product with a tie scale is
/// a tie.
const V: [i32; 8] = [1, -1, 2, 4, -8, 16, 64, -64];
/// Activation values: powers of two.
const X: [f32; 4] = [1.0, 2.0, -1.0, 0.5];
const N: usize = 8;
const K: usize = 32;

/// Whether `v` lies exactly halfway between two neighbours of `dtype` (normal range).
fn is_tie(v: f32, dtype: DType) -> bool {
    let b = v.to_bits();
    if dtype == DType::BF16 { b & 0xffff == 0x8000 } else { b & 0x1fff == 0x1000 }
}

/// An `[N, K]` weight of `scheme` whose value at `(j, c)` dequantizes to
/// `tie scale · V[(j + c) % 8]`; asymmetric schemes get zero points 0, 3 and -5.
fn tie_weight(scheme: QuantScheme, dtype: DType) -> QuantizedTensor {
    let layout = scheme.layout(&[N, K]).unwrap();
    let params = layout.num_params();
    let scales: Vec<f32> = (0..params).map(|p| tie_scales(dtype)[p % 2]).collect();
    let zps: Vec<i8> = (0..params).map(|p| [0, 3, -5][p % 3]).collect();
    let values = (0..N * K)
        .map(|e| {
            let z = if scheme.has_zero_point() { i32::from(zps[layout.param_of(e)]) } else { 0 };
            i8::try_from(V[(e / K + e % K) % 8] + z).unwrap()
        })
        .collect();
    QuantizedTensor::new(&[N, K], scheme, values, scales, scheme.has_zero_point().then_some(zps)).unwrap()
}

/// A 16-bit `y` as its bit patterns.
fn bits<T: Element>(y: &[T]) -> Vec<u16> {
    y.iter().map(|v| u16::from_le_bytes(bytemuck::bytes_of(v).try_into().unwrap())).collect()
}

/// `Err` naming the first element where `got` differs from `want` (in hex), and how many do.
fn same_bits(got: &[u16], want: &[u16], ctx: &str) -> Result<(), String> {
    assert_eq!(got.len(), want.len(), "{ctx}");
    let bad: Vec<usize> = (0..got.len()).filter(|&i| got[i] != want[i]).collect();
    match bad.first() {
        None => Ok(()),
        Some(&i) => Err(format!(
            "{ctx}: {} of {} differ; first, element {i}: {:#06x}, not {:#06x}",
            bad.len(),
            got.len(),
            got[i],
            want[i]
        )),
    }
}

/// Panics listing every failure, so that a rounding bug shows on which kernels it is seen.
fn assert_none_failed(failures: Vec<String>) {
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
}

/// The rounding of exact f32 values `exact` to `T`, ties to even, after checking that each is a
/// tie (so the test tests what it says).
fn expected<T: Element>(exact: &[f64]) -> Vec<T> {
    exact
        .iter()
        .map(|&e| {
            let v = e as f32;
            assert_eq!(f64::from(v), e, "{e} is not exact in f32");
            assert!(is_tie(v, T::DTYPE), "{v:e} ({:#010x}) is not a {} tie", v.to_bits(), T::DTYPE);
            T::from_f32(v)
        })
        .collect()
}

fn schemes() -> [QuantScheme; 4] {
    [
        QuantScheme::symmetric(Granularity::PerTensor),
        QuantScheme::symmetric(Granularity::PerChannel { axis: 0 }),
        QuantScheme::asymmetric(Granularity::PerChannel { axis: 0 }),
        QuantScheme::symmetric(Granularity::PerGroup { size: 16 }),
    ]
}

/// The tuning files' name of the row class of `m` activation rows.
fn row_class(m: usize) -> &'static str {
    match m {
        0 | 1 => "1",
        2..=8 => "2-8",
        9..=32 => "9-32",
        33..=128 => "33-128",
        _ => ">128",
    }
}

/// Loads a tuning file into `gpu` that makes `variant` the choice for `m` rows of an `[N, K]`
/// weight of `activation` in `family` (nothing else).
fn force(gpu: &Gpu, dir: &common::TempDir, family: &str, activation: DType, m: usize, w: &QuantizedTensor, v: &str) {
    let path = dir.path().join("force.json");
    gpu.clear_tuning();
    gpu.save_tuning(&path).unwrap();
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    doc["entries"] = json!([{
        "family": family, "activation": activation.to_string(), "in_class": K, "out_class": N,
        "rows": row_class(m), "grouped": w.layout().inner < K,
        "zero_point": w.scheme().has_zero_point(), "variant": v,
    }]);
    std::fs::write(&path, doc.to_string()).unwrap();
    assert_eq!(gpu.load_tuning(&path).unwrap(), 1);
}

#[test]
fn dequantization_rounds_exact_ties_to_even() {
    let gpu = gpu_or_skip!();
    let mut failures = Vec::new();
    for s in schemes() {
        for dtype in [DType::BF16, DType::F16] {
            let w = tie_weight(s, dtype);
            let exact: Vec<f64> = w.dequantize().iter().map(|&v| f64::from(v)).collect();
            let gq = GpuQuantizedTensor::from_host(&gpu, &w).unwrap();
            let out = gq.dequantize(dtype).unwrap();
            let ctx = format!("{s:?} to {dtype}");
            let (got, want) = match dtype {
                DType::BF16 => (bits(&out.read::<bf16>().unwrap()), bits(&expected::<bf16>(&exact))),
                _ => (bits(&out.read::<f16>().unwrap()), bits(&expected::<f16>(&exact))),
            };
            failures.extend(same_bits(&got, &want, &ctx).err());
        }
    }
    // f16's subnormal range (the shader's other branch): 1.5 · 2^-24 times an odd q is a tie
    // between two multiples of 2^-24, the smallest subnormal step.
    let s = QuantScheme::symmetric(Granularity::PerTensor);
    let q = [1i8, 3, 5, 7, -1, -3, -5, -7];
    let w = QuantizedTensor::new(&[1, 8], s, q.to_vec(), vec![1.5 * 2f32.powi(-24)], None).unwrap();
    let got =
        bits(&GpuQuantizedTensor::from_host(&gpu, &w).unwrap().dequantize(DType::F16).unwrap().read::<f16>().unwrap());
    let want = [0x0002, 0x0004, 0x0008, 0x000a, 0x8002, 0x8004, 0x8008, 0x800a];
    failures.extend(same_bits(&got, &want, "f16 subnormal ties").err());
    assert_eq!(bits(&w.dequantize().iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>()), want, "CPU");
    assert_none_failed(failures);
    // The case: (1 + 2^-8) · 1 to bf16 is 0x3F80 (to even), not 0x3F81 (away).
    let w = tie_weight(QuantScheme::symmetric(Granularity::PerTensor), DType::BF16);
    let d = GpuQuantizedTensor::from_host(&gpu, &w).unwrap().dequantize(DType::BF16).unwrap();
    assert_eq!(d.read::<bf16>().unwrap()[..2].iter().map(|v| v.to_bits()).collect::<Vec<_>>(), [0x3F80, 0xBF80]);
}

/// Runs `x` through the weight-only layer on `variant` and compares with the exact ties.
fn linear_case<T: Element>(
    gpu: &Gpu,
    dir: &common::TempDir,
    w: &QuantizedTensor,
    m: usize,
    variant: &str,
) -> Result<(), String> {
    // Row r is one-hot: X[r % 4] at column (5r + 1) % K.
    let col = |r: usize| (5 * r + 1) % K;
    let mut x = vec![T::from_f32(0.0); m * K];
    for r in 0..m {
        x[r * K + col(r)] = T::from_f32(X[r % 4]);
    }
    let dq = w.dequantize();
    let exact: Vec<f64> =
        (0..m * N).map(|i| f64::from(X[(i / N) % 4]) * f64::from(dq[(i % N) * K + col(i / N)])).collect();
    force(gpu, dir, "linear", T::DTYPE, m, w, variant);
    let layer = QuantizedLinear::from_quantized::<T>(gpu, w, None, T::DTYPE).unwrap();
    let chosen = gpu.linear_kernel(layer.weight(), T::DTYPE, None, m);
    let ctx = format!("{variant} {:?} {} m={m}", w.scheme(), T::DTYPE);
    assert_eq!(chosen, variant.parse::<LinearKernel>().unwrap(), "{ctx}: the tuning file did not force it");
    let y = layer.forward_host(&x, &[m, K]).unwrap();
    let want = bits(&expected::<T>(&exact));
    assert_eq!(bits(&reference::linear(&x, w, None).unwrap()), want, "{ctx}: CPU reference");
    same_bits(&bits(&y), &want, &ctx)
}

#[test]
fn every_weight_only_kernel_rounds_exact_ties_to_even() {
    let _ = gpu_or_skip!();
    let gpu = Gpu::with_options(GpuOptions::default()).unwrap();
    let dir = common::TempDir::new("ties-linear");
    let variants = ["rows", "rows16", "rows16/wide", "lanes/1", "lanes/2", "lanes/4", "generic", "gemm"];
    let mut failures = Vec::new();
    for s in schemes() {
        for v in variants {
            // The GEMM serves more than one GEMV pass only.
            for m in [1, 3, 12].into_iter().filter(|&m| v != "gemm" || m > 8) {
                failures.extend(linear_case::<bf16>(&gpu, &dir, &tie_weight(s, DType::BF16), m, v).err());
                failures.extend(linear_case::<f16>(&gpu, &dir, &tie_weight(s, DType::F16), m, v).err());
            }
        }
    }
    assert_none_failed(failures);
}

/// Runs the W8A8 (per-token int8 activations) layer on `variant`. Weight row j is all
/// `V[j]`; activation row r holds `127 · X[r % 4]` and `X[r % 4]` side by side, so its scale is
/// `|X|` exactly, its int8 values ±127 and ±1, and each sum `±128 · V[j]`: a power of two.
fn int8_case<T: Element>(
    gpu: &Gpu,
    dir: &common::TempDir,
    granularity: Granularity,
    m: usize,
    variant: &str,
) -> Result<(), String> {
    let s = QuantScheme::symmetric(granularity);
    let params = s.layout(&[N, K]).unwrap().num_params();
    let scales = (0..params).map(|p| tie_scales(T::DTYPE)[p % 2]).collect();
    let values = (0..N * K).map(|e| V[e / K] as i8).collect();
    let w = QuantizedTensor::new(&[N, K], s, values, scales, None).unwrap();
    let col = |r: usize| (3 * r) % (K - 1);
    let mut x = vec![T::from_f32(0.0); m * K];
    for r in 0..m {
        x[r * K + col(r)] = T::from_f32(127.0 * X[r % 4]);
        x[r * K + col(r) + 1] = T::from_f32(X[r % 4]);
    }
    let exact: Vec<f64> =
        (0..m * N).map(|i| f64::from(X[(i / N) % 4]) * 128.0 * f64::from(w.dequantize()[(i % N) * K])).collect();
    force(gpu, dir, "linear_a8", T::DTYPE, m, &w, variant);
    let act = ActivationQuant::per_token();
    let layer =
        QuantizedLinear::from_quantized::<T>(gpu, &w, None, T::DTYPE).unwrap().with_activation_quant(act).unwrap();
    let ctx = format!("{variant} {granularity:?} {} m={m}", T::DTYPE);
    let chosen = gpu.linear_kernel(layer.weight(), T::DTYPE, layer.activation_quant(), m);
    assert_eq!(chosen, variant.parse::<LinearKernel>().unwrap(), "{ctx}: the tuning file did not force it");
    let y = layer.forward_host(&x, &[m, K]).unwrap();
    let want = bits(&expected::<T>(&exact));
    assert_eq!(bits(&reference::linear_a8(&x, &w, None, act).unwrap()), want, "{ctx}: CPU reference");
    same_bits(&bits(&y), &want, &ctx)
}

#[test]
fn every_int8_activation_kernel_rounds_exact_ties_to_even() {
    let _ = gpu_or_skip!();
    let gpu = Gpu::with_options(GpuOptions::default()).unwrap();
    let dir = common::TempDir::new("ties-a8");
    let mut failures = Vec::new();
    for g in [Granularity::PerTensor, Granularity::PerChannel { axis: 0 }] {
        for v in ["a8/rows", "a8/rows16", "a8/rows16/wide", "a8/gemm"] {
            for m in [1, 3, 12].into_iter().filter(|&m| v != "a8/gemm" || m > 8) {
                failures.extend(int8_case::<bf16>(&gpu, &dir, g, m, v).err());
                failures.extend(int8_case::<f16>(&gpu, &dir, g, m, v).err());
            }
        }
    }
    assert_none_failed(failures);
}
