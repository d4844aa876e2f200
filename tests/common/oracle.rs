//! The CPU oracle's verdicts on GPU results, shared by the native tests and the browser suite
//! (web/tests/browser): bit-identical quantization, and layer outputs within the project's bound
//! of the f64 oracle. Only the library's core API, so it builds for wasm32 too.

use int8_wgpu::{ActivationQuant, DType, Element, QuantizedActivations, QuantizedTensor, reference};

/// Asserts two quantized tensors are identical: ints, scale bits, zero points.
pub fn assert_same_quantized(gpu: &QuantizedTensor, cpu: &QuantizedTensor, ctx: &str) {
    assert_eq!(gpu.shape(), cpu.shape(), "{ctx}: shape");
    for (p, (g, c)) in gpu.scales().iter().zip(cpu.scales()).enumerate() {
        assert_eq!(g.to_bits(), c.to_bits(), "{ctx}: scale {p}: gpu {g:e} cpu {c:e}");
    }
    assert_eq!(gpu.zero_points(), cpu.zero_points(), "{ctx}: zero points");
    if let Some(i) = gpu.values().iter().zip(cpu.values()).position(|(g, c)| g != c) {
        panic!("{ctx}: int {i} (param {}): gpu {} cpu {}", cpu.layout().param_of(i), gpu.values()[i], cpu.values()[i]);
    }
}

/// The tolerance of one linear output against the f64 oracle, for outputs in `dtype`.
///
/// f32 accumulation over k terms errs by at most about k·u·M (u = 2^-24, M = Σ|x|·s·(|q|+|z|)
/// from `linear_f64`, which bounds the cancelling sums of the factored formula; the dequant
/// multiply and the segment scaling add a few more u), doubled for safety; then the one
/// rounding to the output dtype adds half an ulp of |y| (f16: 2^-11, bf16: 2^-8 relative),
/// plus f16's subnormal spacing 2^-24.
pub fn tolerance(k: usize, magnitude: f64, y: f64, dtype: DType) -> f64 {
    let u = f64::from(f32::EPSILON) / 2.0;
    let acc = 2.0 * (k as f64 + 4.0) * u * magnitude + 1e-30;
    acc + output_rounding(y, dtype)
}

/// Asserts a linear layer's outputs against the f64 oracle within [`tolerance`].
pub fn assert_linear_close<T: Element>(y: &[T], x: &[T], w: &QuantizedTensor, bias: Option<&[T]>, ctx: &str) {
    let (want, mag) = reference::linear_f64(x, w, bias).expect("oracle");
    assert_eq!(y.len(), want.len(), "{ctx}: output length");
    let k = w.shape()[1];
    for (i, ((got, want), mag)) in y.iter().zip(&want).zip(&mag).enumerate() {
        let got = f64::from(got.to_f32());
        let tol = tolerance(k, *mag, *want, T::DTYPE);
        assert!(
            (got - want).abs() <= tol,
            "{ctx}: y[{i}] = {got:e}, f64 oracle {want:e}, |diff| {:e} > tolerance {tol:e}",
            (got - want).abs()
        );
    }
}

/// The one rounding of an output `y` to `dtype`: half an ulp of |y| (f16: 2^-11, bf16: 2^-8
/// relative, with a little slack), plus f16's subnormal spacing 2^-24 halved; nothing for f32.
fn output_rounding(y: f64, dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 0.0,
        DType::F16 => y.abs() * 2f64.powi(-11) * 1.001 + 2f64.powi(-25),
        DType::BF16 => y.abs() * 2f64.powi(-8) * 1.001,
    }
}

/// `v` converted to the element type `T` (round to nearest even).
pub fn to_dtype<T: Element>(v: &[f32]) -> Vec<T> {
    v.iter().map(|&x| T::from_f32(x)).collect()
}

/// Asserts GPU-quantized activations equal the CPU reference's: outlier columns, scale bits and
/// int8 values.
pub fn assert_same_activations(gpu: &QuantizedActivations, cpu: &QuantizedActivations, ctx: &str) {
    assert_eq!(gpu.shape, cpu.shape, "{ctx}: shape");
    assert_eq!(gpu.outlier_columns, cpu.outlier_columns, "{ctx}: outlier columns (gpu, then cpu)");
    for (r, (g, c)) in gpu.scales.iter().zip(&cpu.scales).enumerate() {
        assert_eq!(g.to_bits(), c.to_bits(), "{ctx}: scale of row {r}: gpu {g:e} cpu {c:e}");
    }
    assert_eq!(gpu.scales.len(), cpu.scales.len(), "{ctx}: scale count");
    if let Some(i) = gpu.values.iter().zip(&cpu.values).position(|(g, c)| g != c) {
        let k = cpu.shape[1];
        panic!("{ctx}: int8 [{}, {}]: gpu {} cpu {}", i / k, i % k, gpu.values[i], cpu.values[i]);
    }
    assert_eq!(gpu.values.len(), cpu.values.len(), "{ctx}: value count");
}

/// The tolerance of one int8-activation output against `reference::linear_a8_f64`.
///
/// Both sides combine the same quantized operands, so only f32 rounding separates them, each
/// step within u = 2^-24 relative of its own magnitude, every magnitude within M (the oracle's
/// `magnitude`, which bounds every partial sum): `f32(acc)` and the two scale products, 3u·M;
/// each outlier term `x · (s_w · q)`, two roundings, and their f32 sum over `c` columns,
/// (c - 1)·u·M, together (c + 1)·u·M; adding the outlier sum and the bias, 2u·M. So
/// (c + 6)·u·M, doubled for the second-order terms and for a device that contracts a multiply
/// and an add into one fma (which only removes roundings). Then the one rounding to the output
/// dtype adds half an ulp of |y| (f16: 2^-11, bf16: 2^-8 relative), plus f16's subnormal
/// spacing.
pub fn a8_tolerance(outliers: usize, magnitude: f64, y: f64, dtype: DType) -> f64 {
    let u = f64::from(f32::EPSILON) / 2.0;
    let acc = 2.0 * (outliers as f64 + 6.0) * u * magnitude + 1e-30;
    acc + output_rounding(y, dtype)
}

/// Asserts an int8-activation layer's outputs: bit-equal to `reference::linear_a8` without bias
/// and outlier columns (two rounded multiplications, nothing a device could contract), else
/// within [`a8_tolerance`] of `reference::linear_a8_f64`.
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
        for (i, (g, c)) in y.iter().zip(&cpu).enumerate() {
            let (g, c) = (g.to_f32(), c.to_f32());
            assert_eq!(
                g.to_bits(),
                c.to_bits(),
                "{ctx}: y[{i}] = {g:e}, reference::linear_a8 {c:e} (bit-equal expected)"
            );
        }
        return;
    }
    let (want, mag) = reference::linear_a8_f64(x, w, bias, act).expect("oracle");
    for (i, ((got, want), mag)) in y.iter().zip(&want).zip(&mag).enumerate() {
        let got = f64::from(got.to_f32());
        let tol = a8_tolerance(outliers, *mag, *want, T::DTYPE);
        assert!(
            (got - want).abs() <= tol,
            "{ctx}: y[{i}] = {got:e}, f64 oracle {want:e}, |diff| {:e} > tolerance {tol:e} ({outliers} outlier columns)",
            (got - want).abs()
        );
    }
}
