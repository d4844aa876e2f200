//! The GPU path: device, tensors, and the host side of each kernel family.

pub mod baseline;
mod device;
#[cfg(test)]
mod div_check;
pub(crate) mod kernels;
pub(crate) mod linear;
pub(crate) mod params;
mod quantize;
mod quantized;
mod tensor;
pub mod timing;

pub use device::{Capabilities, Gpu, GpuOptions};
pub use params::GEMV_MAX_ROWS;
pub use quantized::GpuQuantizedTensor;
pub use tensor::GpuTensor;
