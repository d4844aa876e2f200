//! SmolLM2-135M (a Llama decoder) from its GGUF file on the GPU: the app's own WGSL kernels
//! (RMSNorm, RoPE, attention over a KV cache, SwiGLU) around int8-wgpu's int8 linear layers.

/// The crate's result: its errors are messages for the person running the example.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

// Text and token ids: the GGUF's byte-level BPE, the chat template, streaming decode.
pub mod chat;
mod special;
mod stream;
mod tokenizer;

pub use stream::StreamDecoder;
pub use tokenizer::Tokenizer;

// ---------------------------------------------------------------------------------------------

// The model: weights, kernels, forward, sampling.
mod embedding;
mod forward;
pub mod mode;
pub mod model;
mod ops;
pub mod profile;
pub mod sampling;
mod weights;

pub use mode::WeightMode;
pub use model::{Model, Session};
pub use sampling::Sampler;
pub use weights::Config;
