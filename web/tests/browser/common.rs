//! Shared by the browser tests: the device, deterministic inputs, assertions with the native
//! suite's bounds (tests/common/mod.rs).

use std::cell::RefCell;

use int8_wgpu::{ActivationQuant, DType, Element, Gpu, GpuOptions, QuantizedActivations, QuantizedTensor, reference};

thread_local! {
    static GPU: RefCell<Option<Gpu>> = const { RefCell::new(None) };
}

/// The browser's WebGPU device, opened once per test module. No adapter fails the test: the
/// suite runs only where it is meant to (Chromium with `--enable-unsafe-webgpu`,
/// `scripts/web-test.sh`), so a missing adapter is a broken setup, not a skip.
pub async fn gpu() -> Gpu {
    if let Some(g) = GPU.with(|g| g.borrow().clone()) {
        return g;
    }
    let g = open(GpuOptions::default()).await;
    wasm_bindgen_test::console_log!("browser tests run on: {} {:?}", g.describe(), g.capabilities());
    GPU.with(|c| *c.borrow_mut() = Some(g.clone()));
    g
}

/// A device of its own with `options` (forcing a kernel path).
pub async fn open(options: GpuOptions) -> Gpu {
    match Gpu::with_options_async(options).await {
        Ok(g) => g,
        Err(e) => panic!("no WebGPU device in this browser: {e} (Chromium needs --enable-unsafe-webgpu)"),
    }
}

/// Deterministic values in [-1, 1) (xorshift), so failures reproduce.
pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// `v` converted to the element type `T` (round to nearest even).
pub fn to_dtype<T: Element>(v: &[f32]) -> Vec<T> {
    v.iter().map(|&x| T::from_f32(x)).collect()
}

/// Asserts two quantized tensors are identical: ints, scale bits, zero points.
pub fn assert_same_quantized(gpu: &QuantizedTensor, cpu: &QuantizedTensor, ctx: &str) {
    assert_eq!(gpu.shape(), cpu.shape(), "{ctx}: shape");
    assert_eq!(gpu.scales().len(), cpu.scales().len(), "{ctx}: scale count");
    for (p, (g, c)) in gpu.scales().iter().zip(cpu.scales()).enumerate() {
        assert_eq!(g.to_bits(), c.to_bits(), "{ctx}: scale {p}: gpu {g:e} cpu {c:e}");
    }
    assert_eq!(gpu.zero_points(), cpu.zero_points(), "{ctx}: zero points");
    assert_eq!(gpu.values(), cpu.values(), "{ctx}: ints");
}

/// Asserts GPU-quantized activations equal the CPU reference's: outlier columns, scale bits, ints.
pub fn assert_same_activations(gpu: &QuantizedActivations, cpu: &QuantizedActivations, ctx: &str) {
    assert_eq!(gpu.shape, cpu.shape, "{ctx}: shape");
    assert_eq!(gpu.outlier_columns, cpu.outlier_columns, "{ctx}: outlier columns (gpu, then cpu)");
    let bits = |v: &[f32]| v.iter().map(|s| s.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&gpu.scales), bits(&cpu.scales), "{ctx}: row scales");
    assert_eq!(gpu.values, cpu.values, "{ctx}: int8 values");
}

/// The one rounding of an output `y` to `dtype` (as tests/common/mod.rs).
fn output_rounding(y: f64, dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 0.0,
        DType::F16 => y.abs() * 2f64.powi(-11) * 1.001 + 2f64.powi(-25),
        DType::BF16 => y.abs() * 2f64.powi(-8) * 1.001,
    }
}

/// Asserts a float-activation layer's outputs against the f64 oracle within the native suite's
/// bound: 2·(k + 4)·u·M of f32 accumulation, plus the output rounding.
pub fn assert_linear_close<T: Element>(y: &[T], x: &[T], w: &QuantizedTensor, bias: Option<&[T]>, ctx: &str) {
    let (want, mag) = reference::linear_f64(x, w, bias).expect("oracle");
    assert_eq!(y.len(), want.len(), "{ctx}: output length");
    let k = w.shape()[1];
    let u = f64::from(f32::EPSILON) / 2.0;
    for (i, ((got, want), mag)) in y.iter().zip(&want).zip(&mag).enumerate() {
        let got = f64::from(got.to_f32());
        let tol = 2.0 * (k as f64 + 4.0) * u * mag + 1e-30 + output_rounding(*want, T::DTYPE);
        assert!((got - want).abs() <= tol, "{ctx}: y[{i}] = {got:e}, f64 oracle {want:e}, tolerance {tol:e}");
    }
}

/// Asserts an int8-activation layer's outputs as the native suite does: bit-equal to
/// `reference::linear_a8` without bias and outlier columns, else within 2·(c + 6)·u·M of
/// `reference::linear_a8_f64` plus the output rounding.
pub fn assert_a8_close<T: Element>(
    y: &[T],
    x: &[T],
    w: &QuantizedTensor,
    bias: Option<&[T]>,
    act: ActivationQuant,
    ctx: &str,
) {
    let k = w.shape()[1];
    let outliers = reference::outlier_columns(x, k, act).len();
    let cpu = reference::linear_a8(x, w, bias, act).expect("reference");
    assert_eq!(y.len(), cpu.len(), "{ctx}: output length");
    if bias.is_none() && outliers == 0 {
        let bits = |v: &[T]| v.iter().map(|e| e.to_f32().to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(y), bits(&cpu), "{ctx}: bit-equal to reference::linear_a8 expected");
        return;
    }
    let (want, mag) = reference::linear_a8_f64(x, w, bias, act).expect("oracle");
    let u = f64::from(f32::EPSILON) / 2.0;
    for (i, ((got, want), mag)) in y.iter().zip(&want).zip(&mag).enumerate() {
        let got = f64::from(got.to_f32());
        let tol = 2.0 * (outliers as f64 + 6.0) * u * mag + 1e-30 + output_rounding(*want, T::DTYPE);
        assert!(
            (got - want).abs() <= tol,
            "{ctx}: y[{i}] = {got:e}, f64 oracle {want:e}, tolerance {tol:e} ({outliers} outlier columns)"
        );
    }
}
