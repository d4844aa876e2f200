//! Property tests of the CPU reference path: error bounds of quantization, agreement of the f32
//! linear with its f64 oracle, and determinism / idempotence.
//!
//! Notation: `u = 2^-24` is the unit roundoff of f32; `s` a block's scale, `z` its zero point.

use crate::reference::{self, asymmetric_params, flush_subnormal, quantize_value, symmetric_scale};
use crate::{Element, Granularity, Mode, QuantScheme, QuantizedTensor};
use half::{bf16, f16};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const U: f64 = 1.0 / (1u64 << 24) as f64;

/// Every scheme that fits a `[rows, cols]` matrix: both modes × per tensor, per channel along
/// either axis, and per group for every group size dividing `cols`.
fn schemes(cols: usize) -> Vec<QuantScheme> {
    let mut g = vec![Granularity::PerTensor, Granularity::PerChannel { axis: 0 }, Granularity::PerChannel { axis: 1 }];
    g.extend((1..=cols).filter(|&d| cols.is_multiple_of(d)).map(|size| Granularity::PerGroup { size }));
    g.iter().flat_map(|&g| [QuantScheme::symmetric(g), QuantScheme::asymmetric(g)]).collect()
}

/// The flat indices sharing each parameter, worked out directly from the granularity (not
/// through `ParamLayout`), in parameter order.
fn blocks(rows: usize, cols: usize, g: Granularity) -> Vec<Vec<usize>> {
    match g {
        Granularity::PerTensor => vec![(0..rows * cols).collect()],
        Granularity::PerChannel { axis: 0 } => (0..rows).map(|r| (0..cols).map(|c| r * cols + c).collect()).collect(),
        Granularity::PerChannel { axis: 1 } => (0..cols).map(|c| (0..rows).map(|r| r * cols + c).collect()).collect(),
        Granularity::PerChannel { axis } => panic!("axis {axis} on a matrix"),
        Granularity::PerGroup { size } => {
            (0..rows * cols / size).map(|b| (b * size..(b + 1) * size).collect()).collect()
        }
    }
}

/// One element before scaling: mostly uniform in [-1, 1), with exact zeros and ±1 mixed in.
fn unit() -> impl Strategy<Value = f32> {
    prop_oneof![8 => -1.0f32..1.0, 2 => Just(0.0f32), 1 => Just(1.0f32), 1 => Just(-1.0f32)]
}

/// A random finite `[rows, cols]` matrix (rows ≤ 9, cols ≤ 40): a unit value times 2^(e + row
/// exponent), so rows differ in magnitude, optionally shifted by ±3·2^e so that whole blocks lie
/// away from zero (the interesting case for asymmetric zero points).
fn matrix(
    max_rows: usize,
    max_cols: usize,
    exp: std::ops::RangeInclusive<i32>,
) -> impl Strategy<Value = (usize, usize, Vec<f32>)> {
    (1..=max_rows, 1..=max_cols, exp, prop_oneof![2 => Just(0.0f32), 1 => Just(3.0f32), 1 => Just(-3.0f32)])
        .prop_flat_map(|(rows, cols, e, shift)| {
            (prop::collection::vec(unit(), rows * cols), prop::collection::vec(-6i32..=6, rows)).prop_map(
                move |(v, row_e)| {
                    let x = v.iter().enumerate().map(|(i, &u)| (u + shift) * 2f32.powi(e + row_e[i / cols])).collect();
                    (rows, cols, x)
                },
            )
        })
}

