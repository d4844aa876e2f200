//! One pass over a layer's rows that computes everything the quantizer stores and reports for
//! it: the ints (here, or given by the GPU), the packed rows, the exported scales, the weight
//! error and the output error on the evaluation activations. Each row of the weight (read from
//! the input) is gone over once and worked on while it is in cache.
//!
//! Every number is bit for bit what the reference path computes ([`reference::quantize`],
//! [`exported`](crate::checkpoint::exported), [`QuantizedTensor::error`],
//! `eval::output_error`): the same f32 and f64 operations in the same order (IEEE arithmetic is
//! correctly rounded, so this costs nothing), and sums that the reference takes in one running
//! order are taken in that order. Where that is not possible, or the reference would fail, the
//! pass gives up ([`None`]) and the caller takes the reference path, which gives the same result
//! or the error: a non-finite weight, a scale out of range, an output that overflows, a
//! granularity whose scales span rows (only per-channel along axis 1, which compressed-tensors
//! cannot store), more than [`MAX_ONE_PASS_EVAL_ROWS`](super::one_pass_eval::MAX_ONE_PASS_EVAL_ROWS) evaluation
//! rows.
//!
//! [`reference::quantize`]: crate::reference::quantize

use super::eval::{EvalSpec, output_error};
use super::one_pass_eval::{Eval, LANES};
use crate::checkpoint::{self, export_scale, pack_row};
use crate::quantized::{check_scale, max_scale};
use crate::reference::{self, asymmetric_params, flush_subnormal, symmetric_scale};
use crate::{DType, Element, Granularity, Mode, QuantScheme, QuantizedTensor, Result};

/// Where a layer's ints come from.
#[derive(Clone, Copy)]
pub(super) enum Ints<'a> {
    /// Computed here, as [`reference::quantize`](crate::reference::quantize) does.
    Compute,
    /// Given (by the GPU); the scales are the unexported ones.
    Given(&'a QuantizedTensor),
}

/// A quantized layer as stored, and its error metrics.
#[derive(Debug, PartialEq)]
pub(super) struct OnePass {
    /// The `weight_packed` bytes: each row's ints `^ 0x80`, padded to whole words with zeros.
    pub(super) packed: Vec<u8>,
    /// The scales as exported in the weight's dtype.
    pub(super) scales: Vec<f32>,
    /// The zero points (asymmetric schemes).
    pub(super) zero_points: Option<Vec<i8>>,
    /// [`QuantizedTensor::error`] of the stored tensor against the weight.
    pub(super) mse: f64,
    /// Its largest absolute error.
    pub(super) max_abs: f64,
    /// `output_error` on the evaluation rows: relative L2 and max abs error (`None` for 0 rows).
    pub(super) output: Option<(f64, f64)>,
}

