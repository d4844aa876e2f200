//! llvmpipe's loop limit: which kernels stay within it on CPU adapters, and the error for those
//! that would not.

use crate::gpu::Gpu;
use crate::gpu::shaders::Kernel;
use crate::{Error, Result};

/// The most input features at which `kernel`, serving passes of `m` activation rows (at most
/// 8 per pass), was verified on llvmpipe (lavapipe, and llvmpipe GL) under its loop limit;
/// `None` where no limit was met up to 2^17 inputs.
///
/// llvmpipe counts the iterations of every loop a shader invocation runs, all loops together,
/// and stops them all after 65535 (`LP_MAX_TGSI_LOOP_ITERATIONS` in Mesa's gallivm): silently,
/// the rest of the sums and stores are skipped. Kernels whose activation-row loop runs inside
/// their loop over `k` pass it at large `k` (found on lavapipe, 8 rows: the word-at-a-time GEMVs
/// right at 16384 inputs and wrong at 65536, the 16-byte ones with four weight rows right at
/// 65536 and wrong at 131072, the GEMMs right at 32768 and wrong at 131072); one activation
/// row, the wide, lane-group and generic GEMVs were right at 131072. GPUs have no such limit.
pub(crate) fn cpu_max_in(kernel: Kernel, m: usize) -> Option<usize> {
    match kernel {
        Kernel::GemvRows | Kernel::A8Rows if m > 1 => Some(16384),
        Kernel::GemvRows16 | Kernel::A8Rows16 if m > 1 => Some(65536),
        Kernel::Gemm | Kernel::GemmDense | Kernel::A8Gemm => Some(32768),
        _ => None,
    }
}

/// An [`Error::Unsupported`] where a CPU adapter would run `kernel` past llvmpipe's loop limit
/// on `m` rows of `k` inputs ([`cpu_max_in`]), which would give wrong sums without a word: the
/// weight-only heuristic never picks such a kernel; explicit options, tuning files and tuning
/// candidates are refused. An int8-activation layer with more than 16384 inputs that are not a
/// multiple of 16 has no kernel within the limit on several rows there, so it is refused too.
pub(crate) fn check_cpu_loop_limit(gpu: &Gpu, kernel: Kernel, k: usize, m: usize) -> Result<()> {
    match cpu_max_in(kernel, m) {
        Some(max) if k > max && gpu.is_cpu_adapter() => Err(Error::Unsupported(format!(
            "`{}` with {k} input features on a CPU adapter: llvmpipe stops a shader invocation's \
             loops after 65535 iterations in all, without an error, which this kernel passes \
             beyond {max} inputs; let the library choose the kernel (no GpuOptions kernel \
             override or tuned choice for this layer)",
            kernel.entry()
        ))),
        _ => Ok(()),
    }
}
