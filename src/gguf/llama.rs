//! The hyper-parameters of a Llama-architecture model, from a GGUF file's `llama.*` keys.

use super::Gguf;
use crate::{Error, Result};

/// What a Llama decoder needs to know of its shape (llama.cpp's `llama.*` metadata keys).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct LlamaParams {
    /// `llama.block_count`: transformer blocks.
    pub block_count: usize,
    /// `llama.embedding_length`: the hidden size.
    pub embedding_length: usize,
    /// `llama.feed_forward_length`: the SwiGLU's inner size.
    pub feed_forward_length: usize,
    /// `llama.attention.head_count`: query heads.
    pub head_count: usize,
    /// `llama.attention.head_count_kv`: key/value heads (as llama.cpp: `head_count` if absent).
    pub head_count_kv: usize,
    /// `llama.rope.dimension_count`: rotated dimensions per head (as llama.cpp: the head
    /// size if absent).
    pub rope_dimension_count: usize,
    /// `llama.rope.freq_base` (as llama.cpp: 10000 if absent).
    pub rope_freq_base: f32,
    /// `llama.attention.layer_norm_rms_epsilon`: RMSNorm's epsilon.
    pub rms_norm_eps: f32,
    /// `llama.context_length`: the context the model was trained for.
    pub context_length: usize,
    /// `llama.vocab_size`, else the length of `tokenizer.ggml.tokens`.
    pub vocab_size: usize,
}

impl Gguf {
    /// The Llama hyper-parameters of a file whose `general.architecture` is `llama`.
    ///
    /// A missing required key is an [`Error::NotFound`]; values that do not fit together
    /// (heads that do not divide the hidden size or each other, a non-positive epsilon) are
    /// [`Error::Corrupt`]; another architecture is [`Error::Unsupported`].
    pub fn llama_params(&self) -> Result<LlamaParams> {
        let arch = self.string("general.architecture")?;
        if arch != "llama" {
            return Err(Error::Unsupported(format!("GGUF architecture `{arch}` (only `llama` is read)")));
        }
        let count = |key: &str| -> Result<usize> {
            match self.u32(key)? {
                0 => Err(Error::Corrupt(format!("GGUF metadata key `{key}` is 0"))),
                n => Ok(n as usize),
            }
        };
        let optional = |key: &str| self.value(key).is_some().then(|| count(key)).transpose();
        let embedding_length = count("llama.embedding_length")?;
        let head_count = count("llama.attention.head_count")?;
        let head_count_kv = optional("llama.attention.head_count_kv")?.unwrap_or(head_count);
        if embedding_length % head_count != 0 || head_count % head_count_kv != 0 {
            return Err(Error::Corrupt(format!(
                "GGUF: {head_count} heads and {head_count_kv} key/value heads do not divide the hidden size {embedding_length} and each other"
            )));
        }
        let rms_norm_eps = self.f32("llama.attention.layer_norm_rms_epsilon")?;
        if !(rms_norm_eps > 0.0 && rms_norm_eps.is_finite()) {
            return Err(Error::Corrupt(format!("GGUF: RMSNorm epsilon {rms_norm_eps} is not positive")));
        }
        let rope_freq_base = match self.value("llama.rope.freq_base") {
            None => 10000.0,
            Some(_) => self.f32("llama.rope.freq_base")?,
        };
        let vocab_size = match optional("llama.vocab_size")? {
            Some(n) => n,
            None => self.array("tokenizer.ggml.tokens")?.len(),
        };
        Ok(LlamaParams {
            block_count: count("llama.block_count")?,
            embedding_length,
            feed_forward_length: count("llama.feed_forward_length")?,
            head_count,
            head_count_kv,
            rope_dimension_count: optional("llama.rope.dimension_count")?.unwrap_or(embedding_length / head_count),
            rope_freq_base,
            rms_norm_eps,
            context_length: count("llama.context_length")?,
            vocab_size,
        })
    }
}
