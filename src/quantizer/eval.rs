//! How far a quantized layer's output is from the float layer's, on reproducible random
//! activations.

use crate::{ActivationQuant, Error, QuantizedTensor, Result, reference};

/// How a layer's output error is measured: on `rows` rows of the activations of `seed`, fed to
/// the layer as float or, with `a8`, quantized to int8 as the method runs them.
#[derive(Clone, Copy, Debug)]
pub(super) struct EvalSpec {
    pub(super) rows: usize,
    pub(super) seed: u64,
    pub(super) a8: Option<ActivationQuant>,
}

/// FNV-1a of the layer name: each layer gets its own reproducible activations.
pub(super) fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The deterministic activations a layer's output error is measured on: `n` values in [-1, 1)
/// from xorshift64 seeded with `seed` (each layer's seed is the FNV-1a hash of its name), so a
/// report can be reproduced. The crate's tests and benches draw their data from it too.
pub fn random_activations(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Relative L2 and max abs error of the quantized layer's output (with float activations, or
/// int8 ones as `spec.a8` says) against the float layer in f64.
pub(super) fn output_error(q: &QuantizedTensor, w: &[f32], spec: EvalSpec) -> Result<(f64, f64)> {
    let EvalSpec { rows, seed, a8 } = spec;
    let [n, k] = [q.shape()[0], q.shape()[1]];
    // Bounded by MAX_EVAL_ROWS in a run, but checked here too: the sizes come from the file.
    let too_large = || Error::TooLarge {
        what: format!("the output-error evaluation ({rows} rows of a [{n}, {k}] layer)"),
        size: (rows as u128 * n.max(k) as u128).try_into().unwrap_or(u64::MAX),
        limit: usize::MAX as u64,
    };
    let len = rows.checked_mul(k).ok_or_else(too_large)?;
    rows.checked_mul(n).ok_or_else(too_large)?;
    let x = random_activations(len, seed);
    let yq = match a8 {
        Some(a) => reference::linear_a8::<f32>(&x, q, None, a)?,
        None => reference::linear::<f32>(&x, q, None)?,
    };
    let (mut num, mut den, mut max) = (0f64, 0f64, 0f64);
    for (m, xrow) in x.chunks_exact(k).enumerate() {
        for j in 0..n {
            let y: f64 = xrow.iter().zip(&w[j * k..(j + 1) * k]).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
            let d = f64::from(yq[m * n + j]) - y;
            num += d * d;
            den += y * y;
            max = max.max(d.abs());
        }
    }
    Ok((relative_error(num, den), max))
}

/// `sqrt(num / den)`, the relative L2 error from the sums of squared errors and outputs: 0 when
/// both are 0, infinite when only the outputs are.
pub(super) fn relative_error(num: f64, den: f64) -> f64 {
    if den > 0.0 {
        (num / den).sqrt()
    } else if num == 0.0 {
        0.0
    } else {
        f64::INFINITY
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QuantScheme;

    #[test]
    fn output_error_is_zero_for_exact_weights() {
        // Weights that quantize exactly (multiples of the scale) give a tiny relative error.
        let q8 = [127.0f32, -5.0, 3.0, 0.0, 64.0, -127.0, 1.0, 2.0];
        let w: Vec<f32> = (0..4 * 8).map(|i| q8[(i + i / 8) % 8] * 0.5).collect();
        let q = reference::quantize(&w, &[4, 8], QuantScheme::default()).unwrap();
        let (rel, _) = output_error(&q, &w, EvalSpec { rows: 3, seed: 7, a8: None }).unwrap();
        assert!(rel < 1e-6, "{rel}");
    }

    #[test]
    fn output_error_checks_rows_times_in_features() {
        let w = [1.0f32; 2 * 8];
        let q = reference::quantize(&w, &[2, 8], QuantScheme::default()).unwrap();
        let rows = usize::MAX / 4;
        let e = output_error(&q, &w, EvalSpec { rows, seed: 7, a8: None }).unwrap_err();
        assert!(matches!(e, Error::TooLarge { size: u64::MAX, limit, .. } if limit == usize::MAX as u64), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!(
                "the output-error evaluation ({rows} rows of a [2, 8] layer) is too large: {} exceeds the limit {}",
                u64::MAX,
                usize::MAX
            )
        );
    }
}
