//! The reference path's edge cases, with exact expected values: ties, degenerate blocks, error
//! metrics, and bad input (each error kind and the position it names).

use half::bf16;

use super::course_tests::{SHAPE_3X3, W8A32_WEIGHT, assert_ints};
use crate::reference::{self, quantize_value};
use crate::{Error, Granularity, QuantScheme, QuantizedTensor};

#[test]
fn quantize_value_ties_round_half_to_even() {
    // Each x / scale (+ zp) is exactly a half-integer in f32.
    let cases: [(f32, f32, i8, i8); 14] = [
        (1.25, 0.5, 0, 2),      // 2.5 -> 2
        (1.75, 0.5, 0, 4),      // 3.5 -> 4
        (2.25, 0.5, 0, 4),      // 4.5 -> 4
        (0.25, 0.5, 0, 0),      // 0.5 -> 0
        (0.75, 0.5, 0, 2),      // 1.5 -> 2
        (-0.25, 0.5, 0, 0),     // -0.5 -> -0 -> 0
        (-1.25, 0.5, 0, -2),    // -2.5 -> -2
        (-1.75, 0.5, 0, -4),    // -3.5 -> -4
        (-0.75, 0.5, 0, -2),    // -1.5 -> -2
        (0.25, 0.5, 3, 4),      // 0.5 + 3 = 3.5 -> 4
        (0.25, 0.5, -3, -2),    // 0.5 - 3 = -2.5 -> -2
        (-0.25, 0.5, 5, 4),     // -0.5 + 5 = 4.5 -> 4
        (63.75, 0.5, 0, 127),   // 127.5 -> 128 -> clamped to 127
        (-64.25, 0.5, 0, -128), // -128.5 -> -128
    ];
    for (x, s, z, expected) in cases {
        let found = quantize_value(x, s, z);
        assert_eq!(
            found,
            expected,
            "quantize_value({x}, {s}, {z}) = round({}): expected {expected}, found {found}",
            x / s + f32::from(z)
        );
    }
    // The same ties through a whole tensor with given parameters.
    let x = [1.25f32, 1.75, -1.25, -1.75];
    let q = reference::quantize_with_params(&x, &[4], QuantScheme::symmetric(Granularity::PerTensor), vec![0.5], None)
        .unwrap();
    assert_ints("ties through quantize_with_params", q.values(), &[2, 4, -2, -4], 4);
}

#[test]
fn all_zero_row_has_finite_scale_and_zero_ints() {
    let x = [0.0f32, 0.0, 0.0, 1.0, -2.0, 0.5];
    for scheme in [
        QuantScheme::symmetric(Granularity::PerChannel { axis: 0 }),
        QuantScheme::asymmetric(Granularity::PerChannel { axis: 0 }),
    ] {
        let q = reference::quantize(&x, &[2, 3], scheme).unwrap();
        let s = q.scales()[0];
        assert!(s.is_finite() && s > 0.0, "{scheme:?}: zero row scale: expected finite and positive, found {s}");
        assert_eq!(
            &q.values()[..3],
            [0, 0, 0],
            "{scheme:?}: zero row ints: expected [0, 0, 0], found {:?}",
            &q.values()[..3]
        );
        assert_eq!(q.zero_point(0), 0, "{scheme:?}: zero row zero point: expected 0, found {}", q.zero_point(0));
        let d = q.dequantize();
        assert_eq!(
            &d[..3],
            [0.0, 0.0, 0.0],
            "{scheme:?}: zero row dequantized: expected exactly 0, found {:?}",
            &d[..3]
        );
        assert!(d.iter().all(|v| v.is_finite()), "{scheme:?}: dequantized holds a non-finite value: {d:?}");
    }
    // A whole zero tensor.
    let q = reference::quantize(&[0.0f32; 4], &[2, 2], QuantScheme::asymmetric(Granularity::PerTensor)).unwrap();
    assert_eq!(q.values(), [0; 4], "zero tensor ints: expected zeros, found {:?}", q.values());
    assert_eq!(q.dequantize(), [0.0; 4], "zero tensor dequantized: expected zeros, found {:?}", q.dequantize());
}

