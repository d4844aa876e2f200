//! What the MiniLM example's tests share beyond tests/common: comparing GPU values with an f64
//! CPU reference.

/// `v` widened to f64.
pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// Asserts every `got[i]` is within `tol(i, want[i])` of `want[i]`, and prints the largest difference.
pub fn assert_close(ctx: &str, got: &[f32], want: &[f64], tol: impl Fn(usize, f64) -> f64) {
    assert_eq!(got.len(), want.len(), "{ctx}: length");
    let mut worst = 0.0f64;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (f64::from(g) - w).abs();
        let t = tol(i, w);
        assert!(d <= t, "{ctx}: [{i}] gpu {g:e}, cpu {w:e}, |diff| {d:e} > tolerance {t:e}");
        worst = worst.max(d);
    }
    eprintln!("{ctx}: max |gpu - cpu| {worst:.2e}");
}