/// Checks one quantization of `x` against its scheme, element by element.
///
/// Bounds (each `|x − d|`, with `d = fl(s · (q − z))` the dequantized value):
///
/// * Symmetric: `s = fl(absmax / 127)`, so `|x / s| ≤ 127 (1 + 2u)` and the quotient never
///   reaches 127.5 (no clamping). `fl(x / s)` is off by at most `128 u` steps and `fl(s · q)` by
///   at most `127 u s`, so `|x − d| ≤ s/2 + 255 u s ≤ s · (1/2 + 2^-16)`.
/// * Asymmetric, block containing 0: the zero point is not clamped, so `|z − zp_real| ≤ 1/2` and
///   `x / s + z ∈ [−128.5, 127.5]` up to rounding (`(rmax − rmin) / s ≤ 255 (1 + 3u)`); clamping
///   at ±127.5 then costs at most half a step like rounding does, so `|x − d| ≤ s/2` plus f32
///   slack: `|x/s| ≤ 256` makes the quotient, the `+ z`, `zp_real` and the dequant product
///   (`|q − z| ≤ 255`) each off by at most ~`256 u` steps, with a few `u` from the scale's own
///   rounding amplified by 255; `2^12 u = 2^-12` covers all of it: `|x − d| ≤ s · (1/2 + 2^-12)`.
///   (This is tighter than "one step", which is what the clamp-aware argument alone gives.)
/// * Asymmetric, block away from 0 (`rmin > 0` or `rmax < 0`): the course clamps the zero point
///   to −128 (resp. 127), so values more than 255.5 steps from zero saturate at `±255 s`; the
///   error is then up to `rmin` (resp. `|rmax|`), the block's distance from zero. Bound:
///   `s · (1/2 + 2^-12) + dist(0, [rmin, rmax])`.
///
/// Every bound gets `f32::MIN_POSITIVE` more for subnormal inputs, which are flushed to zero.
fn check_quantization(
    x: &[f32],
    rows: usize,
    cols: usize,
    scheme: QuantScheme,
    q: &QuantizedTensor,
) -> Result<(), TestCaseError> {
    let blocks = blocks(rows, cols, scheme.granularity);
    prop_assert_eq!(q.scales().len(), blocks.len(), "{:?}: number of scales", scheme);
    prop_assert_eq!(q.zero_points().is_some(), scheme.mode == Mode::Asymmetric, "{:?}: zero points present", scheme);
    let d = q.dequantize();
    for (p, block) in blocks.iter().enumerate() {
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for &e in block {
            prop_assert_eq!(q.layout().param_of(e), p, "{:?}: element {} belongs to parameter {}", scheme, e, p);
            let v = flush_subnormal(x[e]);
            lo = lo.min(v);
            hi = hi.max(v);
        }
        let (s, z) = (q.scales()[p], q.zero_point(p));
        // The parameters are the scalar contract applied to the block's statistics.
        let (es, ez) = match scheme.mode {
            Mode::Symmetric => (symmetric_scale(hi.max(-lo)), 0),
            Mode::Asymmetric => asymmetric_params(lo, hi).expect("test ranges do not overflow"),
        };
        prop_assert_eq!(
            s.to_bits(),
            es.to_bits(),
            "{:?} block {} [{}, {}]: scale expected {} found {}",
            scheme,
            p,
            lo,
            hi,
            es,
            s
        );
        prop_assert_eq!(z, ez, "{:?} block {} [{}, {}]: zero point", scheme, p, lo, hi);
        prop_assert!(s.is_finite() && s > 0.0, "{:?} block {}: scale {}", scheme, p, s);

        let s64 = f64::from(s);
        let bound = match scheme.mode {
            Mode::Symmetric => s64 * (0.5 + 2f64.powi(-16)),
            Mode::Asymmetric => {
                let dist = f64::from(lo.max(-hi).max(0.0));
                s64 * (0.5 + 2f64.powi(-12)) + dist
            }
        } + f64::from(f32::MIN_POSITIVE);
        let mut max_abs_q = 0i32;
        for &e in block {
            let qe = q.values()[e];
            let expected = quantize_value(x[e], s, z);
            prop_assert_eq!(qe, expected, "{:?} element {} (x = {}, s = {}, z = {})", scheme, e, x[e], s, z);
            let err = (f64::from(x[e]) - f64::from(d[e])).abs();
            prop_assert!(
                err <= bound,
                "{:?} element {}: x = {} dequantized to {} (q = {}, s = {}, z = {}, block [{}, {}]): error {} > bound {}",
                scheme,
                e,
                x[e],
                d[e],
                qe,
                s,
                z,
                lo,
                hi,
                err,
                bound
            );
            max_abs_q = max_abs_q.max(i32::from(qe).abs());
        }
        // Symmetric: a block whose scale is not the degenerate fallback maps its absmax to ±127.
        if scheme.mode == Mode::Symmetric && hi.max(-lo) / 127.0 >= f32::MIN_POSITIVE {
            prop_assert_eq!(max_abs_q, 127, "{:?} block {} [{}, {}]: max |q|", scheme, p, lo, hi);
        }
    }
    Ok(())
}

/// `Σ_segments s · (Σ |x| |q| + |z| Σ |x|) + |bias|` per output: the size of the terms the f32
/// linear actually adds. For symmetric schemes (z = 0) this equals `linear_f64`'s magnitude;
/// for asymmetric ones `Σ x·q` and `z·Σ x` are formed separately and may cancel, so their
/// rounding error scales with this, not with `Σ |x · s (q − z)|`.
fn f32_term_magnitude<T: Element>(x: &[T], w: &QuantizedTensor, bias: Option<&[T]>) -> Vec<f64> {
    let &[n, k] = w.shape() else { panic!("2-D weight") };
    let l = w.layout();
    let mut out = Vec::new();
    for row in x.chunks_exact(k) {
        for j in 0..n {
            let mut m = bias.map_or(0.0, |b| f64::from(b[j].to_f32()).abs());
            for (kk, xv) in row.iter().enumerate() {
                let e = j * k + kk;
                let p = l.param_of(e);
                let xa = f64::from(xv.to_f32()).abs();
                m +=
                    f64::from(w.scales()[p]) * xa * (f64::from(w.values()[e]).abs() + f64::from(w.zero_point(p)).abs());
            }
            out.push(m);
        }
    }
    out
}

