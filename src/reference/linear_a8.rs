//! The CPU oracle of int8 activations: per-row quantization, LLM.int8()'s outlier columns, and
//! the W8A8 linear with its f64 bound.

use super::{flush_subnormal, linear_dims, quantize_value, symmetric_scale};
use crate::activation::{ActivationQuant, MAX_INT8_DOT_LEN, QuantizedActivations};
use crate::check::{check_finite, check_output};
use crate::{Element, Error, QuantScheme, QuantizedTensor, Result};

/// The outlier columns of `x` (`[rows, k]`): those where any row has `|x| >= threshold`,
/// ascending. Empty without a threshold.
pub fn outlier_columns<T: Element>(x: &[T], k: usize, a8: ActivationQuant) -> Vec<usize> {
    if a8.outlier_threshold().is_none() || k == 0 {
        return Vec::new();
    }
    (0..k).filter(|&c| x.iter().skip(c).step_by(k).any(|v| a8.is_outlier(v.to_f32()))).collect()
}

/// Quantizes activations `x` (`[rows, k]`, row-major) per row: outlier columns (LLM.int8())
/// are found first and left out; each row's scale is `absmax / 127` over its other columns (as
/// a weight block's symmetric scale), and each value `round_half_even(x / scale)`.
///
/// NaN or infinite inputs are an [`Error::NonFinite`].
pub fn quantize_activations<T: Element>(x: &[T], k: usize, a8: ActivationQuant) -> Result<QuantizedActivations> {
    if k == 0 || x.is_empty() {
        return Err(Error::Empty("activation".into()));
    }
    if !x.len().is_multiple_of(k) {
        return Err(Error::Shape(format!("activation has {} elements, not a multiple of in_features = {k}", x.len())));
    }
    let rows = x.len() / k;
    check_finite(x, &[rows, k], "activation")?;
    let outliers = outlier_columns(x, k, a8);
    let mut is_outlier = vec![false; k];
    for &c in &outliers {
        is_outlier[c] = true;
    }
    let mut values = Vec::with_capacity(x.len());
    let mut scales = Vec::with_capacity(rows);
    for row in x.chunks_exact(k) {
        let absmax = row
            .iter()
            .zip(&is_outlier)
            .filter(|(_, o)| !**o)
            .fold(0f32, |a, (v, _)| a.max(flush_subnormal(v.to_f32()).abs()));
        let s = symmetric_scale(absmax);
        values.extend(row.iter().zip(&is_outlier).map(|(v, &o)| if o { 0 } else { quantize_value(v.to_f32(), s, 0) }));
        scales.push(s);
    }
    Ok(QuantizedActivations { shape: [rows, k], values, scales, outlier_columns: outliers })
}

/// Checks that a weight of `scheme` and `shape` can take int8 activations: 2-D, symmetric, one
/// scale per output row or per tensor, and rows short enough for `i32` sums.
pub(crate) fn check_a8_weight_scheme(s: QuantScheme, shape: &[usize]) -> Result<()> {
    if !s.takes_a8() || shape.len() != 2 {
        return Err(Error::Scheme(format!(
            "int8 activations (W8A8, LLM.int8()) need 2-D symmetric weights with one scale per output \
             row or per tensor; this weight is {:?} {:?} of shape {:?}: quantize it with \
             QuantScheme::symmetric(Granularity::PerChannel {{ axis: 0 }})",
            s.mode, s.granularity, shape
        )));
    }
    let k = shape[1];
    if k > MAX_INT8_DOT_LEN {
        return Err(Error::Scheme(format!(
            "int8 activations sum k = {k} products in i32, which holds at most {MAX_INT8_DOT_LEN}"
        )));
    }
    Ok(())
}

fn check_a8_weight(w: &QuantizedTensor) -> Result<()> {
    check_a8_weight_scheme(w.scheme(), w.shape())
}

/// The scale of weight row `n` (per tensor or per row).
#[inline]
fn weight_scale(w: &QuantizedTensor, n: usize) -> f32 {
    w.scales()[w.layout().param_of(n * w.shape()[1])]
}

