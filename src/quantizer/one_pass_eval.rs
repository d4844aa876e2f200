//! The one-pass quantizer's output error: `eval::output_error`'s arithmetic, accumulated row by
//! row of the weight while the row is in cache, on activation rows taken [`LANES`] at a time, with
//! float activations or with the int8 activations of W8A8 / LLM.int8() (`reference::linear_a8`'s
//! arithmetic).

use super::eval::{EvalSpec, random_activations, relative_error};
use crate::activation::MAX_INT8_DOT_LEN;
use crate::{ActivationQuant, QuantScheme, reference};

/// The most evaluation rows the one-pass quantizer takes; it keeps `rows × out` outputs of each
/// layer (the reference's order of summing them is row by row of activations, not of weights).
pub(super) const MAX_ONE_PASS_EVAL_ROWS: usize = 64;

/// Lanes of the one-pass quantizer's vectorised loops (weight values, and activation rows in the
/// evaluation).
pub(super) const LANES: usize = 8;

/// The evaluation activations quantized to int8 per row, lane-major per chunk of rows.
struct A8Rows {
    /// `xq[c·in + e][m]` = `q_x[8c + m][e]`.
    xq: Vec<[i32; LANES]>,
    /// Per chunk, the rows' scales (1 in lanes past the last row).
    sx: Vec<[f32; LANES]>,
    /// The outlier columns (LLM.int8()), ascending.
    outliers: Vec<usize>,
}

/// The output error of a layer, accumulated row by row of the weight.
pub(super) struct Eval {
    rows: usize,
    shape: [usize; 2],
    group: usize,
    per_row: usize,
    /// Activations in f32, lane-major per chunk of rows: `xt[c·in + e][m]` = `x[8c + m][e]`.
    xt: Vec<[f32; LANES]>,
    /// The same in f64.
    xd: Vec<[f64; LANES]>,
    /// Per chunk and segment, the f32 sum of the activations over the segment, in order.
    xs: Vec<[f32; LANES]>,
    /// With int8 activations: the quantized activations.
    a8_rows: Option<A8Rows>,
    /// `y_q − y` and `y`, `[rows, out]` row-major.
    diff: Vec<f64>,
    y: Vec<f64>,
}

impl Eval {
    /// `None`: more rows than the one-pass quantizer takes, sizes that overflow, or int8 activations
    /// the reference refuses (a weight that is not symmetric with one scale per row or tensor,
    /// rows too long for `i32` sums): the reference path then reports the error.
    pub(super) fn new(
        spec: EvalSpec,
        shape: [usize; 2],
        group: usize,
        per_row: usize,
        scheme: QuantScheme,
    ) -> Option<Self> {
        let [n, k] = shape;
        let EvalSpec { rows, seed, a8 } = spec;
        if rows > MAX_ONE_PASS_EVAL_ROWS {
            return None;
        }
        if a8.is_some() && (!scheme.takes_a8() || k > MAX_INT8_DOT_LEN) {
            return None;
        }
        let x = random_activations(rows.checked_mul(k)?, seed);
        let outputs = rows.checked_mul(n)?;
        let chunks = rows.div_ceil(LANES);
        let mut xt = vec![[0f32; LANES]; chunks * k];
        let mut xs = vec![[0f32; LANES]; chunks * per_row];
        for (m, xrow) in x.chunks_exact(k).enumerate() {
            let (c, lane) = (m / LANES, m % LANES);
            for (e, &v) in xrow.iter().enumerate() {
                xt[c * k + e][lane] = v;
            }
            for g in 0..per_row {
                let mut s = 0f32;
                for &v in &xrow[g * group..(g + 1) * group] {
                    s += v;
                }
                xs[c * per_row + g][lane] = s;
            }
        }
        let xd = xt.iter().map(|l| l.map(f64::from)).collect();
        let a8_rows = match a8 {
            Some(a) => Some(A8Rows::new(&x, rows, k, a)?),
            None => None,
        };
        Some(Eval { rows, shape, group, per_row, xt, xd, xs, a8_rows, diff: vec![0.0; outputs], y: vec![0.0; outputs] })
    }

