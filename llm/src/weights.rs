//! Loading a Llama GGUF's weights onto the GPU: the embedding table, RMSNorm weights, the RoPE
//! table, and the linear layers as [`WeightMode`] says.

use std::sync::Arc;

use int8_wgpu::gguf::{GgmlType, Gguf, LlamaParams};
use int8_wgpu::{DType, Gpu, QuantizedLinear};

use crate::Result;
use crate::embedding::{self, Embedding};
use crate::mode::WeightMode;
use crate::ops;

/// The shape of the model, from the GGUF's `llama.*` metadata, checked against what the
/// kernels need.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    /// The GGUF's hyper-parameters.
    pub params: LlamaParams,
    /// Columns per attention head.
    pub head_dim: usize,
}

impl Config {
    /// Checks `params` against the kernels' layout rules.
    pub fn new(params: LlamaParams) -> Result<Self> {
        let p = &params;
        let head_dim = p.embedding_length / p.head_count;
        if p.rope_dimension_count != head_dim {
            return Err(format!(
                "RoPE over {} of {head_dim} head dimensions (partial rotation) is not implemented",
                p.rope_dimension_count
            )
            .into());
        }
        // 16-bit tensors are written a word (two elements) per thread; the dense kernel reads
        // vec4s along the input.
        if !head_dim.is_multiple_of(2)
            || !p.embedding_length.is_multiple_of(4)
            || !p.feed_forward_length.is_multiple_of(4)
        {
            return Err(format!(
                "unsupported shape: head size {head_dim}, hidden {}, FFN {}",
                p.embedding_length, p.feed_forward_length
            )
            .into());
        }
        // The RoPE table holds every position the model has (8192 x 64 values for SmolLM2).
        if p.context_length.checked_mul(head_dim).is_none_or(|x| x > 1 << 26) {
            return Err(format!("a context of {} positions is more than this decoder tables", p.context_length).into());
        }
        Ok(Config { params, head_dim })
    }

    /// Columns of the key and value projections.
    pub fn kv_dim(&self) -> usize {
        self.params.head_count_kv * self.head_dim
    }
}

/// One linear layer.
pub enum Linear {
    /// An int8-wgpu layer.
    Int8(Arc<QuantizedLinear>),
    /// The baseline: an `[out, in]` f32 weight for the app's `dense` kernel.
    Dense { weight: wgpu::Buffer, out: usize, inp: usize },
}

/// One transformer block's weights (GGUF `blk.N.*`): RMSNorm weights `[hidden]` f32, the
/// attention projections, the SwiGLU's gate, up and down projections.
pub struct Block {
    pub attn_norm: wgpu::Buffer,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub ffn_norm: wgpu::Buffer,
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

/// Every weight of the model on the GPU.
pub struct Weights {
    /// Token embedding table.
    pub embed: Embedding,
    /// The transformer blocks, in order.
    pub blocks: Vec<Block>,
    /// The final RMSNorm's weight `[hidden]` f32.
    pub output_norm: wgpu::Buffer,
    /// The output projection (tied to the embedding unless the file has `output.weight`);
    /// its activations are f32 in every mode, so logits are f32.
    pub output: Linear,
    /// RoPE `(cos, sin)` for every position and pair, `[context, head_dim / 2, 2]` f32.
    pub rope: wgpu::Buffer,
    /// Bytes of weights placed on the GPU.
    pub bytes: u64,
}

struct Loader<'a> {
    gpu: &'a Gpu,
    gguf: &'a Gguf,
    mode: WeightMode,
    bytes: u64,
}