/// Compares `reference::linear` with `reference::linear_f64`.
///
/// f32 part: `(k + 2) · 2u · M + 1e-30`, the brief's bound, with `M` the larger of
/// `linear_f64`'s magnitude and [`f32_term_magnitude`] (equal for symmetric schemes). A first-order
/// count for a segment of `g` terms out of `k/g`: `g` products and `g − 1` sums, the `z·Σx`
/// product, the difference, the scale, `k/g` accumulations and the bias: `g + k/g + 4 ≤ k + 5 ≤
/// 2(k + 2)` roundings of at most `u · M` each.
///
/// Output rounding: `half_ulp` of the output dtype relative to the rounded output (`|y_T|` bounds
/// the binade of the f32 value below, so half its ulp is at most `2^-p · |y_T|`), plus `abs_floor`
/// for its subnormal range.
fn check_linear<T: Element>(
    x: &[T],
    w: &QuantizedTensor,
    bias: Option<&[T]>,
    half_ulp: f64,
    abs_floor: f64,
) -> Result<(), TestCaseError> {
    let k = w.shape()[1];
    let y = reference::linear(x, w, bias).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let (y64, mag) = reference::linear_f64(x, w, bias).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let terms = f32_term_magnitude(x, w, bias);
    prop_assert_eq!(y.len(), y64.len());
    for i in 0..y.len() {
        let yt = f64::from(y[i].to_f32());
        let m = mag[i].max(terms[i]);
        let tol = (k as f64 + 2.0) * U * m * 2.0 + 1e-30 + half_ulp * yt.abs() + abs_floor;
        prop_assert!(
            (yt - y64[i]).abs() <= tol,
            "{} {:?} output {}: expected {} (f64) found {} (diff {}, tol {}, magnitude {}, f32 terms {})",
            T::DTYPE,
            w.scheme(),
            i,
            y64[i],
            yt,
            (yt - y64[i]).abs(),
            tol,
            mag[i],
            terms[i]
        );
    }
    Ok(())
}

/// `(n, k, weight [n, k], m, x [m, k], bias [n])`.
type LinearCase = (usize, usize, Vec<f32>, usize, Vec<f32>, Option<Vec<f32>>);

/// Operands of a linear layer: weight `[n, k]` (shifted like [`matrix`] sometimes), `m` rows of
/// activations in [-4, 4], an optional bias. Magnitudes keep every output well inside f16 range.
fn linear_case() -> impl Strategy<Value = LinearCase> {
    (matrix(9, 40, -8..=-4), 1usize..=4, -4i32..=2, any::<bool>()).prop_flat_map(|((n, k, w), m, ex, with_bias)| {
        let sx = 2f32.powi(ex);
        (
            prop::collection::vec(unit().prop_map(move |v| v * sx), m * k),
            prop::collection::vec(unit(), n).prop_map(move |b| with_bias.then_some(b)),
        )
            .prop_map(move |(x, b)| (n, k, w.clone(), m, x, b))
    })
}