#[test]
fn constant_row_under_asymmetric() {
    let x = [0.7f32, 0.7, 0.7, 0.7, -3.25, -3.25, -3.25, -3.25, 1e-3, 1e-3, 1e-3, 1e-3];
    for g in [Granularity::PerChannel { axis: 0 }, Granularity::PerGroup { size: 4 }] {
        let q = reference::quantize(&x, &[3, 4], QuantScheme::asymmetric(g)).unwrap();
        let d = q.dequantize();
        for (e, (&xv, &dv)) in x.iter().zip(&d).enumerate() {
            let s = q.scales()[q.layout().param_of(e)];
            assert!(s.is_finite() && s > 0.0, "{g:?}: scale of element {e}: expected finite and positive, found {s}");
            assert!(dv.is_finite(), "{g:?}: element {e} dequantized to {dv}");
            // The documented fallback (symmetric parameters) is within half a step; the contract
            // asked for is one step.
            assert!((dv - xv).abs() <= s, "{g:?}: element {e}: expected {xv} within one step {s}, found {dv}");
            assert!(
                (dv - xv).abs() <= s / 2.0 * (1.0 + 1e-5),
                "{g:?}: element {e}: expected {xv} within half a step {}, found {dv}",
                s / 2.0
            );
        }
    }
    // A constant whole tensor.
    let c = [5.0f32; 6];
    let q = reference::quantize(&c, &[2, 3], QuantScheme::asymmetric(Granularity::PerTensor)).unwrap();
    let (s, d) = (q.scales()[0], q.dequantize());
    assert!(d.iter().all(|&v| (v - 5.0).abs() <= s), "constant 5.0: expected within one step {s}, found {d:?}");
}

#[test]
fn error_metrics_on_a_tiny_case() {
    // values [2, -1, 0, 3] at scale 0.5 dequantize to [1.0, -0.5, 0.0, 1.5].
    let scheme = QuantScheme::symmetric(Granularity::PerTensor);
    let q = QuantizedTensor::new(&[2, 2], scheme, vec![2, -1, 0, 3], vec![0.5], None).unwrap();
    assert_eq!(
        q.dequantize(),
        [1.0, -0.5, 0.0, 1.5],
        "dequantized: expected [1, -0.5, 0, 1.5], found {:?}",
        q.dequantize()
    );
    // Differences 0.125, 0, 0.25, 0.5: squares sum to 0.328125, mean 0.08203125; max 0.5.
    let original = [1.125f32, -0.5, 0.25, 1.0];
    let err = q.error(&original).unwrap();
    assert_eq!(err.mse, 0.08203125, "mse: expected 0.08203125, found {}", err.mse);
    assert_eq!(err.max_abs, 0.5, "max_abs: expected 0.5, found {}", err.max_abs);
    // The same originals as bf16 (all exact) give the same metrics.
    let ob: Vec<bf16> = original.iter().map(|&v| bf16::from_f32(v)).collect();
    let eb = q.error(&ob).unwrap();
    assert_eq!(eb, err, "error against bf16 originals: expected {err:?}, found {eb:?}");
    // A perfect reconstruction has zero error.
    let e0 = q.error(&[1.0f32, -0.5, 0.0, 1.5]).unwrap();
    assert_eq!((e0.mse, e0.max_abs), (0.0, 0.0), "exact reconstruction: expected zero error, found {e0:?}");
    // Asymmetric: scale 0.25, zp 4; values [4, 8, 0] -> [0, 1, -1]; original [0.1, 1, -1].
    let a = QuantScheme::asymmetric(Granularity::PerTensor);
    let qa = QuantizedTensor::new(&[3], a, vec![4, 8, 0], vec![0.25], Some(vec![4])).unwrap();
    assert_eq!(qa.dequantize(), [0.0, 1.0, -1.0], "asymmetric dequantized: found {:?}", qa.dequantize());
    let ea = qa.error(&[0.125f32, 1.0, -1.0]).unwrap();
    let expected_mse = 0.125f64 * 0.125 / 3.0;
    assert_eq!(ea.mse, expected_mse, "asymmetric mse: expected {expected_mse}, found {}", ea.mse);
    assert_eq!(ea.max_abs, 0.125, "asymmetric max_abs: expected 0.125, found {}", ea.max_abs);
    // A length mismatch is a shape error.
    assert!(matches!(q.error(&[1.0f32; 3]), Err(Error::Shape(_))), "error() with 3 of 4 elements must be Error::Shape");
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

#[test]
fn non_finite_weights_name_their_position() {
    let scheme = QuantScheme::default();
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut x = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        x[4] = bad;
        match reference::quantize(&x, &[2, 3], scheme) {
            Err(Error::NonFinite { position, index, value, what }) => {
                assert_eq!(position, [1, 1], "{bad} at flat 4 of [2, 3]: expected position [1, 1], found {position:?}");
                assert_eq!(index, 4, "expected flat index 4, found {index}");
                assert!(
                    value.is_nan() == bad.is_nan() && (bad.is_nan() || value == bad),
                    "expected value {bad}, found {value}"
                );
                assert!(!what.is_empty(), "NonFinite should say which input");
            }
            other => panic!("{bad} in weights: expected Error::NonFinite, found {other:?}"),
        }
        match reference::quantize_with_params(
            &x,
            &[2, 3],
            QuantScheme::symmetric(Granularity::PerTensor),
            vec![1.0],
            None,
        ) {
            Err(Error::NonFinite { position, .. }) => {
                assert_eq!(position, [1, 1], "quantize_with_params: expected [1, 1], found {position:?}")
            }
            other => {
                panic!("{bad} in quantize_with_params: expected Error::NonFinite, found {other:?}")
            }
        }
    }
    // Three dimensions, and the first of several non-finite values wins.
    let mut x = vec![0.5f32; 24];
    x[17] = f32::NAN;
    x[20] = f32::INFINITY;
    match reference::quantize(&x, &[2, 3, 4], QuantScheme::symmetric(Granularity::PerTensor)) {
        Err(Error::NonFinite { position, index, .. }) => {
            assert_eq!(position, [1, 1, 1], "flat 17 of [2, 3, 4]: expected [1, 1, 1], found {position:?}");
            assert_eq!(index, 17, "expected flat index 17, found {index}");
        }
        other => panic!("NaN in a 3-D tensor: expected Error::NonFinite, found {other:?}"),
    }
    // Half-precision inputs.
    let mut h = vec![half::f16::from_f32(1.0); 6];
    h[5] = half::f16::INFINITY;
    match reference::quantize(&h, &[2, 3], scheme) {
        Err(Error::NonFinite { position, .. }) => {
            assert_eq!(position, [1, 2], "f16 inf at flat 5: expected [1, 2], found {position:?}")
        }
        other => panic!("inf in f16 weights: expected Error::NonFinite, found {other:?}"),
    }
}

