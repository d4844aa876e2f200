//! The yardsticks of int8-wgpu's benches (`cargo bench -p int8-wgpu-bench`, the `bench_table`
//! example), outside the product library: they use its public API and raw wgpu on its device.
//!
//! - [`ReadLimit`]: the device's read limit, the fastest round of several read-only kernels
//!   over several rounds ([`ReadLimitEstimate`], with its spread), which the library's kernels
//!   are compared against;
//! - [`DenseLinear`]: the library's GEMV/GEMM design with f32 weights (the "no quantization"
//!   layer);
//! - [`SimpleGemv`]: the simple kernel of issue 12 (4 weight rows per invocation, nothing
//!   clever), the best simple kernel that does the library's job, checked against the reference;
//! - [`SimpleGemvA8`]: the same with int8 activations, beside the library's W8A8 matmul;
//! - [`SimpleQuantize`]: one invocation per row (absmax, scale, ints), beside the library's GPU
//!   quantization and W8A8's activation quantizer.
//!
//! Every GPU time is a [`Timing`] from [`Gpu::time_pass`](int8_wgpu::Gpu::time_pass): GPU
//! timestamps around one pass of many dispatches where the device has them, else wall clock.
//! The library's layers are timed the same way, through
//! [`QuantizedLinear::record`](int8_wgpu::QuantizedLinear::record) and
//! [`QuantizedLinear::record_stage`](int8_wgpu::QuantizedLinear::record_stage) ([`time_forward`],
//! [`time_stage`]).

#![warn(missing_docs)]

mod dense;
mod layer_timing;
mod read_limit;
mod simple_gemv;
mod simple_gemv_a8;
mod simple_quantize;
#[cfg(test)]
#[path = "../../src/gpu/translate.rs"]
mod translate;
mod wgpu_util;

pub use dense::DenseLinear;
pub use int8_wgpu::gpu::{Timing, TimingSource};
pub use layer_timing::{time_forward, time_stage};
pub use read_limit::{ReadKernel, ReadLimit, ReadLimitEstimate};
pub use simple_gemv::SimpleGemv;
pub use simple_gemv_a8::{SimpleA8Input, SimpleGemvA8};
pub use simple_quantize::SimpleQuantize;
