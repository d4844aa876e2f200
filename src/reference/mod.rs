//! The CPU reference path: quantize and linear (dequantizing is [`QuantizedTensor::dequantize`]),
//! written to be obviously correct.
//!
//! Every GPU kernel is tested against these functions. Their scalar steps (a block's symmetric
//! scale, its asymmetric scale and zero point, one value's rounding) are the numeric contract:
//! `shaders/common.wgsl` performs the same f32 operations in the same order, so ints and scale
//! bits agree exactly.

#[cfg(test)]
mod course_tests;
#[cfg(test)]
mod edge_tests;
mod linear_a8;
#[cfg(test)]
mod props_tests;

use crate::check::{check_finite, check_len, check_output};
use crate::quantized::{QuantizedTensor, check_scale, max_scale};
use crate::scheme::ParamLayout;
use crate::{Element, Error, Mode, QuantScheme, Result};
pub(crate) use linear_a8::check_a8_weight_scheme;
pub use linear_a8::{linear_a8, linear_a8_f64, outlier_columns, quantize_activations};

/// Treats subnormal inputs as zero.
///
/// GPUs may flush subnormals to zero in arithmetic; making that explicit on both paths keeps
/// the CPU and GPU ints equal. A weight below 1.2e-38 in magnitude carries no information at
/// int8 precision anyway.
#[inline]
pub(crate) fn flush_subnormal(x: f32) -> f32 {
    if x.is_subnormal() { 0.0 } else { x }
}

/// The symmetric scale of a block whose largest magnitude is `absmax`: `absmax / 127`.
///
/// A block whose scale would be zero or subnormal (all zeros, or absmax below
/// 127 × `f32::MIN_POSITIVE`) gets scale 1.0, so it quantizes to 0 and dequantizes to exactly 0.
#[inline]
pub(crate) fn symmetric_scale(absmax: f32) -> f32 {
    let s = absmax / 127.0;
    if s < f32::MIN_POSITIVE { 1.0 } else { s }
}

/// The asymmetric scale and zero point of a block with range `[rmin, rmax]`, as in the course:
/// `scale = (rmax - rmin) / 255`, `zp = -128 - rmin / scale`, clamped to [-128, 127], else
/// rounded half to even — after widening the range to contain 0 (as PyTorch's observers do).
///
/// Without the widening, a block that excludes 0 (common for small groups) needs a zero point
/// outside int8; clamping it then maps most of the block onto one int. With it, the zero point
/// is always representable, 0 is exact, and a constant block `c` reconstructs as `c` within
/// rounding (it uses `q = 127` or `-128`). A block whose scale would be zero or subnormal gets
/// the symmetric parameters: zero point 0 and [`symmetric_scale`] of its absmax, which is
/// `absmax / 127`, or 1 when that is subnormal too (an all-zero block). Returns `None` when
/// `rmax - rmin` overflows f32.
#[inline]
pub(crate) fn asymmetric_params(rmin: f32, rmax: f32) -> Option<(f32, i8)> {
    let (rmin, rmax) = (rmin.min(0.0), rmax.max(0.0));
    let s = (rmax - rmin) / 255.0;
    if s.is_infinite() {
        return None;
    }
    if s < f32::MIN_POSITIVE {
        return Some((symmetric_scale(rmax.max(-rmin)), 0));
    }
    let zp = -128.0 - rmin / s;
    let zp = if zp < -128.0 {
        -128.0
    } else if zp > 127.0 {
        127.0
    } else {
        zp.round_ties_even()
    };
    Some((s, zp as i8))
}

/// Quantizes one value: `clamp(round_half_even(x / scale + zp), -128, 127)`.
#[inline]
pub(crate) fn quantize_value(x: f32, scale: f32, zero_point: i8) -> i8 {
    let v = (flush_subnormal(x) / scale + f32::from(zero_point)).round_ties_even();
    v.clamp(-128.0, 127.0) as i8
}

/// Quantizes `x` (row-major, `shape`) with `scheme`, computing the scales (and zero points).
///
/// NaN or infinite inputs are an [`Error::NonFinite`] naming the first one's position.
pub fn quantize<T: Element>(x: &[T], shape: &[usize], scheme: QuantScheme) -> Result<QuantizedTensor> {
    check_len(x.len(), shape, "weight")?;
    check_finite(x, shape, "weight")?;
    let layout = scheme.layout(shape)?;
    let (mut scales, mut zps) = (Vec::new(), Vec::new());
    for p in 0..layout.num_params() {
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for k in 0..layout.elems_per_param() {
            let v = flush_subnormal(x[layout.element(p, k)].to_f32());
            lo = lo.min(v);
            hi = hi.max(v);
        }
        match scheme.mode {
            Mode::Symmetric => scales.push(symmetric_scale(hi.max(-lo))),
            Mode::Asymmetric => {
                let (s, z) = asymmetric_params(lo, hi).ok_or(Error::RangeOverflow { param: p, symmetric: false })?;
                scales.push(s);
                zps.push(z);
            }
        }
        if scales[p] > max_scale(scheme.mode) {
            return Err(Error::RangeOverflow { param: p, symmetric: scheme.mode == Mode::Symmetric });
        }
    }
    let zps = scheme.has_zero_point().then_some(zps);
    quantize_with_params(x, shape, scheme, scales, zps)
}

