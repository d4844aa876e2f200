//! The library in a browser: WebGPU in headless Chromium (Dawn, Tint, SwiftShader), against the
//! CPU reference computed in the same wasm module. Off wasm32 this compiles to nothing.
#![cfg(target_arch = "wasm32")]

mod bench;
mod common;
mod errors;
mod int8_activations;
mod linear;
mod quantize;
mod recording;
mod tuning;

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);