/// Quantizes the `[out, in]` weight `x` with `scheme` (or takes the given ints), exporting scales
/// in `scale_dtype`, and measures the stored tensor as `eval` says. `None`: take the reference
/// path (see the module docs).
pub(super) fn quantize_layer<T: Element>(
    x: &[T],
    shape: [usize; 2],
    scheme: QuantScheme,
    scale_dtype: DType,
    ints: Ints<'_>,
    eval: EvalSpec,
) -> Option<OnePass> {
    let [n, k] = shape;
    if n == 0 || k == 0 || x.len() != n.checked_mul(k)? {
        return None;
    }
    // Elements per segment (the run of a row sharing a scale) and segments per row.
    let (group, per_row) = match scheme.granularity {
        Granularity::PerChannel { axis: 0 } | Granularity::PerTensor => (k, 1),
        Granularity::PerGroup { size } if size > 0 && k.is_multiple_of(size) => (size, k / size),
        _ => return None,
    };
    let per_tensor = scheme.granularity == Granularity::PerTensor;
    if let Ints::Given(q) = ints {
        if q.shape() != shape || q.scheme() != scheme {
            return None;
        }
    }
    // The reference's one parameter of a per-tensor scheme comes from the whole tensor.
    let global = match ints {
        Ints::Compute if per_tensor => {
            let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
            for v in x {
                let v = v.to_f32();
                if !v.is_finite() {
                    return None;
                }
                let v = flush_subnormal(v);
                lo = lo.min(v);
                hi = hi.max(v);
            }
            Some(params(scheme.mode, lo, hi)?)
        }
        _ => None,
    };
    let mut eval = match eval.rows {
        0 => None,
        _ => Some(Eval::new(eval, shape, group, per_row, scheme)?),
    };

    let row_bytes = k.div_ceil(4) * 4;
    let mut packed = vec![0u8; n.checked_mul(row_bytes)?];
    let nparams = if per_tensor { 1 } else { n * per_row };
    let (mut scales, mut zps) = (vec![0f32; nparams], vec![0i8; nparams]);
    let (mut w, mut q) = (vec![0f32; k], vec![0i8; k]);
    let (mut row_scales, mut row_zps) = (vec![0f32; per_row], vec![0i8; per_row]);
    let (mut sum, mut max) = (0f64, 0f64);
    for (j, (row, packed_row)) in x.chunks_exact(k).zip(packed.chunks_exact_mut(row_bytes)).enumerate() {
        for g in 0..per_row {
            let seg = g * group..(g + 1) * group;
            let (lo, hi) = widen(&row[seg.clone()], &mut w[seg.clone()])?;
            let p = if per_tensor { 0 } else { j * per_row + g };
            let (s, z) = match (ints, global) {
                (Ints::Given(t), _) => (t.scales()[p], t.zero_point(p)),
                (Ints::Compute, Some(sz)) => sz,
                (Ints::Compute, None) => params(scheme.mode, lo, hi)?,
            };
            let stored = export_scale(s, scale_dtype);
            check_scale(p, stored, scheme.mode).ok()?;
            (scales[p], zps[p]) = (stored, z);
            (row_scales[g], row_zps[g]) = (stored, z);
            let (w, q) = (&w[seg.clone()], &mut q[seg.clone()]);
            match ints {
                Ints::Given(t) => q.copy_from_slice(&t.values()[j * k + seg.start..j * k + seg.end]),
                Ints::Compute => {
                    let zf = f32::from(z);
                    for (o, &v) in q.iter_mut().zip(w) {
                        *o = quantize_value(v, s, zf);
                    }
                }
            }
            add_errors(w, q, stored, f32::from(z), &mut sum, &mut max);
        }
        pack_row(&q, packed_row);
        if let Some(e) = &mut eval {
            e.row(j, &w, &q, &row_scales, &row_zps)?;
        }
    }
    Some(OnePass {
        packed,
        scales,
        zero_points: scheme.has_zero_point().then_some(zps),
        mse: sum / x.len() as f64,
        max_abs: max,
        output: eval.map(Eval::finish),
    })
}

/// What [`quantize_layer`] computes, the reference way: [`reference::quantize`] (or the `given`
/// ints), [`exported`], [`QuantizedTensor::error`], `eval::output_error` and the stored
/// tensors' encoding, each on the whole layer. The quantizer's path where the one-pass quantizer gives
/// up; it gives the same result, or the error.
///
/// [`exported`]: crate::checkpoint::exported
pub(super) fn reference_layer<T: Element>(
    x: &[T],
    shape: [usize; 2],
    scheme: QuantScheme,
    scale_dtype: DType,
    given: Option<QuantizedTensor>,
    eval: EvalSpec,
) -> Result<OnePass> {
    let q = match given {
        Some(q) => q,
        None => reference::quantize(x, &shape, scheme)?,
    };
    let q = checkpoint::exported(&q, scale_dtype)?;
    let w: Vec<f32> = x.iter().map(|v| v.to_f32()).collect();
    let err = q.error(&w)?;
    let output = match eval.rows {
        0 => None,
        _ => Some(output_error(&q, &w, eval)?),
    };
    // The packed rows, whatever format the layer is stored in: `layer_bytes` converts them.
    let packed = checkpoint::layer_tensors(&q, scale_dtype, checkpoint::PackFormat::PackQuantized)?.swap_remove(0).1;
    Ok(OnePass {
        packed,
        scales: q.scales().to_vec(),
        zero_points: q.zero_points().map(<[i8]>::to_vec),
        mse: err.mse,
        max_abs: err.max_abs,
        output,
    })
}