fn to<T: Element>(v: &[f32]) -> Vec<T> {
    v.iter().map(|&x| T::from_f32(x)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Scales, zero points and ints follow the scalar contract, and every element reconstructs
    /// within the bounds derived in [`check_quantization`], for every scheme.
    #[test]
    fn quantization_error_is_bounded((rows, cols, x) in matrix(9, 40, -20..=20)) {
        for scheme in schemes(cols) {
            let q = reference::quantize(&x, &[rows, cols], scheme).map_err(|e| TestCaseError::fail(format!("{scheme:?}: {e}")))?;
            check_quantization(&x, rows, cols, scheme, &q)?;
        }
    }

    /// Asymmetric blocks whose range contains zero (the course's intended case; here forced by
    /// zeroing each block's first element) reconstruct within half a step: the zero point is
    /// never clamped and value clamping costs no more than rounding (see [`check_quantization`]).
    #[test]
    fn asymmetric_blocks_containing_zero_are_within_half_a_step((rows, cols, x) in matrix(9, 40, -20..=20)) {
        for scheme in schemes(cols).into_iter().filter(|s| s.mode == Mode::Asymmetric) {
            let mut x = x.clone();
            for block in blocks(rows, cols, scheme.granularity) {
                x[block[0]] = 0.0;
            }
            let q = reference::quantize(&x, &[rows, cols], scheme).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let d = q.dequantize();
            for e in 0..x.len() {
                let s = f64::from(q.scales()[q.layout().param_of(e)]);
                let bound = s * (0.5 + 2f64.powi(-12)) + f64::from(f32::MIN_POSITIVE);
                let err = (f64::from(x[e]) - f64::from(d[e])).abs();
                prop_assert!(err <= bound,
                    "{:?} element {}: x = {} dequantized to {}: error {} > s/2 = {}", scheme, e, x[e], d[e], err, s / 2.0);
            }
        }
    }

    /// Half-precision weights quantize exactly like their (exact) f32 widening. Magnitudes stay
    /// below 4 · 2^10 so that f16 does not overflow.
    #[test]
    fn half_inputs_quantize_like_their_f32_values((rows, cols, x) in matrix(6, 24, -6..=4)) {
        let xh: Vec<f16> = to(&x);
        let xb: Vec<bf16> = to(&x);
        let wh: Vec<f32> = xh.iter().map(|v| v.to_f32()).collect();
        let wb: Vec<f32> = xb.iter().map(|v| v.to_f32()).collect();
        for scheme in schemes(cols) {
            let shape = [rows, cols];
            let qh = reference::quantize(&xh, &shape, scheme).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let qb = reference::quantize(&xb, &shape, scheme).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&qh, &reference::quantize(&wh, &shape, scheme).unwrap(), "f16 {:?}", scheme);
            prop_assert_eq!(&qb, &reference::quantize(&wb, &shape, scheme).unwrap(), "bf16 {:?}", scheme);
            check_quantization(&wb, rows, cols, scheme, &qb)?;
        }
    }

    /// `reference::linear` in f32 agrees with the f64 oracle; see [`check_linear`] for the bound.
    #[test]
    fn linear_f32_matches_f64_oracle((n, k, w, m, x, b) in linear_case()) {
        for scheme in schemes(k) {
            let q = reference::quantize(&w, &[n, k], scheme).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(x.len(), m * k);
            check_linear::<f32>(&x, &q, b.as_deref(), 0.0, 0.0)?;
        }
    }

    /// f16 and bf16 activations (and bias): the f32 bound plus half an ulp of the output dtype,
    /// `2^-11 |y| + 2^-25` for f16 (2^-25 is half its smallest subnormal step) and `2^-8 |y|`
    /// for bf16 (whose subnormal range is far below the 1e-30 floor).
    #[test]
    fn linear_half_matches_f64_oracle((n, k, w, _m, x, b) in linear_case()) {
        let (xh, bh): (Vec<f16>, Option<Vec<f16>>) = (to(&x), b.as_deref().map(to));
        let (xb, bb): (Vec<bf16>, Option<Vec<bf16>>) = (to(&x), b.as_deref().map(to));
        for scheme in schemes(k) {
            let q = reference::quantize(&w, &[n, k], scheme).map_err(|e| TestCaseError::fail(e.to_string()))?;
            check_linear::<f16>(&xh, &q, bh.as_deref(), 2f64.powi(-11), 2f64.powi(-25))?;
            check_linear::<bf16>(&xb, &q, bb.as_deref(), 2f64.powi(-8), 0.0)?;
        }
    }

    /// Quantizing twice gives the same tensor, and requantizing the dequantized tensor with the
    /// same scales and zero points gives the same ints: `fl(fl(s·(q−z)) / s) + z` is within a few
    /// ulps of the integer `q`, far from a rounding boundary.
    #[test]
    fn quantize_is_deterministic_and_idempotent((rows, cols, x) in matrix(9, 40, -20..=20)) {
        let shape = [rows, cols];
        for scheme in schemes(cols) {
            let q = reference::quantize(&x, &shape, scheme).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let again = reference::quantize(&x, &shape, scheme).unwrap();
            prop_assert_eq!(&again, &q, "{:?}: quantize is not deterministic", scheme);
            let d = q.dequantize();
            let zps = q.zero_points().map(<[i8]>::to_vec);
            let q2 = reference::quantize_with_params(&d, &shape, scheme, q.scales().to_vec(), zps)
                .map_err(|e| TestCaseError::fail(format!("{scheme:?}: {e}")))?;
            prop_assert_eq!(q2.values(), q.values(), "{:?}: requantizing the dequantized tensor changed the ints", scheme);
            prop_assert_eq!(q2.scales(), q.scales());
            prop_assert_eq!(q2.dequantize(), d, "{:?}: dequantize(requantize) differs", scheme);
        }
    }
}