/// Quantizes `x` with given scales (and zero points), as the course's
/// `linear_q_with_scale_and_zero_point` does.
pub(crate) fn quantize_with_params<T: Element>(
    x: &[T],
    shape: &[usize],
    scheme: QuantScheme,
    scales: Vec<f32>,
    zero_points: Option<Vec<i8>>,
) -> Result<QuantizedTensor> {
    check_len(x.len(), shape, "weight")?;
    check_finite(x, shape, "weight")?;
    let layout = scheme.layout(shape)?;
    for (i, &s) in scales.iter().enumerate() {
        check_scale(i, s, scheme.mode)?;
    }
    let values = x
        .iter()
        .enumerate()
        .map(|(e, v)| {
            let p = layout.param_of(e);
            let z = zero_points.as_ref().map_or(0, |z| z.get(p).copied().unwrap_or(0));
            quantize_value(v.to_f32(), scales.get(p).copied().unwrap_or(1.0), z)
        })
        .collect();
    QuantizedTensor::new(shape, scheme, values, scales, zero_points)
}

/// Checks a linear layer's operands and returns `(rows, out, in)`.
pub(crate) fn linear_dims(x_len: usize, w: &QuantizedTensor, bias_len: Option<usize>) -> Result<(usize, usize, usize)> {
    let &[n, k] = w.shape() else {
        return Err(Error::Shape(format!("a linear weight must be 2-D [out, in], found {:?}", w.shape())));
    };
    if x_len == 0 {
        return Err(Error::Empty("activation".into()));
    }
    if !x_len.is_multiple_of(k) {
        return Err(Error::Shape(format!("activation has {x_len} elements, not a multiple of in_features = {k}")));
    }
    if let Some(b) = bias_len.filter(|&b| b != n) {
        return Err(Error::Shape(format!("bias has {b} elements, out_features = {n}")));
    }
    Ok((x_len / k, n, k))
}

/// The fused int8 linear on the CPU, in f32 like the kernels:
/// `y[m, n] = Σ_segments s * (Σ_k x[m,k] q[n,k] − z Σ_k x[m,k]) + bias[n]`, rounded once to `T`.
///
/// `x` is `[rows, in]` row-major; the result is `[rows, out]`. A result that is not finite
/// although every input is (beyond the dtype's range) is an [`Error::Overflow`].
pub fn linear<T: Element>(x: &[T], w: &QuantizedTensor, bias: Option<&[T]>) -> Result<Vec<T>> {
    let (m, n, k) = linear_dims(x.len(), w, bias.map(<[T]>::len))?;
    check_finite(x, &[m, k], "activation")?;
    if let Some(b) = bias {
        check_finite(b, &[n], "bias")?;
    }
    let xf: Vec<f32> = x.iter().map(|v| v.to_f32()).collect();
    let l = w.layout();
    let q = w.values();
    let mut y = Vec::with_capacity(m * n);
    for row in xf.chunks_exact(k) {
        for j in 0..n {
            let mut acc = 0f32;
            let mut kk = 0;
            while kk < k {
                let e = j * k + kk;
                let end = ((e / l.inner + 1) * l.inner - j * k).min(k);
                let p = l.param_of(e);
                let (mut dot, mut xs) = (0f32, 0f32);
                for (xv, &qv) in row[kk..end].iter().zip(&q[j * k + kk..j * k + end]) {
                    dot += xv * f32::from(qv);
                    xs += xv;
                }
                acc += w.scales()[p] * (dot - f32::from(w.zero_point(p)) * xs);
                kk = end;
            }
            let b = bias.map_or(0.0, |b| b[j].to_f32());
            y.push(T::from_f32(acc + b));
        }
    }
    check_output(&y, &[m, n])?;
    Ok(y)
}