/// Widens `x` into `w`, and returns the smallest and largest value with subnormals flushed, as
/// the reference's running `min` and `max` find them; `None` when a value is not finite (the
/// reference's error). Lane-wise, so that it vectorizes: min and max are exact, so the order
/// they are taken in does not matter. The sign of a zero bound may differ from the reference's
/// (`-0.0` flushes to `+0.0` here, and which of two zeros a min keeps is not fixed); no scale
/// or zero point depends on it.
fn widen<T: Element>(x: &[T], w: &mut [f32]) -> Option<(f32, f32)> {
    let flush = |v: f32| if v.abs() < f32::MIN_POSITIVE { 0.0 } else { v };
    let (mut lo, mut hi, mut finite) = ([f32::INFINITY; LANES], [f32::NEG_INFINITY; LANES], [true; LANES]);
    let (mut xc, mut wc) = (x.chunks_exact(LANES), w.chunks_exact_mut(LANES));
    for (xc, wc) in (&mut xc).zip(&mut wc) {
        for l in 0..LANES {
            let v = xc[l].to_f32();
            wc[l] = v;
            finite[l] &= v.abs() < f32::INFINITY;
            (lo[l], hi[l]) = (lo[l].min(flush(v)), hi[l].max(flush(v)));
        }
    }
    for (x, w) in xc.remainder().iter().zip(wc.into_remainder()) {
        let v = x.to_f32();
        *w = v;
        finite[0] &= v.abs() < f32::INFINITY;
        (lo[0], hi[0]) = (lo[0].min(flush(v)), hi[0].max(flush(v)));
    }
    finite
        .iter()
        .all(|&f| f)
        .then(|| (lo.into_iter().fold(f32::INFINITY, f32::min), hi.into_iter().fold(f32::NEG_INFINITY, f32::max)))
}

/// Adds the squared errors of the stored values `scale · (q − zp)` against `w` to the running
/// `sum`, element by element in order (the reference's one running sum), and raises `max` to the
/// largest error, as [`QuantizedTensor::error`] does. A chunk's errors are computed together and
/// then added one by one, so that the computation of the next chunk's overlaps the additions.
fn add_errors(w: &[f32], q: &[i8], scale: f32, zp: f32, sum: &mut f64, max: &mut f64) {
    // (q - zp) in f32 is exact, as the reference's i32 difference converted.
    let error = |v: f32, q: i8| (f64::from(v) - f64::from(scale * (f32::from(q) - zp))).abs();
    let mut m = [0f64; LANES];
    let (wc, qc) = (w.chunks_exact(LANES), q.chunks_exact(LANES));
    let rest = wc.remainder().iter().zip(qc.remainder());
    for (wc, qc) in wc.zip(qc) {
        let mut e = [0f64; LANES];
        for l in 0..LANES {
            e[l] = error(wc[l], qc[l]);
            m[l] = if e[l] > m[l] { e[l] } else { m[l] };
        }
        for e in e {
            *sum += e * e;
        }
    }
    for (&v, &q) in rest {
        let e = error(v, q);
        m[0] = if e > m[0] { e } else { m[0] };
        *sum += e * e;
    }
    *max = m.into_iter().fold(*max, f64::max);
}

/// The scale and zero point [`reference::quantize`](crate::reference::quantize) computes for a
/// block with range `[lo, hi]` (flushed values), `None` where it fails.
fn params(mode: Mode, lo: f32, hi: f32) -> Option<(f32, i8)> {
    let (s, z) = match mode {
        Mode::Symmetric => (symmetric_scale(hi.max(-lo)), 0),
        Mode::Asymmetric => asymmetric_params(lo, hi)?,
    };
    if s > max_scale(mode) {
        return None;
    }
    check_scale(0, s, mode).ok()?;
    Some((s, z))
}

/// [`reference::quantize_value`](crate::reference::quantize_value), with `zp` as f32: the same
/// int for every input but NaN (which cannot reach it: the weights are checked finite and the
/// scale is a positive normal float), in code that vectorizes on baseline x86-64 (no SSE4.1
/// `roundps`, no saturating float-to-int conversion).
///
/// `v = x / scale + zp` is clamped to ±256 (the clamp below then gives the same int as for `v`),
/// so `v + 1.5·2²³` lies in [2²³, 2²⁴), where floats are the integers: the addition rounds `v`
/// half to even (1.5·2²³ is even), and the integer is the float's bit pattern less that of
/// 1.5·2²³, consecutive integers having consecutive patterns there.
#[inline]
fn quantize_value(x: f32, scale: f32, zp: f32) -> i8 {
    const SHIFT: f32 = 12_582_912.0;
    // flush_subnormal, but -0.0 becomes +0.0: the same v after adding zp, or the same int.
    let x = if x.abs() < f32::MIN_POSITIVE { 0.0 } else { x };
    let v = (x / scale + zp).clamp(-256.0, 256.0);
    // Cannot overflow; wrapping, as an overflow check would stop the loop from vectorizing.
    let n = ((v + SHIFT).to_bits() as i32).wrapping_sub(SHIFT.to_bits() as i32);
    n.clamp(-128, 127) as i8
}

#[cfg(test)]
#[path = "one_pass_tests.rs"]
mod tests;
