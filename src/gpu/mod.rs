//! The GPU path: device, tensors, and the host side of each kernel family.

mod adapter;
mod adopt;
pub(crate) mod bindings;
mod buffers;
pub(crate) mod cache;
pub(crate) mod device;
mod disable;
#[cfg(test)]
mod div_check;
mod family;
pub(crate) mod linear;
pub(crate) mod options;
pub(crate) mod params;
mod pipelines;
mod poll;
mod quantize;
pub(crate) mod quantized_tensor;
mod readback;
mod scopes;
pub(crate) mod shaders;
pub(crate) mod tensor;
mod timing;
mod timing_repeat;
#[cfg(test)]
mod translate;
mod wait;

pub(crate) use device::Gpu;
pub use device::ResourceCounts;
pub use linear::{CandidateTiming, LinearKernel, TuneCase, TuneClass, TuneReport, TuneResult};
pub use options::TuneOptions;
pub(crate) use quantized_tensor::GpuQuantizedTensor;
pub(crate) use tensor::GpuTensor;
pub use timing::{Timing, TimingSource};
