//! The model's shape (`config.json`) and how its linear layers run ([`Precision`]).

use int8_wgpu::{ActivationQuant, DType};
use serde_json::Value;

use super::ops::Result;

/// The model's shape, from the checkpoint's `config.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Word-piece vocabulary size.
    pub vocab: usize,
    /// Hidden size (384 for MiniLM).
    pub hidden: usize,
    /// Encoder layers (6).
    pub layers: usize,
    /// Attention heads (12, of 32 columns each).
    pub heads: usize,
    /// MLP width (1536).
    pub intermediate: usize,
    /// Rows of the position table: the longest sequence (512).
    pub max_positions: usize,
    /// Token types (2).
    pub type_vocab: usize,
    /// LayerNorm epsilon (`layer_norm_eps`).
    pub eps: f32,
}

impl Config {
    /// Reads and checks a BERT `config.json`.
    pub fn from_json(v: &Value) -> Result<Self> {
        let get = |k: &str| -> Result<usize> {
            v.get(k)
                .and_then(Value::as_u64)
                .and_then(|x| usize::try_from(x).ok())
                .ok_or_else(|| format!("config.json has no integer `{k}`").into())
        };
        let act = v.get("hidden_act").and_then(Value::as_str).unwrap_or("gelu");
        if act != "gelu" {
            return Err(
                format!("config.json: hidden_act `{act}`; this model implements BERT's erf GELU (`gelu`)").into()
            );
        }
        if let Some(p) = v.get("position_embedding_type").and_then(Value::as_str)
            && p != "absolute"
        {
            return Err(format!("config.json: position_embedding_type `{p}`; only `absolute` is implemented").into());
        }
        let config = Config {
            vocab: get("vocab_size")?,
            hidden: get("hidden_size")?,
            layers: get("num_hidden_layers")?,
            heads: get("num_attention_heads")?,
            intermediate: get("intermediate_size")?,
            max_positions: get("max_position_embeddings")?,
            type_vocab: get("type_vocab_size")?,
            eps: v.get("layer_norm_eps").and_then(Value::as_f64).unwrap_or(1e-12) as f32,
        };
        config.check()?;
        Ok(config)
    }

    /// The shape rules the kernels rely on.
    pub fn check(&self) -> Result<()> {
        let sizes = [self.vocab, self.hidden, self.layers, self.heads, self.intermediate, self.max_positions];
        if sizes.contains(&0) || self.type_vocab == 0 {
            return Err(format!("config has a zero size: {self:?}").into());
        }
        // 16-bit tensors are written a word (two elements) per thread, and each head's columns
        // must start on a word; the dense kernel reads vec4s along `in`.
        if !self.hidden.is_multiple_of(self.heads) || !self.head_dim().is_multiple_of(2) {
            return Err(format!("hidden {} must split into {} heads of an even size", self.hidden, self.heads).into());
        }
        if !self.hidden.is_multiple_of(4) || !self.intermediate.is_multiple_of(4) {
            return Err("hidden and intermediate sizes must be multiples of 4".into());
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(format!("layer_norm_eps {} is not a positive number", self.eps).into());
        }
        Ok(())
    }

    /// Columns per attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
}

/// How the linear layers run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Precision {
    /// Dense f32 weights and activations: the example's own matmul kernel (the baseline).
    F32,
    /// int8 weights as [`QuantizedLinear`] with this activation dtype: `BF16` and `F16` are
    /// W8A16, `F32` is W8A32; a quantized checkpoint's layers keep the W8A8 or LLM.int8() it
    /// records ([`Precision::describe`] names what runs).
    Int8(DType),
    /// int8 weights and activations quantized to int8 per token inside each linear layer
    /// (W8A8); the layers take and give this dtype.
    W8A8(DType),
    /// W8A8 with LLM.int8()'s outlier columns (`|x| >= 6`) in floating point.
    LlmInt8(DType),
}

impl Precision {
    /// The dtype of the linear layers' activations.
    pub fn activation(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Int8(d) | Precision::W8A8(d) | Precision::LlmInt8(d) => d,
        }
    }

    /// How the layers quantize their activations (`None`: float activations).
    pub fn activation_quant(self) -> Option<ActivationQuant> {
        match self {
            Precision::F32 | Precision::Int8(_) => None,
            Precision::W8A8(_) => Some(ActivationQuant::per_token()),
            Precision::LlmInt8(_) => ActivationQuant::llm_int8(ActivationQuant::DEFAULT_THRESHOLD).ok(),
        }
    }

    /// What linear layers of this activation dtype run when they quantize their activations as
    /// `quant` says: `Int8` (as a checkpoint says) names a checkpoint's own W8A8 or LLM.int8().
    pub fn describe(self, quant: Option<ActivationQuant>) -> String {
        let d = self.activation();
        match (self, quant.map(|a| a.outlier_threshold())) {
            (Precision::F32, _) => "f32 dense".into(),
            (_, None) if d == DType::F32 => "int8 w8a32".into(),
            (_, None) => format!("int8 w8a16 {d}"),
            (_, Some(None)) => format!("int8 w8a8 ({d} in and out)"),
            (_, Some(Some(t))) => format!("int8 llm.int8(), outliers |x| >= {t} ({d} in and out)"),
        }
    }

    /// `f32`, `bf16` (or `w8a16`), `f16`, `w8a32`, `w8a8` (bf16 in and out), `llm-int8` (bf16).
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "f32" => Precision::F32,
            "bf16" | "w8a16" | "w8a16-bf16" => Precision::Int8(DType::BF16),
            "f16" | "w8a16-f16" => Precision::Int8(DType::F16),
            "w8a32" => Precision::Int8(DType::F32),
            "w8a8" => Precision::W8A8(DType::BF16),
            "llm-int8" => Precision::LlmInt8(DType::BF16),
            _ => return Err(format!("precision `{s}`: use f32, bf16, f16, w8a32, w8a8 or llm-int8").into()),
        })
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe(self.activation_quant()))
    }
}
