//! The CPU reference: each of the example's kernels, and the whole forward, in f64 — written
//! for obviousness, not speed (the GPU model and its kernels are tested against it).

use int8_wgpu::checkpoint::Checkpoint;
use int8_wgpu::{QuantScheme, reference};

use super::bert::Config;
use super::ops::Result;
use super::tokens::Batch;

/// Word + token type + position embeddings: `[m, n]` for `m = ids.len()` tokens of sentences
/// of `seq` tokens.
pub fn embed(ids: &[u32], types: &[u32], word: &[f32], pos: &[f32], typ: &[f32], n: usize, seq: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(ids.len() * n);
    for (row, (&id, &ty)) in ids.iter().zip(types).enumerate() {
        let p = row % seq;
        for c in 0..n {
            out.push(
                f64::from(word[id as usize * n + c]) + f64::from(typ[ty as usize * n + c]) + f64::from(pos[p * n + c]),
            );
        }
    }
    out
}

/// LayerNorm of `x (+ residual)` over rows of `n`: `(v - mean) / sqrt(var + eps) * gamma + beta`,
/// with the biased variance (as torch).
pub fn layer_norm(x: &[f64], residual: Option<&[f64]>, gamma: &[f32], beta: &[f32], n: usize, eps: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for (r, row) in x.chunks(n).enumerate() {
        let v: Vec<f64> =
            row.iter().enumerate().map(|(c, &a)| a + residual.map_or(0.0, |res| res[r * n + c])).collect();
        let mean = v.iter().sum::<f64>() / n as f64;
        let var = v.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>() / n as f64;
        let inv = 1.0 / (var + eps).sqrt();
        out.extend(v.iter().enumerate().map(|(c, a)| (a - mean) * inv * f64::from(gamma[c]) + f64::from(beta[c])));
    }
    out
}

/// Attention probabilities `[batch, heads, seq, seq]`: softmax over keys of `q·k / sqrt(d)`,
/// padded keys (mask 0) given probability 0.
pub fn attention_probs(q: &[f64], k: &[f64], mask: &[u32], seq: usize, heads: usize, n: usize) -> Vec<f64> {
    let batch = mask.len() / seq;
    let d = n / heads;
    let scale = 1.0 / (d as f64).sqrt();
    let mut out = vec![0.0; batch * heads * seq * seq];
    for b in 0..batch {
        for h in 0..heads {
            for i in 0..seq {
                let qi = &q[(b * seq + i) * n + h * d..][..d];
                let scores: Vec<Option<f64>> = (0..seq)
                    .map(|j| {
                        (mask[b * seq + j] != 0).then(|| {
                            let kj = &k[(b * seq + j) * n + h * d..][..d];
                            qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>() * scale
                        })
                    })
                    .collect();
                let mx = scores.iter().flatten().cloned().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = scores.iter().flatten().map(|s| (s - mx).exp()).sum();
                for (j, s) in scores.iter().enumerate() {
                    if let Some(s) = s {
                        out[((b * heads + h) * seq + i) * seq + j] = (s - mx).exp() / sum;
                    }
                }
            }
        }
    }
    out
}

/// Attention context `[m, n]`: each head's probabilities times its values.
pub fn attention_context(probs: &[f64], v: &[f64], seq: usize, heads: usize, n: usize) -> Vec<f64> {
    let m = v.len() / n;
    let d = n / heads;
    let mut out = vec![0.0; m * n];
    for row in 0..m {
        let (b, i) = (row / seq, row % seq);
        for c in 0..n {
            let h = c / d;
            let p = &probs[((b * heads + h) * seq + i) * seq..][..seq];
            out[row * n + c] = (0..seq).map(|j| p[j] * v[(b * seq + j) * n + c]).sum();
        }
    }
    out
}

