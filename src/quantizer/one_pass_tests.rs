//! Unit tests of the one-pass layer quantizer (`one_pass.rs`): bit-identical to the reference.

use super::*;
use crate::ActivationQuant;
use crate::quantizer::one_pass_eval::MAX_ONE_PASS_EVAL_ROWS;
use crate::quantizer::random_activations;

/// Float evaluation activations.
fn ev(rows: usize, seed: u64) -> EvalSpec {
    EvalSpec { rows, seed, a8: None }
}

/// A weight with rows of different magnitudes, and where `special` asks, the values that
/// test the edges: zero rows, signed zeros, subnormals, exact halves of a step, one large row.
fn weight<T: Element>(shape: [usize; 2], seed: u64, special: bool) -> Vec<T> {
    let [n, k] = shape;
    let mut v: Vec<f32> =
        random_activations(n * k, seed).iter().enumerate().map(|(i, x)| x * (0.01 + (i / k) as f32 * 0.37)).collect();
    if special {
        for (i, x) in v.iter_mut().enumerate() {
            let (row, col) = (i / k, i % k);
            match (row % 5, col % 7) {
                (0, _) => *x = 0.0,
                (1, 0) => *x = -0.0,
                (1, 1) => *x = 1e-39,
                (1, 2) => *x = -3e-40,
                (2, c) => *x = (c as f32 + 0.5) * 127.0 / (k as f32 + 0.5),
                (3, _) => *x = *x * 1e30 + 2e30,
                _ => {}
            }
        }
    }
    v.into_iter().map(T::from_f32).collect()
}

fn schemes(k: usize) -> Vec<QuantScheme> {
    let mut s = vec![QuantScheme::default(), QuantScheme::asymmetric(Granularity::PerChannel { axis: 0 })];
    for mode in [Mode::Symmetric, Mode::Asymmetric] {
        s.push(QuantScheme { mode, granularity: Granularity::PerTensor });
        for g in [1, 2, 3, 4, 5, 8, 16] {
            if k.is_multiple_of(g) {
                s.push(QuantScheme { mode, granularity: Granularity::PerGroup { size: g } });
            }
        }
    }
    s
}

/// Every field bit for bit (`==` on f64 would take -0.0 for 0.0).
fn same(a: &OnePass, b: &OnePass) -> bool {
    let bits = |f: &OnePass| {
        (
            f.scales.iter().map(|s| s.to_bits()).collect::<Vec<_>>(),
            [f.mse.to_bits(), f.max_abs.to_bits()],
            f.output.map(|(r, m)| [r.to_bits(), m.to_bits()]),
        )
    };
    a.packed == b.packed && a.zero_points == b.zero_points && bits(a) == bits(b)
}

fn check<T: Element>(shape: [usize; 2], scheme: QuantScheme, rows: usize, seed: u64, special: bool) {
    check_eval::<T>(shape, scheme, ev(rows, seed), special);
}

fn check_eval<T: Element>(shape: [usize; 2], scheme: QuantScheme, eval: EvalSpec, special: bool) {
    let EvalSpec { rows, seed, a8 } = eval;
    let x = weight::<T>(shape, seed, special);
    for dtype in [T::DTYPE, DType::F16, DType::BF16, DType::F32] {
        let ctx =
            format!("{} {shape:?} {scheme:?} rows {rows} seed {seed} {a8:?} special {special} -> {dtype}", T::DTYPE);
        let one_pass = quantize_layer(&x, shape, scheme, dtype, Ints::Compute, eval);
        let want = reference_layer(&x, shape, scheme, dtype, None, eval);
        match (&one_pass, &want) {
            (Some(f), Ok(w)) => assert!(same(f, w), "{ctx}\none-pass {f:?}\nreference {w:?}"),
            (None, Err(_)) => {}
            (None, Ok(_)) => assert!(rows > MAX_ONE_PASS_EVAL_ROWS, "{ctx}: gave up where the reference does not"),
            (Some(_), Err(e)) => panic!("{ctx}: the reference fails ({e}), the one-pass quantizer does not"),
        }
        // The GPU's ints (the reference's, unexported) give the same.
        if let Ok(q) = reference::quantize(&x, &shape, scheme) {
            let given = quantize_layer(&x, shape, scheme, dtype, Ints::Given(&q), eval);
            assert_eq!(given.is_some(), one_pass.is_some(), "{ctx}");
            if let (Some(g), Some(f)) = (&given, &one_pass) {
                assert!(same(g, f), "{ctx}: given ints");
            }
        }
    }
}