#[test]
fn group_size_that_does_not_divide_is_a_scheme_error() {
    let x = [0.5f32; 8];
    for size in [3, 0, 5, 16] {
        let r = reference::quantize(&x, &[2, 4], QuantScheme::symmetric(Granularity::PerGroup { size }));
        assert!(matches!(r, Err(Error::Scheme(_))), "group size {size} on [2, 4]: expected Error::Scheme, found {r:?}");
    }
    let r = reference::quantize(&x, &[2, 4], QuantScheme::symmetric(Granularity::PerChannel { axis: 2 }));
    assert!(matches!(r, Err(Error::Scheme(_))), "axis 2 on [2, 4]: expected Error::Scheme, found {r:?}");
    // Non-positive, subnormal or too large given scales; non-finite ones.
    for s in [0.0, -1.0, 1e-40, 3e38, f32::NAN, f32::INFINITY] {
        let r =
            reference::quantize_with_params(&x, &[2, 4], QuantScheme::symmetric(Granularity::PerTensor), vec![s], None);
        let ok = if s.is_finite() {
            matches!(r, Err(Error::BadScale { index: 0, .. }))
        } else {
            matches!(r, Err(Error::NonFinite { index: 0, .. }))
        };
        assert!(ok, "given scale {s}: expected BadScale or NonFinite, found {r:?}");
    }
    // Zero points missing for an asymmetric scheme, or given for a symmetric one.
    let r =
        reference::quantize_with_params(&x, &[2, 4], QuantScheme::asymmetric(Granularity::PerTensor), vec![1.0], None);
    assert!(matches!(r, Err(Error::Scheme(_))), "asymmetric without zero points: expected Error::Scheme, found {r:?}");
    let r = reference::quantize_with_params(
        &x,
        &[2, 4],
        QuantScheme::symmetric(Granularity::PerTensor),
        vec![1.0],
        Some(vec![0]),
    );
    assert!(matches!(r, Err(Error::Scheme(_))), "symmetric with zero points: expected Error::Scheme, found {r:?}");
}

