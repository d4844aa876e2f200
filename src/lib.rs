#![warn(missing_docs)]
//! int8-wgpu
mod dtype;
mod error;
pub mod gpu;
mod linear;
pub mod quantized;
pub mod reference;
pub mod scheme;

pub use dtype::{DType, Element};
pub use error::{Error, Result};
pub use gpu::{Gpu, GpuOptions, GpuQuantizedTensor, GpuTensor};
pub use linear::QuantizedLinear;
pub use quantized::{QuantError, QuantizedTensor};
pub use scheme::{Granularity, Mode, ParamLayout, QuantScheme};