#[test]
fn the_one_pass_is_the_reference_bit_for_bit() {
    for (i, shape) in [[1, 1], [1, 7], [3, 5], [5, 8], [7, 12], [16, 33], [9, 48]].into_iter().enumerate() {
        for scheme in schemes(shape[1]) {
            for rows in [0, 1, 8, 9, 17] {
                for special in [false, true] {
                    let seed = 11 * i as u64 + rows as u64;
                    check::<f32>(shape, scheme, rows, seed, special);
                    check::<half::bf16>(shape, scheme, rows, seed, special);
                    check::<half::f16>(shape, scheme, rows, seed, special);
                }
            }
        }
    }
}

/// With int8 activations (W8A8, LLM.int8() at thresholds that find no, some and many outlier
/// columns among activations in [-1, 1)) the output error is the reference's (`linear_a8`) bit
/// for bit; schemes int8 activations cannot take make both paths fail.
#[test]
fn int8_activation_output_errors_are_the_reference_bit_for_bit() {
    let a8s = [
        ActivationQuant::per_token(),
        ActivationQuant::llm_int8(6.0).unwrap(),
        ActivationQuant::llm_int8(0.95).unwrap(),
        ActivationQuant::llm_int8(0.2).unwrap(),
    ];
    for (i, shape) in [[1, 1], [3, 5], [7, 12], [16, 33], [9, 48]].into_iter().enumerate() {
        let mut schemes = vec![QuantScheme::default(), QuantScheme::symmetric(Granularity::PerTensor)];
        schemes.push(QuantScheme::asymmetric(Granularity::PerChannel { axis: 0 }));
        for scheme in schemes {
            for rows in [1, 8, 9, 17] {
                for (a, &a8) in a8s.iter().enumerate() {
                    let eval = EvalSpec { rows, seed: 13 * i as u64 + rows as u64 + a as u64, a8: Some(a8) };
                    check_eval::<f32>(shape, scheme, eval, false);
                    check_eval::<half::bf16>(shape, scheme, eval, true);
                }
            }
        }
    }
    // The int8 activations change the error: W8A8's is not the float activations'.
    let x = weight::<f32>([16, 33], 5, false);
    let float = quantize_layer(&x, [16, 33], QuantScheme::default(), DType::F32, Ints::Compute, ev(8, 5)).unwrap();
    let a8_eval = EvalSpec { rows: 8, seed: 5, a8: Some(ActivationQuant::per_token()) };
    let with_a8 = quantize_layer(&x, [16, 33], QuantScheme::default(), DType::F32, Ints::Compute, a8_eval).unwrap();
    assert!(with_a8.output.unwrap().0 > float.output.unwrap().0, "{:?} vs {:?}", with_a8.output, float.output);
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 1_000, ..Default::default() })]

    /// Any finite or infinite values, any shape, scheme, evaluation rows and dtypes.
    #[test]
    fn any_weights_give_the_reference_bits(
        n in 1..6usize,
        k in 1..40usize,
        bits in proptest::collection::vec(proptest::num::u32::ANY, 240),
        scale in -40..40i32,
        scheme in 0..16usize,
        rows in 0..20usize,
        seed in 0..1000u64,
    ) {
        use proptest::prop_assert;
        let m = 2f32.powi(scale);
        // Mostly ordinary values of magnitude 2^scale, some arbitrary bit patterns.
        let x: Vec<f32> = bits[..n * k]
            .iter()
            .map(|&b| if b % 16 == 0 { f32::from_bits(b) } else { (b as f32 / u32::MAX as f32 - 0.5) * m })
            .collect();
        let schemes = schemes(k);
        let scheme = schemes[scheme % schemes.len()];
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let one_pass = quantize_layer(&x, [n, k], scheme, dtype, Ints::Compute, ev(rows, seed));
            let want = reference_layer(&x, [n, k], scheme, dtype, None, ev(rows, seed));
            match (&one_pass, &want) {
                (Some(f), Ok(w)) => prop_assert!(same(f, w), "{scheme:?} {dtype}\n{f:?}\n{w:?}"),
                (None, Err(_)) => {}
                _ => prop_assert!(false, "{scheme:?} {dtype}: one-pass {:?}, reference {:?}", one_pass.is_some(), want.is_ok()),
            }
        }
    }
}