#[test]
fn empty_inputs_are_empty_errors() {
    let scheme = QuantScheme::default();
    for shape in [&[2usize, 0][..], &[0, 3], &[0], &[4, 0, 2]] {
        let r = reference::quantize::<f32>(&[], shape, scheme);
        assert!(matches!(r, Err(Error::Empty(_))), "shape {shape:?}: expected Error::Empty, found {r:?}");
    }
    let r = reference::quantize::<f32>(&[], &[], scheme);
    assert!(matches!(r, Err(Error::Shape(_))), "shape []: expected Error::Shape, found {r:?}");
    let q = reference::quantize(&[1.0f32; 6], &[2, 3], scheme).unwrap();
    let r = reference::linear::<f32>(&[], &q, None);
    assert!(matches!(r, Err(Error::Empty(_))), "empty activation: expected Error::Empty, found {r:?}");
}

#[test]
fn mismatched_lengths_are_shape_errors() {
    let scheme = QuantScheme::default();
    let r = reference::quantize(&[1.0f32; 5], &[2, 3], scheme);
    assert!(matches!(r, Err(Error::Shape(_))), "5 values for [2, 3]: expected Error::Shape, found {r:?}");
    let r = reference::quantize(&[1.0f32; 7], &[2, 3], scheme);
    assert!(matches!(r, Err(Error::Shape(_))), "7 values for [2, 3]: expected Error::Shape, found {r:?}");
    let r = reference::quantize_with_params(&[1.0f32; 6], &[2, 3], scheme, vec![1.0; 3], None);
    assert!(matches!(r, Err(Error::Shape(_))), "3 scales for 2 channels: expected Error::Shape, found {r:?}");
    let a = QuantScheme::asymmetric(Granularity::PerChannel { axis: 0 });
    let r = reference::quantize_with_params(&[1.0f32; 6], &[2, 3], a, vec![1.0; 2], Some(vec![0; 1]));
    assert!(matches!(r, Err(Error::Shape(_))), "1 zero point for 2 channels: expected Error::Shape, found {r:?}");
}

#[test]
fn linear_shape_errors() {
    let q = reference::quantize(&W8A32_WEIGHT, &SHAPE_3X3, QuantScheme::symmetric(Granularity::PerTensor)).unwrap();
    for len in [1, 2, 4, 5, 7] {
        let x = vec![1.0f32; len];
        let r = reference::linear(&x, &q, None);
        assert!(matches!(r, Err(Error::Shape(_))), "x of length {len}, in = 3: expected Error::Shape, found {r:?}");
        let r = reference::linear_f64(&x, &q, None);
        assert!(matches!(r, Err(Error::Shape(_))), "linear_f64, x of length {len}: expected Error::Shape, found {r:?}");
    }
    let x = [1.0f32, 2.0, 3.0];
    for blen in [0, 2, 4, 6] {
        let b = vec![0.0f32; blen];
        let r = reference::linear(&x, &q, Some(&b));
        assert!(
            matches!(r, Err(Error::Shape(_))),
            "bias of length {blen}, out = 3: expected Error::Shape, found {r:?}"
        );
        let r = reference::linear_f64(&x, &q, Some(&b));
        assert!(
            matches!(r, Err(Error::Shape(_))),
            "linear_f64, bias of length {blen}: expected Error::Shape, found {r:?}"
        );
    }
    // A weight that is not 2-D.
    let q1 = reference::quantize(&[1.0f32; 3], &[3], QuantScheme::symmetric(Granularity::PerTensor)).unwrap();
    let r = reference::linear(&x, &q1, None);
    assert!(matches!(r, Err(Error::Shape(_))), "1-D weight: expected Error::Shape, found {r:?}");
}

#[test]
fn range_overflow_is_reported() {
    let x = [-3e38f32, 3e38];
    let r = reference::quantize(&x, &[2], QuantScheme::asymmetric(Granularity::PerTensor));
    assert!(
        matches!(r, Err(Error::RangeOverflow { param: 0, .. })),
        "range -3e38..3e38: expected RangeOverflow {{ param: 0 }}, found {r:?}"
    );
    // Symmetric handles the same values.
    let q = reference::quantize(&x, &[2], QuantScheme::symmetric(Granularity::PerTensor)).unwrap();
    assert_eq!(q.values(), [-127, 127], "symmetric of ±3e38: expected [-127, 127], found {:?}", q.values());
}