/// The W8A8 / LLM.int8() linear on the CPU, as the kernels compute it:
/// `acc = Σ_{k not outlier} q_x[m,k] q_w[n,k]` in `i32`, then
/// `y = ((s_x[m] · f32(acc)) · s_w[n] + Σ_{k outlier} x[m,k] · (s_w[n] · q_w[n,k])) + bias[n]` in
/// f32, rounded once to `T`.
///
/// The weight must be symmetric per output row or per tensor (else an [`Error::Scheme`]). A
/// result that is not finite although every input is, is an [`Error::Overflow`].
pub fn linear_a8<T: Element>(x: &[T], w: &QuantizedTensor, bias: Option<&[T]>, a8: ActivationQuant) -> Result<Vec<T>> {
    check_a8_weight(w)?;
    let (m, n, k) = linear_dims(x.len(), w, bias.map(<[T]>::len))?;
    if let Some(b) = bias {
        check_finite(b, &[n], "bias")?;
    }
    let qa = quantize_activations(x, k, a8)?;
    let q = w.values();
    let mut y = Vec::with_capacity(m * n);
    for r in 0..m {
        let xq = &qa.values[r * k..(r + 1) * k];
        for j in 0..n {
            let wq = &q[j * k..(j + 1) * k];
            let acc: i32 = xq.iter().zip(wq).map(|(&a, &b)| i32::from(a) * i32::from(b)).sum();
            let sw = weight_scale(w, j);
            let mut v = (qa.scales[r] * acc as f32) * sw;
            let mut fp = 0f32;
            for &c in &qa.outlier_columns {
                fp += x[r * k + c].to_f32() * (sw * f32::from(wq[c]));
            }
            v += fp;
            if let Some(b) = bias {
                v += b[j].to_f32();
            }
            y.push(T::from_f32(v));
        }
    }
    check_output(&y, &[m, n])?;
    Ok(y)
}

