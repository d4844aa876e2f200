//! The semantic-search page's wasm module (`examples/web/`): the int8 MiniLM checkpoint that
//! `int8-wgpu quantize` wrote, fetched over HTTP by the page and read with
//! `Checkpoint::from_bytes`, embeds a corpus and ranks it for a query on WebGPU. The model is the
//! MiniLM example's own code (`examples/embed/`), whose async core the page awaits.
//!
//! Build and serve with `bash scripts/web-page.sh`; off wasm32 this compiles to nothing.
#![cfg(target_arch = "wasm32")]

mod minilm;
mod search;

pub use search::SemanticSearch;