    /// The quantized layer's outputs of chunk `c` for weight row `q` with float activations:
    /// per segment `s · (Σ x·q − z · Σ x)`, summed over segments, plus the zero bias, as
    /// `reference::linear` computes them.
    fn float_chunk(&self, c: usize, q: &[i8], scales: &[f32], zps: &[i8]) -> [f32; LANES] {
        let k = self.shape[1];
        let xt = &self.xt[c * k..(c + 1) * k];
        let mut acc = [0f32; LANES];
        for g in 0..self.per_row {
            let seg = g * self.group..(g + 1) * self.group;
            let mut dot = [0f32; LANES];
            for (xv, &qv) in xt[seg.clone()].iter().zip(&q[seg]) {
                let qf = f32::from(qv);
                for (d, &xv) in dot.iter_mut().zip(xv) {
                    *d += xv * qf;
                }
            }
            let (s, z, xs) = (scales[g], f32::from(zps[g]), &self.xs[c * self.per_row + g]);
            for ((a, &d), &xs) in acc.iter_mut().zip(&dot).zip(xs) {
                *a += s * (d - z * xs);
            }
        }
        acc.map(|a| a + 0.0)
    }

    /// The same with int8 activations, as `reference::linear_a8` computes them (no bias):
    /// `(s_x · f32(Σ q_x q)) · s_w`, plus the outlier columns in f32 in ascending order.
    fn a8_chunk(&self, qa: &A8Rows, c: usize, q: &[i8], sw: f32) -> [f32; LANES] {
        let k = self.shape[1];
        let mut acc = [0i32; LANES];
        for (xq, &qv) in qa.xq[c * k..(c + 1) * k].iter().zip(q) {
            let qi = i32::from(qv);
            for (a, &x) in acc.iter_mut().zip(xq) {
                *a += x * qi;
            }
        }
        let mut fp = [0f32; LANES];
        for &col in &qa.outliers {
            let wq = sw * f32::from(q[col]);
            for (f, &x) in fp.iter_mut().zip(&self.xt[c * k + col]) {
                *f += x * wq;
            }
        }
        std::array::from_fn(|lane| (qa.sx[c][lane] * acc[lane] as f32) * sw + fp[lane])
    }

    /// Output `j` for every activation row: the quantized layer's in f32 (see [`Self::float_chunk`]
    /// and [`Self::a8_chunk`]) and the float layer's in f64. `None` when an output overflows
    /// f32 (the reference's error).
    pub(super) fn row(&mut self, j: usize, w: &[f32], q: &[i8], scales: &[f32], zps: &[i8]) -> Option<()> {
        let [n, k] = self.shape;
        for c in 0..self.rows.div_ceil(LANES) {
            let yq = match &self.a8_rows {
                Some(qa) => self.a8_chunk(qa, c, q, scales[0]),
                None => self.float_chunk(c, q, scales, zps),
            };
            // `Iterator::sum` of f64 starts from -0.0.
            let mut y = [-0.0f64; LANES];
            for (xv, &wv) in self.xd[c * k..(c + 1) * k].iter().zip(w) {
                let wv = f64::from(wv);
                for (y, &xv) in y.iter_mut().zip(xv) {
                    *y += xv * wv;
                }
            }
            for lane in 0..(self.rows - c * LANES).min(LANES) {
                if !yq[lane].is_finite() {
                    return None;
                }
                let i = (c * LANES + lane) * n + j;
                (self.diff[i], self.y[i]) = (f64::from(yq[lane]) - y[lane], y[lane]);
            }
        }
        Some(())
    }

    /// Relative L2 and max abs error, summed in the reference's order (activation row by row).
    pub(super) fn finish(self) -> (f64, f64) {
        let (mut num, mut den, mut max) = (0f64, 0f64, 0f64);
        for (&d, &y) in self.diff.iter().zip(&self.y) {
            num += d * d;
            den += y * y;
            max = max.max(d.abs());
        }
        (relative_error(num, den), max)
    }
}

impl A8Rows {
    /// Quantizes the `rows × k` activations `x` as `reference::linear_a8` does.
    fn new(x: &[f32], rows: usize, k: usize, a8: ActivationQuant) -> Option<Self> {
        let qa = reference::quantize_activations(x, k, a8).ok()?;
        let chunks = rows.div_ceil(LANES);
        let mut xq = vec![[0i32; LANES]; chunks * k];
        let mut sx = vec![[1f32; LANES]; chunks];
        for (m, row) in qa.values.chunks_exact(k).enumerate() {
            let (c, lane) = (m / LANES, m % LANES);
            for (e, &v) in row.iter().enumerate() {
                xq[c * k + e][lane] = i32::from(v);
            }
            sx[c][lane] = qa.scales[m];
        }
        Some(A8Rows { xq, sx, outliers: qa.outlier_columns })
    }
}