#[test]
fn where_the_reference_fails_or_the_pass_cannot_follow_it_gives_up() {
    let shape = [4, 8];
    let mut x = weight::<f32>(shape, 3, false);
    let s = QuantScheme::default();
    assert!(quantize_layer(&x, shape, s, DType::F32, Ints::Compute, ev(8, 1)).is_some());
    assert!(quantize_layer(&x, shape, s, DType::F32, Ints::Compute, ev(MAX_ONE_PASS_EVAL_ROWS, 1)).is_some());
    assert!(quantize_layer(&x, shape, s, DType::F32, Ints::Compute, ev(MAX_ONE_PASS_EVAL_ROWS + 1, 1)).is_none());
    let axis1 = QuantScheme::symmetric(Granularity::PerChannel { axis: 1 });
    assert!(quantize_layer(&x, shape, axis1, DType::F32, Ints::Compute, ev(0, 1)).is_none());
    assert!(quantize_layer(&x[1..], shape, s, DType::F32, Ints::Compute, ev(0, 1)).is_none());
    for bad in [f32::NAN, f32::INFINITY, f32::MAX] {
        x[13] = bad;
        for mode in [Mode::Symmetric, Mode::Asymmetric] {
            for granularity in [Granularity::PerTensor, Granularity::PerChannel { axis: 0 }] {
                let s = QuantScheme { mode, granularity };
                assert!(quantize_layer(&x, shape, s, DType::F32, Ints::Compute, ev(0, 1)).is_none(), "{bad} {s:?}");
                assert!(reference_layer(&x, shape, s, DType::F32, None, ev(0, 1)).is_err(), "{bad} {s:?}");
            }
        }
    }
    // Weights whose outputs overflow f32: the reference's error.
    let (big, wide) = (vec![3e38f32; 2 * 256], [2, 256]);
    let s = QuantScheme::default();
    assert!(quantize_layer(&big, wide, s, DType::F32, Ints::Compute, ev(0, 1)).is_some());
    assert!(quantize_layer(&big, wide, s, DType::F32, Ints::Compute, ev(2, 1)).is_none());
    let e = reference_layer(&big, wide, s, DType::F32, None, ev(2, 1)).unwrap_err();
    assert!(matches!(e, crate::Error::Overflow { .. }), "{e:?}");
}

#[test]
fn the_rounding_trick_is_round_half_even() {
    let mut values: Vec<f32> = (-600..=600)
        .flat_map(|i| {
            let h = i as f32 * 0.5;
            [h, h.next_down(), h.next_up()]
        })
        .collect();
    values.extend((0..=u16::MAX).map(|b| half::bf16::from_bits(b).to_f32()));
    values.extend([
        4194304.5,
        4194303.5,
        8388607.5,
        8388608.0,
        1e9,
        -1e9,
        3e38,
        -3e38,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ]);
    values.extend(random_activations(100_000, 9).iter().map(|v| v * 300.0));
    // NaN cannot reach it (finite weights and normal scales): not part of the contract.
    for &v in values.iter().filter(|v| !v.is_nan()) {
        for (scale, zp) in [(1.0f32, 0i8), (0.5, -3), (3.0, 127), (1e-30, 0), (0.0078125, -128), (7e-3, 5)] {
            assert_eq!(
                quantize_value(v, scale, f32::from(zp)),
                reference::quantize_value(v, scale, zp),
                "{v:e} / {scale:e} + {zp}"
            );
        }
    }
}
