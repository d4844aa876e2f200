//! # int8-wgpu
//!
//! 8-bit weight quantization and fused int8-dequant linear layers on any GPU `wgpu` reaches
//! (Vulkan, Metal, DX12, GL), with a CPU reference path every kernel is verified against.
//!
//! ## Example
//!
//! ```
//! use int8_wgpu::{reference, DType, Gpu, QuantScheme, QuantizedLinear};
//!
//! # fn main() -> Result<(), int8_wgpu::Error> {
//! # let gpu = match Gpu::new() {
//! #     Ok(g) => g,
//! #     Err(e) if std::env::var("CI").is_err() => { eprintln!("skipped: {e}"); return Ok(()) }
//! #     Err(e) => return Err(e),
//! # };
//! // let gpu = Gpu::new()?;  // headless; honours WGPU_BACKEND and WGPU_ADAPTER_NAME
//! let weight = [-2.0f32, -1.13, 0.42, -1.51, 0.25, 1.62, 0.23, 1.35, 2.15]; // [out=3, in=3]
//! let scheme = QuantScheme::symmetric(int8_wgpu::Granularity::PerTensor);
//!
//! // W8A32: the weight is quantized on the GPU; ints equal the CPU reference bit for bit.
//! let layer = QuantizedLinear::from_float::<f32, f32>(&gpu, &weight, [3, 3], None, scheme, DType::F32)?;
//! let q = layer.weight().to_host()?;
//! assert_eq!(q.values(), [-118, -67, 25, -89, 15, 96, 14, 80, 127]);
//! assert_eq!(q.values(), reference::quantize(&weight, &[3, 3], scheme)?.values());
//!
//! let y = layer.forward_host(&[1.0f32, 2.0, 3.0], &[1, 3])?;
//! assert!((y[0] - -2.9965).abs() < 1e-4 && (y[2] - 9.3957).abs() < 1e-4);
//! # Ok(())
//! # }
//! ```
//!
//! ## Overview
//!
//! - [`QuantScheme`]: symmetric (absmax) or asymmetric (zero point), per tensor, per channel
//!   (any axis) or per group along the last axis.
//! - [`reference`](mod@reference): the CPU oracle — [`reference::quantize`], [`reference::linear`],
//!   [`reference::linear_f64`].
//! - [`Gpu`]: a headless device or an application's own ([`Gpu::from_device_with_options`],
//!   which says what features and limits to request; [`Polling`] lets the application poll);
//!   pipelines are compiled once per variant and cached. [`Gpu::quantize`] quantizes on the GPU.
//! - [`GpuTensor`] and [`GpuQuantizedTensor`]: data that stays on the device; a tensor may be a
//!   range of an application's buffer ([`GpuTensor::from_buffer_range`]) and read back into its
//!   slice ([`GpuTensor::read_into`]); a quantized weight is cheap to clone, so layers share it.
//! - [`QuantizedLinear`]: W8A32 (f32) and W8A16 (f16, bf16) layers computed straight from the
//!   packed int8 weight: GEMV for few rows (in passes of 8 where that is faster), tiled GEMM for
//!   many.
//! - [`ActivationQuant`]: int8 activations inside a [`QuantizedLinear`]
//!   ([`QuantizedLinear::with_activation_quant`]): W8A8 (per-token scales, `i32` dot products
//!   with `dot4I8Packed` or an exact fallback) and LLM.int8() (outlier feature columns in f32),
//!   quantized on the GPU in the layer's pass; [`reference::linear_a8`] is their oracle and
//!   [`Gpu::quantize_activations`] shows the GPU's int8 activations.
//! - [`Gpu::tune`]: picks among those kernel variants per device by timing them on the real
//!   layer (per shape class), instead of by the built-in heuristic; [`Gpu::tuning_json`] and
//!   [`Gpu::load_tuning_json`] keep the choices as JSON text, `Gpu::save_tuning` and
//!   `Gpu::load_tuning` in a file (feature `files`).
//! - `quantizer::Quantizer` (feature `files`): a whole safetensors checkpoint to int8, written in
//!   the compressed-tensors `pack-quantized` layout (`int-quantized` for W8A8) with a per-layer error
//!   report; [`checkpoint::Checkpoint`] reads checkpoints (float, ours, llmcompressor's,
//!   bitsandbytes' 8-bit), from files or from bytes in memory, and loads quantized layers as
//!   [`QuantizedLinear`]s by name, with the int8 activations the file records.
//! - [`gguf::Gguf`]: llama.cpp's GGUF files, from bytes or a file: metadata, the tokenizer,
//!   Llama hyper-parameters; Q8_0 weights as int8 without requantizing, other tensors as f32.
//!
//! ## Paths
//!
//! The types every app names (schemes, dtypes, the error, tensors, the layer, the device) are at
//! the crate root, their modules private; the families [`reference`](mod@reference),
//! [`checkpoint`], [`gguf`], `quantizer` (feature `files`) and [`gpu`] are public modules. No
//! item has a second path.
//!
//! ## Numeric conventions
//!
//! Round half to even everywhere; statistics, scales and accumulation in f32; the same f32
//! operations in the same order on CPU and GPU, so quantized ints and scale bits are equal.
//! Subnormal inputs count as zero; an all-zero block gets scale 1; the asymmetric range is
//! widened to contain 0 so zero points stay in int8. See `ARCHITECTURE.md` and the README.
//!
//! ## Why
//!
//! int8 weights take a quarter of the memory of f32 and half of f16, and at decode a linear
//! layer is bound by reading its weights — so they are also up to that much faster.
//!
//! ## Features
//!
//! - `files` (default): checkpoints on disk (`Checkpoint::open`, and writing them), the
//!   quantizer (`quantizer::Quantizer`: threads, temporary folders), tuning files
//!   (`Gpu::save_tuning`, `Gpu::load_tuning`) and GGUF files on disk (`Gguf::open`). Without it
//!   the crate touches no file system and builds for `wasm32-unknown-unknown`; checkpoints and
//!   GGUF files are then read from bytes
//!   ([`Checkpoint::from_bytes`](checkpoint::Checkpoint::from_bytes),
//!   [`Gguf::from_bytes`](gguf::Gguf::from_bytes)) and tuning kept as JSON text
//!   ([`Gpu::tuning_json`], [`Gpu::load_tuning_json`]).
//!
//! The command-line tool is the `int8-wgpu-cli` package (`cli/`), the benches the
//! `int8-wgpu-bench` package (`bench/`).

#![warn(missing_docs)]

mod activation;
mod check;
pub mod checkpoint;
mod dtype;
mod error;
pub mod gguf;
pub mod gpu;
mod layer;
mod quantized;
#[cfg(feature = "files")]
pub mod quantizer;
pub mod reference;
#[cfg(feature = "files")]
mod regular_file;
mod scheme;

pub use activation::{ActivationQuant, QuantizedActivations};
pub use dtype::{DType, Element};
pub use error::{Error, Result};
pub use gpu::device::{Capabilities, Gpu};
pub use gpu::options::{GpuOptions, Polling};
pub use gpu::quantized_tensor::GpuQuantizedTensor;
pub use gpu::tensor::GpuTensor;
pub use layer::{ForwardStage, QuantizedLinear};
pub use quantized::{QuantError, QuantizedTensor};
pub use scheme::{Granularity, Method, Mode, ParamLayout, QuantScheme};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

// The examples of the guides in docs/ are doctests too, so that they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../docs/app-integration.md")]
struct AppIntegrationDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/kernels.md")]
struct KernelsDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/int8-activations.md")]
struct Int8ActivationsDoctests;
