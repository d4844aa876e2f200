//! llvmpipe's loop limit: which kernels stay within it on CPU adapters, and the error for those
//! that would not.

use crate::gpu::Gpu;
use crate::gpu::shaders::Kernel;
use crate::{Error, Result};

/// The most input features at which `kernel`, serving passes of `rows` activation rows (at most
/// 8 per pass for the GEMVs), was verified on llvmpipe (lavapipe, and llvmpipe GL) under its
/// loop limit; `None` where no limit was met up to 2^17 inputs. `outliers`: an LLM.int8() layer,
/// checked with every column an outlier (the count is only known on the GPU, up to `in`).
///
/// llvmpipe counts the iterations of every loop a shader invocation runs, all loops together,
/// and stops them all after 65535 (`LP_MAX_TGSI_LOOP_ITERATIONS` in Mesa's gallivm): silently,
/// the rest of the sums and stores are skipped. Kernels whose activation-row loop runs inside
/// their loop over `k` pay for it per step, so fewer rows per pass reach further. Weight-only
/// (8 rows): the word-at-a-time GEMVs right at 16384 inputs and wrong at 65536, the 16-byte ones
/// with four weight rows right at 65536 and wrong at 131072, the GEMMs right at 32768 and wrong
/// at 131072; one activation row, the wide, lane-group and generic GEMVs right at 131072. Int8
/// activations: each value is the last verified right of a sweep whose next point was wrong
/// (on 1 / 2 / 4 / 8 rows per pass; W8A8, then LLM.int8()), and the outlier loops of the
/// four-row GEMVs and the GEMM run once for all of an invocation's outputs. The wide int8 GEMV
/// loops over the outlier columns once per output, 128 per invocation, which met the limit from
/// about 500 outlier columns: LLM.int8() layers never run it here. GPUs have no such limit.
pub(crate) fn cpu_max_in(kernel: Kernel, rows: usize, outliers: bool) -> Option<usize> {
    match (kernel, rows, outliers) {
        (Kernel::GemvRows, 2.., _) => Some(16384),
        (Kernel::GemvRows16, 2.., _) => Some(65536),
        (Kernel::Gemm | Kernel::GemmDense, ..) => Some(32768),
        (Kernel::A8Rows, 0..=1, false) => Some(65536),
        (Kernel::A8Rows, 0..=1, true) | (Kernel::A8Rows, 2, false) => Some(57344),
        (Kernel::A8Rows, 2, true) => Some(49152),
        (Kernel::A8Rows, 3..=4, false) => Some(40960),
        (Kernel::A8Rows, 3..=4, true) => Some(32768),
        (Kernel::A8Rows, _, false) => Some(24576),
        (Kernel::A8Rows, _, true) => Some(20480),
        (Kernel::A8Rows16, 0..=1, _) | (Kernel::A8Rows16, 2..=4, false) => None,
        (Kernel::A8Rows16, 2, true) => Some(114688),
        (Kernel::A8Rows16, 3..=4, true) | (Kernel::A8Rows16, _, false) => Some(98304),
        (Kernel::A8Rows16, _, true) => Some(65536),
        (Kernel::A8Rows16Wide, _, true) => Some(0),
        _ => None,
    }
}

/// The most activation rows per pass, at most `rows`, with which `kernel` stays within
/// [`cpu_max_in`] at `k` inputs; `None` where not even one row does.
pub(crate) fn cpu_pass_rows(kernel: Kernel, k: usize, rows: usize, outliers: bool) -> Option<usize> {
    (1..=rows.max(1)).rev().find(|&p| cpu_max_in(kernel, p, outliers).is_none_or(|max| k <= max))
}

/// An [`Error::Unsupported`] where a CPU adapter would run the weight-only `kernel` past
/// llvmpipe's loop limit on `m` rows of `k` inputs ([`cpu_max_in`]), which would give wrong
/// sums without a word: the weight-only heuristic never picks such a kernel; explicit options,
/// tuning files and tuning candidates are refused. (Int8-activation layers choose their kernel
/// and rows per pass with [`cpu_pass_rows`].)
pub(crate) fn check_cpu_loop_limit(gpu: &Gpu, kernel: Kernel, k: usize, m: usize) -> Result<()> {
    match cpu_max_in(kernel, m, false) {
        Some(max) if k > max && gpu.is_cpu_adapter() => {
            // The heuristic stays within the limit, so an option or a tuned choice named it.
            let options = [
                gpu.gemm_min_rows().map(|r| format!("gemm_min_rows = {r}")),
                gpu.gemv_rows_per_group().map(|r| format!("gemv_rows_per_group = {r}")),
                gpu.gemv_rows_per_thread().map(|r| format!("gemv_rows_per_thread = {r}")),
            ];
            let options: Vec<String> = options.into_iter().flatten().collect();
            let source = if options.is_empty() {
                "the tuned choice for this layer's class (Gpu::tune or a loaded tuning file) names it; \
                 without that choice (Gpu::clear_tuning) the library picks a kernel within the limit"
                    .to_string()
            } else {
                format!(
                    "GpuOptions {} chose it; without those options the library picks a kernel within the limit",
                    options.join(", ")
                )
            };
            Err(Error::Unsupported(format!(
                "`{}` on {m} rows of {k} input features on a CPU adapter: llvmpipe stops a shader \
                 invocation's loops after 65535 iterations in all, without an error, which this \
                 kernel passes beyond {max} inputs; {source}",
                kernel.entry()
            )))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More rows per pass never reach further, nor do LLM.int8() layers than W8A8 ones: what
    /// `cpu_pass_rows`' search from the most rows down relies on.
    #[test]
    fn more_rows_and_outliers_never_reach_further() {
        let kernels = [Kernel::A8Rows, Kernel::A8Rows16, Kernel::A8Rows16Wide, Kernel::A8Gemm];
        let reach = |k, p, o| cpu_max_in(k, p, o).unwrap_or(usize::MAX);
        for kernel in kernels {
            for p in 1..8 {
                for o in [false, true] {
                    assert!(reach(kernel, p + 1, o) <= reach(kernel, p, o), "{kernel:?} {p} {o}");
                }
                assert!(reach(kernel, p, true) <= reach(kernel, p, false), "{kernel:?} {p}");
            }
        }
    }

    #[test]
    fn passes_serve_the_most_rows_that_fit() {
        assert_eq!(cpu_pass_rows(Kernel::A8Rows16, 131072, 8, false), Some(4));
        assert_eq!(cpu_pass_rows(Kernel::A8Rows16, 131072, 8, true), Some(1));
        assert_eq!(cpu_pass_rows(Kernel::A8Rows16, 65536, 8, true), Some(8));
        assert_eq!(cpu_pass_rows(Kernel::A8Rows, 16388, 8, true), Some(8));
        assert_eq!(cpu_pass_rows(Kernel::A8Rows, 40004, 8, false), Some(4));
        assert_eq!(cpu_pass_rows(Kernel::A8Rows, 70004, 8, false), None);
        assert_eq!(cpu_pass_rows(Kernel::A8Rows16Wide, 1024, 8, true), None);
        assert_eq!(cpu_pass_rows(Kernel::A8Gemm, 131072, 70, true), Some(70));
    }
}