/// The f64 oracle of [`linear_a8`]: the same quantized operands (the int8 activations and
/// their scales, the outlier columns in their input precision, the dequantized weights)
/// combined exactly in f64.
///
/// Returns the outputs and, per output, the magnitude its f32 rounding errors scale with:
/// `|s_x| · |s_w| · Σ |q_x q_w| + Σ_outlier |x · s_w q_w| + |bias|`. The difference to the
/// unquantized `x · Wᵀ` is the quantization error, which is what a quality comparison
/// measures; this oracle measures the arithmetic. It refuses what [`linear_a8`] refuses: a NaN
/// or infinite activation or bias is an [`Error::NonFinite`].
pub fn linear_a8_f64<T: Element>(
    x: &[T],
    w: &QuantizedTensor,
    bias: Option<&[T]>,
    a8: ActivationQuant,
) -> Result<(Vec<f64>, Vec<f64>)> {
    check_a8_weight(w)?;
    let (m, n, k) = linear_dims(x.len(), w, bias.map(<[T]>::len))?;
    // The same refusals as `linear_a8`: an oracle that answers NaN would hide them.
    if let Some(b) = bias {
        check_finite(b, &[n], "bias")?;
    }
    let qa = quantize_activations(x, k, a8)?;
    let q = w.values();
    let (mut y, mut mag) = (Vec::with_capacity(m * n), Vec::with_capacity(m * n));
    for r in 0..m {
        let sx = f64::from(qa.scales[r]);
        for j in 0..n {
            let sw = f64::from(weight_scale(w, j));
            let b = bias.map_or(0.0, |b| f64::from(b[j].to_f32()));
            let (mut acc, mut acc_abs) = (0i64, 0i64);
            for c in 0..k {
                let p = i64::from(qa.values[r * k + c]) * i64::from(q[j * k + c]);
                acc += p;
                acc_abs += p.abs();
            }
            let (mut s, mut a) = (sx * sw * acc as f64 + b, sx * sw * acc_abs as f64 + b.abs());
            for &c in &qa.outlier_columns {
                let t = f64::from(x[r * k + c].to_f32()) * (sw * f64::from(q[j * k + c]));
                s += t;
                a += t.abs();
            }
            y.push(s);
            mag.push(a);
        }
    }
    Ok((y, mag))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Granularity;
    use half::f16;

    fn per_row(values: Vec<i8>, scales: Vec<f32>, shape: [usize; 2]) -> QuantizedTensor {
        QuantizedTensor::new(&shape, QuantScheme::symmetric(Granularity::PerChannel { axis: 0 }), values, scales, None)
            .unwrap()
    }

    #[test]
    fn rows_are_quantized_by_their_own_absmax() {
        let x = [1.0f32, -2.0, 0.5, 127.0, 0.0, 0.0, 0.0, 0.0, 2.5, -0.5, 0.25, 1.0];
        let q = quantize_activations(&x, 4, ActivationQuant::per_token()).unwrap();
        assert_eq!(q.scales, [1.0, 1.0, 2.5 / 127.0]);
        assert_eq!(&q.values[..4], [1, -2, 0, 127], "0.5 ties to even");
        assert_eq!(&q.values[4..8], [0, 0, 0, 0], "an all-zero row");
        assert_eq!(&q.values[8..], [127, -25, 13, 51]);
        assert!(q.outlier_columns.is_empty());
    }

    #[test]
    fn outlier_columns_leave_the_int8_part_and_its_absmax() {
        // Column 1 holds 300 in row 1 only: it is an outlier for every row, and its 2.0 in row 0
        // neither counts towards row 0's absmax nor takes an int8 value.
        let x = [0.5f32, 2.0, -127.0, 32.0, 1.5, 300.0, 2.5, -127.0];
        let a8 = ActivationQuant::llm_int8(200.0).unwrap();
        let q = quantize_activations(&x, 4, a8).unwrap();
        assert_eq!(q.outlier_columns, [1]);
        assert_eq!(q.scales, [1.0, 1.0]);
        assert_eq!(q.values, [0, 0, -127, 32, 2, 0, 2, -127], "ties to even");
        let above = ActivationQuant::llm_int8(300.5).unwrap();
        assert!(quantize_activations(&x, 4, above).unwrap().outlier_columns.is_empty());
        assert_eq!(outlier_columns(&x, 4, ActivationQuant::llm_int8(2.0).unwrap()), [1, 2, 3]);
    }

    #[test]
    fn the_integer_part_is_exact_and_outliers_are_float() {
        let w = per_row(vec![1, 2, 3, 4, -5, 6, 7, -8], vec![0.5, 0.25], [2, 4]);
        // Row absmax 127 → scale 1, so the int8 part is exactly x · q.
        let x = [127.0f32, -1.0, 2.0, 3.0];
        let y = linear_a8(&x, &w, None, ActivationQuant::per_token()).unwrap();
        assert_eq!(y, [0.5 * (127.0 - 2.0 + 6.0 + 12.0), 0.25 * (-635.0 - 6.0 + 14.0 - 24.0)]);
        // With 127 as an outlier (threshold 100) the rest is quantized by absmax 3.
        let a8 = ActivationQuant::llm_int8(100.0).unwrap();
        let y = linear_a8(&x, &w, Some(&[1.0, 0.0]), a8).unwrap();
        let (y64, _) = linear_a8_f64(&x, &w, Some(&[1.0, 0.0]), a8).unwrap();
        let s = 3.0f32 / 127.0;
        let qx = [0, quantize_value(-1.0, s, 0), quantize_value(2.0, s, 0), 127];
        let acc0: i32 = [1, 2, 3].iter().map(|&c| i32::from(qx[c]) * [1, 2, 3, 4][c]).sum();
        assert_eq!(y[0], ((s * acc0 as f32) * 0.5 + 127.0 * (0.5 * 1.0)) + 1.0);
        for (a, b) in y.iter().zip(&y64) {
            assert!((f64::from(*a) - b).abs() <= 1e-5 * b.abs(), "{a} vs {b}");
        }
    }

    #[test]
    fn unsupported_weights_and_overflow_are_errors() {
        let g = QuantizedTensor::new(
            &[1, 4],
            QuantScheme::symmetric(Granularity::PerGroup { size: 2 }),
            vec![1; 4],
            vec![1.0; 2],
            None,
        )
        .unwrap();
        assert!(matches!(linear_a8(&[1.0f32; 4], &g, None, ActivationQuant::per_token()), Err(Error::Scheme(_))));
        let w = per_row(vec![127; 4], vec![f32::MAX / 128.0], [1, 4]);
        let r = linear_a8(&[1e30f32; 4], &w, None, ActivationQuant::per_token());
        assert!(matches!(r, Err(Error::Overflow { .. })), "{r:?}");
        let r = linear_a8(&[f32::NAN; 4], &w, None, ActivationQuant::per_token());
        assert!(matches!(r, Err(Error::NonFinite { .. })), "{r:?}");
    }

    #[test]
    fn the_f64_oracle_refuses_what_linear_a8_refuses() {
        let w = per_row(vec![1, -2, 3, 4], vec![0.5, 0.25], [2, 2]);
        let x = [f16::from_f32(1.0), f16::from_f32(2.0)];
        let a8 = ActivationQuant::per_token();
        // 1e30 becomes inf in f16.
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30] {
            let b = [f16::from_f32(0.5), f16::from_f32(bad)];
            let exact = linear_a8(&x, &w, Some(&b), a8).map(|_| ());
            let oracle = linear_a8_f64(&x, &w, Some(&b), a8).map(|_| ());
            for r in [exact, oracle] {
                assert!(matches!(&r, Err(Error::NonFinite { what, index: 1, .. }) if what == "bias"), "{bad}: {r:?}");
            }
            let xb = [f16::from_f32(1.0), f16::from_f32(bad)];
            let r = linear_a8_f64(&xb, &w, None, a8).map(|_| ());
            assert!(matches!(r, Err(Error::NonFinite { index: 1, .. })), "{bad}: {r:?}");
        }
    }

    #[test]
    fn an_all_outlier_batch_is_the_float_product() {
        let w = per_row(vec![1, -2, 3, 4], vec![0.5], [1, 4]);
        let a8 = ActivationQuant::llm_int8(1e-3).unwrap();
        let x = [1.0f32, 2.0, 3.0, 4.0];
        let q = quantize_activations(&x, 4, a8).unwrap();
        assert_eq!((q.outlier_columns.len(), q.scales[0]), (4, 1.0));
        assert_eq!(linear_a8(&x, &w, None, a8).unwrap(), [0.5 * (1.0 - 4.0 + 9.0 + 16.0)]);
    }
}