/// The f64 oracle for linear outputs: `y = x · dequant(W)ᵀ + bias`, all in f64.
///
/// Returns the outputs and, per output, `Σ_k |x[m,k]| · s · (|q[n,k]| + |z|) + |bias[n]|`: the
/// scale of the rounding error the factored f32 formula may make, since its two sums
/// `Σ x·q` and `z·Σ x` can cancel (tests derive their tolerances from it; for symmetric
/// schemes it is `Σ |x·w|`). A NaN or infinite activation or bias is an
/// [`Error::NonFinite`], as in [`linear`].
pub fn linear_f64<T: Element>(x: &[T], w: &QuantizedTensor, bias: Option<&[T]>) -> Result<(Vec<f64>, Vec<f64>)> {
    let (m, n, k) = linear_dims(x.len(), w, bias.map(<[T]>::len))?;
    // The same refusals as `linear`: an oracle that answers NaN would hide them.
    check_finite(x, &[m, k], "activation")?;
    if let Some(b) = bias {
        check_finite(b, &[n], "bias")?;
    }
    let l: ParamLayout = w.layout();
    // (dequantized weight, its error-scale s·(|q| + |z|)) per element
    let wd: Vec<(f64, f64)> = (0..w.numel())
        .map(|e| {
            let p = l.param_of(e);
            let (q, z) = (i32::from(w.values()[e]), i32::from(w.zero_point(p)));
            let s = f64::from(w.scales()[p]);
            (s * f64::from(q - z), s * f64::from(q.abs() + z.abs()))
        })
        .collect();
    let (mut y, mut mag) = (Vec::new(), Vec::new());
    for row in x.chunks_exact(k) {
        for j in 0..n {
            let b = bias.map_or(0.0, |b| f64::from(b[j].to_f32()));
            let (mut s, mut a) = (b, b.abs());
            for (xv, (wv, wm)) in row.iter().zip(&wd[j * k..(j + 1) * k]) {
                let xv = f64::from(xv.to_f32());
                s += xv * wv;
                a += xv.abs() * wm;
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

    #[test]
    fn ties_round_to_even() {
        assert_eq!(quantize_value(2.5, 1.0, 0), 2);
        assert_eq!(quantize_value(3.5, 1.0, 0), 4);
        assert_eq!(quantize_value(-2.5, 1.0, 0), -2);
        assert_eq!(quantize_value(0.5, 1.0, 0), 0);
        assert_eq!(quantize_value(300.0, 1.0, 0), 127);
        assert_eq!(quantize_value(-300.0, 1.0, 0), -128);
        assert_eq!(quantize_value(1e-39, 1e-30, 0), 0, "subnormal input flushes to zero");
    }

    #[test]
    fn degenerate_blocks_have_finite_scales() {
        assert_eq!(symmetric_scale(0.0), 1.0);
        assert_eq!(asymmetric_params(0.0, 0.0), Some((1.0, 0)));
        let (s, z) = asymmetric_params(3.0, 3.0).unwrap();
        assert_eq!((s, z), (3.0 / 255.0, -128));
        assert_eq!(quantize_value(3.0, s, z), 127);
        assert!((s * 255.0 - 3.0).abs() <= s / 2.0);
        let (s, z) = asymmetric_params(-3.0, -3.0).unwrap();
        assert_eq!((s, z, quantize_value(-3.0, s, z)), (3.0 / 255.0, 127, -128));
        // A block that excludes 0 keeps a representable zero point.
        let (s, z) = asymmetric_params(0.3, 0.5).unwrap();
        assert_eq!(z, -128);
        assert!((s * (f32::from(quantize_value(0.3, s, z)) + 128.0) - 0.3).abs() <= s / 2.0);
        assert_eq!(asymmetric_params(-3e38, 3e38), None);
        // A range of a few subnormal steps: zero point 0 and absmax / 127, itself normal.
        let (s, z) = asymmetric_params(0.0, 2e-36).unwrap();
        assert!((2e-36f32 / 255.0).is_subnormal() && s.is_normal());
        assert_eq!((s, z), (2e-36 / 127.0, 0));
    }

    #[test]
    fn the_f64_oracle_refuses_what_linear_refuses() {
        let w = quantize(&[1.0f32, -2.0, 0.5, 0.25], &[2, 2], QuantScheme::default()).unwrap();
        let x = [f16::from_f32(1.0), f16::from_f32(2.0)];
        // 1e30 becomes inf in f16.
        for bad in [f32::NAN, f32::INFINITY, 1e30] {
            let b = [f16::from_f32(0.5), f16::from_f32(bad)];
            for r in [linear(&x, &w, Some(&b)).map(|_| ()), linear_f64(&x, &w, Some(&b)).map(|_| ())] {
                assert!(matches!(&r, Err(Error::NonFinite { what, index: 1, .. }) if what == "bias"), "{bad}: {r:?}");
            }
            let xb = [f16::from_f32(1.0), f16::from_f32(bad)];
            for r in [linear(&xb, &w, None).map(|_| ()), linear_f64(&xb, &w, None).map(|_| ())] {
                assert!(matches!(&r, Err(Error::NonFinite { what, index: 1, .. }) if what == "activation"), "{r:?}");
            }
        }
    }

    #[test]
    fn all_zero_channel_quantizes_to_zero() {
        let s = QuantScheme::symmetric(Granularity::PerChannel { axis: 0 });
        let q = quantize(&[0.0f32, 0.0, 1.0, -2.0], &[2, 2], s).unwrap();
        assert_eq!(q.values(), [0, 0, 64, -127]);
        assert_eq!(q.scales()[0], 1.0);
        assert_eq!(q.dequantize()[..2], [0.0, 0.0]);
    }
}
