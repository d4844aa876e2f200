//! The GPU path: device, tensors, and the host side of each kernel family.

pub mod baseline;
mod device;
pub(crate) mod kernels;
pub(crate) mod linear;
pub(crate) mod params;
mod quantize;
mod tensor;
pub mod timing;

pub use device::{Capabilities, Gpu, GpuOptions};
pub use params::GEMV_MAX_ROWS;
pub use quantize::GpuQuantizedTensor;
pub use tensor::GpuTensor;