/// BERT's GELU, erf form: `x / 2 · (1 + erf(x / √2))`, computed as `x / 2 · erfc(-x / √2)`:
/// for negative x, `1 + erf` cancels to 0 in f64 below x ≈ -8.3 where erfc keeps the tail.
pub fn gelu(x: f64) -> f64 {
    0.5 * x * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// Mean of each sentence's unmasked rows: `[batch, n]` (sentence-transformers' mean pooling,
/// dividing by at least 1e-9).
pub fn mean_pool(x: &[f64], mask: &[u32], seq: usize, n: usize) -> Vec<f64> {
    let batch = mask.len() / seq;
    let mut out = vec![0.0; batch * n];
    for b in 0..batch {
        let count = mask[b * seq..][..seq].iter().filter(|&&v| v != 0).count() as f64;
        for c in 0..n {
            let s: f64 = (0..seq).filter(|&i| mask[b * seq + i] != 0).map(|i| x[(b * seq + i) * n + c]).sum();
            out[b * n + c] = s / count.max(1e-9);
        }
    }
    out
}

/// Rows divided by their L2 norm, at least 1e-12.
pub fn l2_normalize(x: &[f64], n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(n) {
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
        out.extend(row.iter().map(|v| v / norm));
    }
    out
}

/// `x · wᵀ + b` for `x` `[m, k]`, `w` `[n, k]`.
pub fn dense(x: &[f64], w: &[f32], b: &[f32], n: usize, k: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len() / k * n);
    for row in x.chunks(k) {
        for (j, wr) in w.chunks(k).enumerate().take(n) {
            out.push(row.iter().zip(wr).map(|(a, &b)| a * f64::from(b)).sum::<f64>() + f64::from(b[j]));
        }
    }
    out
}

/// The float checkpoint's weights, for [`CpuBert::forward`].
pub struct CpuBert {
    config: Config,
    ckpt: Checkpoint,
    dequantized: bool,
}

impl CpuBert {
    /// Reads the config; tensors are read from the checkpoint as needed.
    pub fn new(ckpt: Checkpoint) -> Result<Self> {
        let config = Config::from_json(ckpt.config().ok_or("the checkpoint has no config.json")?)?;
        Ok(Self { config, ckpt, dequantized: false })
    }

    /// The same model with each linear weight replaced by its int8 quantization (symmetric,
    /// per output channel, by int8-wgpu's CPU reference) dequantized: the model the int8 GPU
    /// layers compute, so that their own error can be told from the quantization's.
    pub fn dequantized(self) -> Self {
        Self { dequantized: true, ..self }
    }

    fn t(&self, name: &str) -> Result<Vec<f32>> {
        Ok(self.ckpt.tensor_f32(name)?)
    }

    fn linear(&self, x: &[f64], name: &str, n: usize, k: usize) -> Result<Vec<f64>> {
        let mut w = self.t(&format!("{name}.weight"))?;
        if self.dequantized {
            w = reference::quantize(&w, &[n, k], QuantScheme::default())?.dequantize();
        }
        Ok(dense(x, &w, &self.t(&format!("{name}.bias"))?, n, k))
    }

    fn norm(&self, x: &[f64], res: Option<&[f64]>, name: &str) -> Result<Vec<f64>> {
        let c = &self.config;
        let (g, b) = (self.t(&format!("{name}.weight"))?, self.t(&format!("{name}.bias"))?);
        Ok(layer_norm(x, res, &g, &b, c.hidden, f64::from(c.eps)))
    }

    /// The L2-normalised sentence embeddings of a batch, `[batch, hidden]`, in f64.
    pub fn forward(&self, batch: &Batch) -> Result<Vec<f64>> {
        batch.check(&self.config)?;
        let c = &self.config;
        let (h, inner, seq) = (c.hidden, c.intermediate, batch.seq);
        let e = embed(
            &batch.ids,
            &batch.types,
            &self.t("embeddings.word_embeddings.weight")?,
            &self.t("embeddings.position_embeddings.weight")?,
            &self.t("embeddings.token_type_embeddings.weight")?,
            h,
            seq,
        );
        let mut x = self.norm(&e, None, "embeddings.LayerNorm")?;
        for l in 0..c.layers {
            let p = format!("encoder.layer.{l}");
            let q = self.linear(&x, &format!("{p}.attention.self.query"), h, h)?;
            let k = self.linear(&x, &format!("{p}.attention.self.key"), h, h)?;
            let v = self.linear(&x, &format!("{p}.attention.self.value"), h, h)?;
            let probs = attention_probs(&q, &k, &batch.mask, seq, c.heads, h);
            let ctx = attention_context(&probs, &v, seq, c.heads, h);
            let o = self.linear(&ctx, &format!("{p}.attention.output.dense"), h, h)?;
            let x1 = self.norm(&o, Some(&x), &format!("{p}.attention.output.LayerNorm"))?;
            let mut i = self.linear(&x1, &format!("{p}.intermediate.dense"), inner, h)?;
            i.iter_mut().for_each(|v| *v = gelu(*v));
            let f = self.linear(&i, &format!("{p}.output.dense"), h, inner)?;
            x = self.norm(&f, Some(&x1), &format!("{p}.output.LayerNorm"))?;
        }
        Ok(l2_normalize(&mean_pool(&x, &batch.mask, seq, h), h))
    }
}

/// Cosine similarity.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-300)
}
