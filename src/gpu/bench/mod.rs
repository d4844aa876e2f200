//! Measuring tools for the benches (feature `bench`): not part of the library's product API.
//!
//! - [`ReadLimit`]: the device's read limit, the fastest round of several read-only kernels
//!   over several rounds ([`ReadLimitEstimate`], with its spread), which the library's kernels
//!   are compared against;
//! - [`DenseLinear`]: the same GEMV/GEMM design with f32 weights (the "no quantization" layer);
//! - [`SimpleGemv`]: the simple kernel of issue 12 (4 weight rows per invocation, nothing
//!   clever), the best simple kernel that does the library's job, checked against the reference;
//! - [`SimpleGemvA8`]: the same with int8 activations, beside the library's W8A8 matmul;
//! - [`SimpleQuantize`]: one invocation per row (absmax, scale, ints), beside the library's GPU
//!   quantization and W8A8's activation quantizer;
//! - [`Timing`]: how long an iteration took and whether GPU timestamps or the wall clock said so.
//!
//! `QuantizedLinear::time_forward` times the int8 layer itself, `time_int8_matmul` the integer
//! matmul of an int8-activation layer alone, `time_activation_quant` its activation quantizer
//! alone (also feature `bench`).

mod dense;
mod read_limit;
mod simple_gemv;
mod simple_gemv_a8;
mod simple_quantize;

pub use dense::DenseLinear;
pub use read_limit::{ReadKernel, ReadLimit, ReadLimitEstimate};
pub use simple_gemv::SimpleGemv;
pub use simple_gemv_a8::{SimpleA8Input, SimpleGemvA8};
pub use simple_quantize::SimpleQuantize;
// Timing lives beside the tuning that also needs it; the benches see it here.
pub(crate) use crate::gpu::timing::time_passes;
pub use crate::gpu::timing::{Timing, TimingSource};
