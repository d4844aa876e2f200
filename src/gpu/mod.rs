//! The GPU path: device, tensors, and the host side of each kernel family.

pub(crate) mod act_quant;
mod adapter;
mod adopt;
pub(crate) mod bindings;
mod buffers;
pub(crate) mod cache;
mod device;
mod disable;
#[cfg(test)]
mod div_check;
mod family;
pub(crate) mod linear;
mod options;
pub(crate) mod params;
mod pipelines;
mod quantize;
mod quantized_tensor;
mod readback;
pub(crate) mod shaders;
mod tensor;
mod timing;
#[cfg(test)]
mod translate;
mod wait;

pub use device::{Capabilities, Gpu, ResourceCounts};
pub use linear::{CandidateTiming, LinearKernel, TuneCase, TuneClass, TuneReport, TuneResult};
pub use options::{GpuOptions, Polling, TuneOptions};
pub use quantized_tensor::GpuQuantizedTensor;
pub use tensor::GpuTensor;
pub use timing::{Timing, TimingSource};
