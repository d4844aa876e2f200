//! The GPU path: device, tensors, and the host side of each kernel family.

pub(crate) mod act_quant;
mod adapter;
pub(crate) mod bindings;
mod buffers;
mod cache;
mod device;
mod disable;
#[cfg(test)]
mod div_check;
pub(crate) mod layer_plan;
mod loop_limit;
pub(crate) mod matmul;
mod matmul_a8;
mod matmul_a8_run;
mod options;
pub(crate) mod params;
mod quantize;
mod quantized_tensor;
pub(crate) mod shaders;
mod tensor;
mod timing;
#[cfg(test)]
mod translate;
mod tune;
#[cfg(feature = "files")]
mod tune_file;
mod tune_measure;

pub use device::{Capabilities, Gpu, ResourceCounts};
pub use options::GpuOptions;
pub use params::GEMV_MAX_ROWS;
pub use quantized_tensor::GpuQuantizedTensor;
pub use tensor::GpuTensor;
pub use timing::{Timing, TimingSource};
pub use tune::{LINEAR_A8_FAMILY, LINEAR_FAMILY, LinearVariant, RowClass, TuneKey};
pub use tune_measure::{CandidateTiming, TuneCase, TuneOptions, TuneReport, TuneResult};