impl Loader<'_> {
    fn floats(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let info = self.gguf.tensor(name)?;
        if info.shape() != shape {
            return Err(format!("GGUF tensor `{name}` has shape {:?}; the model needs {shape:?}", info.shape()).into());
        }
        let v = self.gguf.tensor_f32(name)?;
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(format!("GGUF tensor `{name}` holds a non-finite value at flat index {i}").into());
        }
        Ok(v)
    }

    fn upload(&mut self, label: &str, v: &[f32]) -> Result<wgpu::Buffer> {
        self.bytes += 4 * v.len() as u64;
        ops::storage(self.gpu, label, 4 * v.len() as u64, Some(bytemuck::cast_slice(v)))
    }

    fn float(&mut self, name: &str, shape: &[usize]) -> Result<wgpu::Buffer> {
        let v = self.floats(name, shape)?;
        self.upload(name, &v)
    }

    /// The int8 layer of a Q8_0 tensor as stored.
    fn q8_0(&self, name: &str, activation: DType) -> Result<QuantizedLinear> {
        let w = self.gguf.tensor_q8_0(name)?;
        Ok(QuantizedLinear::from_quantized(self.gpu, &w, None::<&[f32]>, activation)?)
    }

    fn linear(&mut self, name: &str, out: usize, inp: usize) -> Result<Linear> {
        let layer = match self.mode {
            WeightMode::F32 => {
                let weight = self.float(name, &[out, inp])?;
                return Ok(Linear::Dense { weight, out, inp });
            }
            WeightMode::Q8_0 { activation } => {
                let t = self.gguf.tensor(name)?.ggml_type();
                if t != GgmlType::Q8_0 {
                    return Err(format!(
                        "weights q8_0 take the GGUF's Q8_0 linear tensors as stored, but `{name}` is {t}: \
                         use a llama.cpp Q8_0 file, or an int8 mode that quantizes (w8a16, ...)"
                    )
                    .into());
                }
                self.q8_0(name, activation)?
            }
            WeightMode::Int8 { scheme, activation, quant } => {
                let w = self.floats(name, &[out, inp])?;
                let layer = QuantizedLinear::from_float(self.gpu, &w, [out, inp], None::<&[f32]>, scheme, activation)?;
                match quant {
                    Some(q) => layer.with_activation_quant(q).map_err(|e| format!("`{name}`: {e}"))?,
                    None => layer,
                }
            }
        };
        if (layer.out_features(), layer.in_features()) != (out, inp) {
            return Err(format!(
                "GGUF tensor `{name}` is [{}, {}]; the model needs [{out}, {inp}]",
                layer.out_features(),
                layer.in_features()
            )
            .into());
        }
        self.bytes += layer.weight().nbytes();
        Ok(Linear::Int8(Arc::new(layer)))
    }

    fn block(&mut self, n: usize, c: &Config) -> Result<Block> {
        let (h, kv, ffn) = (c.params.embedding_length, c.kv_dim(), c.params.feed_forward_length);
        let t = |s: &str| format!("blk.{n}.{s}.weight");
        Ok(Block {
            attn_norm: self.float(&t("attn_norm"), &[h])?,
            q: self.linear(&t("attn_q"), h, h)?,
            k: self.linear(&t("attn_k"), kv, h)?,
            v: self.linear(&t("attn_v"), kv, h)?,
            o: self.linear(&t("attn_output"), h, h)?,
            ffn_norm: self.float(&t("ffn_norm"), &[h])?,
            gate: self.linear(&t("ffn_gate"), ffn, h)?,
            up: self.linear(&t("ffn_up"), ffn, h)?,
            down: self.linear(&t("ffn_down"), h, ffn)?,
        })
    }
}

/// RoPE's `(cos, sin)` table, computed as candle's `precomput_freqs_cis`: in f32,
/// `θ_i = 1 / base^(2i/d)`, angle `pos · θ_i`.
fn rope_table(c: &Config) -> Vec<f32> {
    let d = c.head_dim;
    let base = c.params.rope_freq_base;
    let theta: Vec<f32> = (0..d).step_by(2).map(|i| 1.0 / base.powf(i as f32 / d as f32)).collect();
    let mut table = Vec::with_capacity(c.params.context_length * d);
    for pos in 0..c.params.context_length {
        for &t in &theta {
            let a = pos as f32 * t;
            table.extend([a.cos(), a.sin()]);
        }
    }
    table
}

/// Loads every weight of `gguf` for `config` as `mode` says.
pub fn load(gpu: &Gpu, gguf: &Gguf, config: &Config, mode: WeightMode) -> Result<Weights> {
    let p = &config.params;
    let (h, vocab) = (p.embedding_length, p.vocab_size);
    let mut l = Loader { gpu, gguf, mode, bytes: 0 };
    let tied = gguf.tensor("output.weight").is_err();
    // The dense f32 mode's tied output projection reads the f32 table: an int8 one beside it
    // would be a second copy, so that mode keeps the f32 table alone.
    let f32_head = tied && mode == WeightMode::F32;
    let embed = if !f32_head && gguf.tensor("token_embd.weight")?.ggml_type() == GgmlType::Q8_0 {
        let table = embedding::q8_0(gpu, gguf, "token_embd.weight", [vocab, h])?;
        l.bytes += table.nbytes();
        table
    } else {
        let table = l.floats("token_embd.weight", &[vocab, h])?;
        Embedding::F32(l.upload("token_embd.weight", &table)?)
    };
    let blocks = (0..p.block_count).map(|n| l.block(n, config)).collect::<Result<Vec<_>>>()?;
    let output_norm = l.float("output_norm.weight", &[h])?;
    let name = if tied { "token_embd.weight" } else { "output.weight" };
    let output = match (mode, &embed) {
        (WeightMode::F32, Embedding::F32(table)) if tied => Linear::Dense { weight: table.clone(), out: vocab, inp: h },
        (WeightMode::F32, _) => l.linear(name, vocab, h)?,
        _ if gguf.tensor(name)?.ggml_type() == GgmlType::Q8_0 => {
            let layer = l.q8_0(name, DType::F32)?;
            l.bytes += layer.weight().nbytes();
            Linear::Int8(Arc::new(layer))
        }
        _ => {
            // Not Q8_0 in the file: quantized as the blocks are, with f32 activations.
            let mut float_act = l.mode;
            if let WeightMode::Int8 { activation, quant, .. } = &mut float_act {
                (*activation, *quant) = (DType::F32, None);
            }
            l.mode = float_act;
            l.linear(name, vocab, h)?
        }
    };
    let rope = rope_table(config);
    let rope = l.upload("rope table", &rope)?;
    Ok(Weights { embed, blocks, output_norm, output, rope, bytes: l.bytes })
}
