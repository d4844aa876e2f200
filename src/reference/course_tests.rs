//! The course's worked examples on the CPU reference path, with exact expected ints and scales.
//!
//! The course uses PyTorch, whose `round` is round-half-to-even; the reference path does the
//! same. Expected values below are the course's printed results and are the contract: a
//! failure here means the reference path changed its numerics, not that the test is too strict.

use crate::reference::{self, quantize_value};
use crate::{Granularity, QuantScheme};
use half::bf16;

/// The 3×3 tensor of the course's asymmetric and per-channel examples.
const COURSE_TENSOR: [f32; 9] = [191.6, -13.5, 728.6, 92.14, 295.5, -184.0, 0.0, 684.6, 245.5];
pub(super) const SHAPE_3X3: [usize; 2] = [3, 3];

/// Asserts two int slices are equal, printing both as matrices with `cols` columns.
pub(super) fn assert_ints(what: &str, found: &[i8], expected: &[i8], cols: usize) {
    assert_eq!(
        found,
        expected,
        "{what}: ints differ\n expected: {:?}\n    found: {:?}",
        expected.chunks(cols).collect::<Vec<_>>(),
        found.chunks(cols).collect::<Vec<_>>()
    );
}

/// Asserts every element is within `tol` of the expected value.
fn assert_close(what: &str, found: &[f32], expected: &[f32], tol: f32) {
    assert_eq!(found.len(), expected.len(), "{what}: lengths differ (expected {expected:?}, found {found:?})");
    for (i, (&f, &e)) in found.iter().zip(expected).enumerate() {
        assert!(
            (f - e).abs() <= tol,
            "{what}[{i}]: expected {e} ± {tol}, found {f} (diff {})\n expected: {expected:?}\n    found: {found:?}",
            (f - e).abs()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Asymmetric, per tensor
// ---------------------------------------------------------------------------------------------

#[test]
fn asymmetric_with_given_scale_and_zero_point() {
    let scheme = QuantScheme::asymmetric(Granularity::PerTensor);
    let q = reference::quantize_with_params(&COURSE_TENSOR, &SHAPE_3X3, scheme, vec![3.5], Some(vec![-70])).unwrap();
    assert_ints(
        "linear_q_with_scale_and_zero_point(scale=3.5, zp=-70)",
        q.values(),
        &[-15, -74, 127, -44, 14, -123, -70, 126, 0],
        3,
    );
    assert_eq!(q.scales(), [3.5], "scale: expected [3.5], found {:?}", q.scales());
    assert_eq!(q.zero_points(), Some(&[-70i8][..]), "zero point: expected [-70], found {:?}", q.zero_points());

    // 3.5 * (q + 70) is an exact f32 product for every q here, so equality is exact.
    let expected = [192.5, -14.0, 689.5, 91.0, 294.0, -185.5, 0.0, 686.0, 245.0];
    let d = q.dequantize();
    assert_eq!(d, expected, "dequantized: expected {expected:?}, found {d:?}");

    // The error metrics: 728.6 saturates at 127 -> 689.5, the largest error.
    let err = q.error(&COURSE_TENSOR).unwrap();
    let expected_max = f64::from(728.6f32) - 689.5;
    assert_eq!(err.max_abs, expected_max, "max_abs: expected {expected_max}, found {}", err.max_abs);
    let expected_mse =
        COURSE_TENSOR.iter().zip(&expected).map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2)).sum::<f64>() / 9.0;
    assert!((err.mse - expected_mse).abs() <= 1e-12 * expected_mse, "mse: expected {expected_mse}, found {}", err.mse);
}

#[test]
fn asymmetric_per_tensor_parameters() {
    let scheme = QuantScheme::asymmetric(Granularity::PerTensor);
    let q = reference::quantize(&COURSE_TENSOR, &SHAPE_3X3, scheme).unwrap();
    let expected_scale = (728.6f32 - (-184f32)) / 255f32;
    let s = q.scales()[0];
    assert_eq!(q.scales().len(), 1, "one scale per tensor, found {:?}", q.scales());
    assert_eq!(
        s.to_bits(),
        expected_scale.to_bits(),
        "scale: expected {expected_scale} ({:#x}), found {s} ({:#x})",
        expected_scale.to_bits(),
        s.to_bits()
    );
    assert!((s - 3.578823).abs() <= 1e-6, "scale: expected 3.578823 ± 1e-6, found {s}");
    assert_eq!(q.zero_points(), Some(&[-77i8][..]), "zero point: expected [-77], found {:?}", q.zero_points());
    // The ints follow from the parameters.
    let expected: Vec<i8> = COURSE_TENSOR.iter().map(|&x| quantize_value(x, s, -77)).collect();
    assert_ints("asymmetric per tensor", q.values(), &expected, 3);
    // Both ends of the range land on the ends of int8 (no zero-point clamping here).
    assert_eq!(q.values()[2], 127, "max 728.6 -> expected 127, found {}", q.values()[2]);
    assert_eq!(q.values()[5], -128, "min -184 -> expected -128, found {}", q.values()[5]);
    let err = q.error(&COURSE_TENSOR).unwrap();
    assert!(
        err.max_abs <= f64::from(s) / 2.0 * (1.0 + 1e-4),
        "max_abs: expected <= scale/2 = {}, found {}",
        s / 2.0,
        err.max_abs
    );
}

// ---------------------------------------------------------------------------------------------
// Symmetric, per channel
// ---------------------------------------------------------------------------------------------

#[test]
fn symmetric_per_channel_axis0() {
    let scheme = QuantScheme::symmetric(Granularity::PerChannel { axis: 0 });
    let q = reference::quantize(&COURSE_TENSOR, &SHAPE_3X3, scheme).unwrap();
    assert_close("per-channel scales", q.scales(), &[5.7370, 2.3268, 5.3906], 1e-4);
    for (r, (&s, absmax)) in q.scales().iter().zip([728.6f32, 295.5, 684.6]).enumerate() {
        let e = absmax / 127.0;
        assert_eq!(s.to_bits(), e.to_bits(), "scale of row {r}: expected {absmax}/127 = {e}, found {s}");
    }
    assert_eq!(q.zero_points(), None, "symmetric has no zero points, found {:?}", q.zero_points());
    assert_ints("symmetric per channel (axis 0)", q.values(), &[33, -2, 127, 40, 127, -79, 0, 127, 46], 3);
    assert!(q.scheme() == QuantScheme::default(), "the default scheme is symmetric per channel axis 0");
}

// ---------------------------------------------------------------------------------------------
// W8A32 linear
// ---------------------------------------------------------------------------------------------

pub(super) const W8A32_WEIGHT: [f32; 9] = [-2.0, -1.13, 0.42, -1.51, 0.25, 1.62, 0.23, 1.35, 2.15];

#[test]
fn w8a32_weight_quantization() {
    let scheme = QuantScheme::symmetric(Granularity::PerTensor);
    let q = reference::quantize(&W8A32_WEIGHT, &SHAPE_3X3, scheme).unwrap();
    assert_ints("W8A32 weight", q.values(), &[-118, -67, 25, -89, 15, 96, 14, 80, 127], 3);
    let expected = 2.15f32 / 127f32;
    let s = q.scales()[0];
    assert_eq!(s.to_bits(), expected.to_bits(), "scale: expected 2.15/127 = {expected}, found {s}");
    assert!((s - 0.016929134).abs() <= 1e-9, "scale: expected 0.016929134, found {s}");
}

#[test]
fn w8a32_linear() {
    let scheme = QuantScheme::symmetric(Granularity::PerTensor);
    let q = reference::quantize(&W8A32_WEIGHT, &SHAPE_3X3, scheme).unwrap();
    let x = [1.0f32, 2.0, 3.0];
    let expected = [-2.9965f32, 3.8768, 9.3957];

    let y = reference::linear(&x, &q, None).unwrap();
    assert_close("quantized linear (f32)", &y, &expected, 1e-4);

    let (y64, mag) = reference::linear_f64(&x, &q, None).unwrap();
    let y64f: Vec<f32> = y64.iter().map(|&v| v as f32).collect();
    assert_close("quantized linear (f64 oracle)", &y64f, &expected, 1e-4);
    // The ints make the exact results s * (-177, 229, 555).
    let s = f64::from(q.scales()[0]);
    for (i, (&v, dot)) in y64.iter().zip([-177.0, 229.0, 555.0]).enumerate() {
        assert!((v - s * dot).abs() <= 1e-12, "y64[{i}]: expected {} found {v}", s * dot);
    }
    for (i, (&m, dot)) in mag.iter().zip([118.0 + 134.0 + 75.0, 89.0 + 30.0 + 288.0, 14.0 + 160.0 + 381.0]).enumerate()
    {
        assert!((m - s * dot).abs() <= 1e-12, "magnitude[{i}]: expected {} found {m}", s * dot);
    }

    // The unquantized layer: x · Wᵀ.
    let float: Vec<f32> = W8A32_WEIGHT.chunks(3).map(|w| w.iter().zip(&x).map(|(a, b)| a * b).sum()).collect();
    assert_close("float layer", &float, &[-3.0, 3.85, 9.38], 1e-5);
    assert_close("quantized vs float layer", &y, &float, 0.03);

    // With a bias.
    let b = [0.5f32, -1.0, 0.25];
    let yb = reference::linear(&x, &q, Some(&b)).unwrap();
    let eb: Vec<f32> = expected.iter().zip(&b).map(|(a, b)| a + b).collect();
    assert_close("quantized linear with bias", &yb, &eb, 1e-4);

    // Two rows of activations give two rows of outputs.
    let x2 = [1.0f32, 2.0, 3.0, 1.0, 2.0, 3.0];
    let y2 = reference::linear(&x2, &q, None).unwrap();
    assert_eq!(&y2[..3], &y[..], "row 0 of a batch: expected {y:?}, found {:?}", &y2[..3]);
    assert_eq!(&y2[3..], &y[..], "row 1 of a batch: expected {y:?}, found {:?}", &y2[3..]);
}

// ---------------------------------------------------------------------------------------------
// W8A16 per channel (bf16 weights)
// ---------------------------------------------------------------------------------------------

/// Written as the exact decimal expansions of their bf16 values.
#[rustfmt::skip]
#[allow(clippy::excessive_precision)]
const W8A16_WEIGHT: [f32; 32] = [
    0.466796875, 0.375, -0.296875, 0.91796875, 1.2578125, 0.10888671875, 0.0, 1.0703125,
    -0.98046875, 0.06494140625, -0.6484375, -0.146484375, -1.421875, 0.0615234375, 0.0, 0.0,
    -0.50390625, -1.921875, 0.0712890625, 1.0625, 0.03466796875, -1.3203125, -0.169921875, 1.4921875,
    0.040283203125, -0.7890625, -0.5390625, 0.9140625, 1.453125, -1.0859375, -0.33984375, -0.43359375,
];

fn w8a16_weight() -> Vec<bf16> {
    let w: Vec<bf16> = W8A16_WEIGHT.iter().map(|&v| bf16::from_f32(v)).collect();
    for (i, (b, &v)) in w.iter().zip(&W8A16_WEIGHT).enumerate() {
        assert_eq!(b.to_f32(), v, "weight[{i}] = {v} is not exact in bf16 (rounds to {})", b.to_f32());
    }
    w
}

#[test]
fn w8a16_per_channel_bf16() {
    let w = w8a16_weight();
    let scheme = QuantScheme::symmetric(Granularity::PerChannel { axis: 0 });
    let q = reference::quantize(&w, &[4, 8], scheme).unwrap();
    #[rustfmt::skip]
    let expected = [
        47, 38, -30, 93, 127, 11, 0, 108,
        -88, 6, -58, -13, -127, 5, 0, 0,
        -33, -127, 5, 70, 2, -87, -11, 99,
        4, -69, -47, 80, 127, -95, -30, -38,
    ];
    assert_ints("W8A16 per channel", q.values(), &expected, 8);
    let absmax = [1.2578125f32, 1.421875, 1.921875, 1.453125];
    for (r, (&s, a)) in q.scales().iter().zip(absmax).enumerate() {
        assert_eq!(s.to_bits(), (a / 127.0).to_bits(), "scale of row {r}: expected {a}/127 = {}, found {s}", a / 127.0);
    }
    // Quantizing the same values given as f32 gives the same result.
    let qf = reference::quantize(&W8A16_WEIGHT, &[4, 8], scheme).unwrap();
    assert_eq!(qf, q, "bf16 and f32 inputs of equal value quantize differently");
}

/// Element [3][4] = 1.453125 is its row's absmax, so it must be exactly 127.
///
/// The course computed the scale and the division in bf16: 1.453125 / bf16(1.453125 / 127)
/// came out as 127.3, which bf16 rounds up to 128, and the int8 cast wrapped it to -128 (a sign
/// flip of the row's largest weight). We compute the statistics and the division in f32 and clamp
/// to [-128, 127], so the row maximum maps to 127.
#[test]
fn w8a16_row_max_is_127_not_wrapped() {
    let w = w8a16_weight();
    let q = reference::quantize(&w, &[4, 8], QuantScheme::symmetric(Granularity::PerChannel { axis: 0 })).unwrap();
    let v = q.values()[3 * 8 + 4];
    assert_eq!(v, 127, "element [3][4] = 1.453125: expected 127, found {v} (bf16 arithmetic would give -128)");
    let d = q.dequantize()[3 * 8 + 4];
    assert!((d - 1.453125).abs() <= 1e-6, "element [3][4] dequantized: expected 1.453125, found {d}");

    // What the course's bf16 arithmetic did, for the record: the scale rounded down to bf16
    // makes the true quotient 127.3, bf16 (whose step at 127 is 0.5) rounds that to 127.5, and
    // round-half-to-even takes 127.5 to 128, which an unclamped int8 cast wraps to -128.
    let s_bf16 = bf16::from_f32(1.453125f32 / 127.0);
    let exact = 1.453125 / s_bf16.to_f32();
    assert!((exact - 127.3).abs() < 0.05, "quotient by the bf16 scale: expected about 127.3, found {exact}");
    let quot = bf16::from_f32(exact).to_f32();
    assert_eq!(quot, 127.5, "bf16 quotient: expected 127.5, found {quot}");
    assert_eq!(quot.round_ties_even(), 128.0, "rounded bf16 quotient: expected 128 (the course's overflow)");
    assert_eq!(128i32 as i8, -128, "the wrap the course hit");
    // Even given that too-small bf16 scale, the reference clamps instead of wrapping.
    assert_eq!(quantize_value(1.453125, s_bf16.to_f32(), 0), 127, "quantize_value must clamp, not wrap");
}
