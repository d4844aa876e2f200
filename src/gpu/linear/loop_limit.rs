//! The loop-limit guard: on CPU adapters, how a chosen kernel runs within llvmpipe's loop limit
//! (the table's [`Reach`](crate::gpu::linear::table::Reach)), or the error where it cannot.
//!
//! Int8-activation layers adapt: each pass serves as many rows (up to 8) as the kernel's reach
//! allows for the worst case (LLM.int8(): every column an outlier); where not even one row
//! fits, the wide GEMV gives way to the four-row one, then the library's own choices to the int8
//! GEMM, which has no limit up to 2^17 inputs (fewer rows per pass came first: they were faster
//! than the GEMM at these few rows, BENCHMARKS.md). Float-activation layers never need to: the
//! heuristic stays within the limit, and a kernel an option or a tuned choice forces past it is
//! refused. GPUs have no such limit.

use crate::gpu::linear::facts::DeviceFacts;
use crate::gpu::linear::kernel::LinearKernel;
use crate::gpu::linear::table::{cpu_max_in, spec};
use crate::gpu::params::GEMV_MAX_ROWS;
use crate::gpu::shaders::Kernel;
use crate::{Error, Result};

/// Who chose the kernel, which decides what happens where it cannot run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Chooser {
    /// The library (heuristic or tuned choice): int8-activation layers take another kernel.
    Library,
    /// A tuning candidate: refused where it cannot run, so the tuning skips it.
    Candidate,
}

/// How a kernel runs: the kernel (another one where the guard replaced it), its entry point and
/// the activation rows per pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) kernel: LinearKernel,
    pub(crate) entry: Kernel,
    pub(crate) pass: usize,
}

/// The most activation rows per pass, at most `rows`, with which `entry` stays within
/// [`cpu_max_in`] at `k` inputs; `None` where not even one row does.
pub(crate) fn cpu_pass_rows(entry: Kernel, k: usize, rows: usize, outliers: bool) -> Option<usize> {
    (1..=rows.max(1)).rev().find(|&p| cpu_max_in(entry, p, outliers).is_none_or(|max| k <= max))
}

/// How `kernel`, chosen by `chooser`, runs `m` rows of `k` inputs over `n` outputs;
/// `outliers`: an LLM.int8() layer.
pub(crate) fn run(
    facts: &DeviceFacts,
    kernel: LinearKernel,
    [n, k]: [usize; 2],
    m: usize,
    outliers: bool,
    chooser: Chooser,
) -> Result<Run> {
    let rows = |kernel: LinearKernel| if kernel.is_gemm() { m } else { m.min(GEMV_MAX_ROWS) };
    let entry = spec(kernel).entry_for(m, n);
    let chosen = Run { kernel, entry, pass: rows(kernel) };
    if !facts.cpu {
        return Ok(chosen);
    }
    if !kernel.is_a8() {
        return match cpu_max_in(entry, m, false) {
            Some(max) if k > max => Err(refused(facts, entry, k, m, max, None)),
            _ => Ok(chosen),
        };
    }
    // One activation row runs the wide GEMV as its four-row kernel.
    let kernel = if entry == Kernel::A8Rows16 { LinearKernel::A8Rows16 } else { kernel };
    let mut candidates = vec![kernel];
    if kernel == LinearKernel::A8Rows16Wide {
        candidates.push(LinearKernel::A8Rows16);
    }
    if chooser == Chooser::Library && facts.gemm_min_rows.is_none_or(|_| m <= GEMV_MAX_ROWS) {
        candidates.push(LinearKernel::A8Gemm);
    }
    for c in candidates {
        let entry = spec(c).entry;
        if let Some(pass) = cpu_pass_rows(entry, k, rows(c), outliers) {
            return Ok(Run { kernel: if c == kernel { chosen.kernel } else { c }, entry, pass });
        }
    }
    let entry = spec(kernel).entry;
    let max = cpu_max_in(entry, 1, outliers).unwrap_or(0);
    Err(refused(facts, entry, k, m, max, Some((outliers, chooser))))
}

/// The [`Error::Unsupported`] of `entry` past the limit (`max` inputs) on `m` rows of `k`
/// inputs; `a8`: the int8 activations' outliers and who chose it.
fn refused(facts: &DeviceFacts, entry: Kernel, k: usize, m: usize, max: usize, a8: Option<(bool, Chooser)>) -> Error {
    const LIMIT: &str = "on a CPU adapter: llvmpipe stops a shader invocation's loops after 65535 iterations in \
                         all, without an error, which this kernel passes beyond";
    let entry = entry.entry();
    Error::Unsupported(match a8 {
        None => {
            let options = [
                facts.gemm_min_rows.map(|r| format!("gemm_min_rows = {r}")),
                facts.gemv_rows_per_group.map(|r| format!("gemv_rows_per_group = {r}")),
                facts.gemv_rows_per_thread.map(|r| format!("gemv_rows_per_thread = {r}")),
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
            format!("`{entry}` on {m} rows of {k} input features {LIMIT} {max} inputs; {source}")
        }
        Some((outliers, chooser)) => {
            let what = if outliers { "with LLM.int8() outlier columns (up to all of them)" } else { "(W8A8)" };
            let who = match (chooser, facts.gemm_min_rows) {
                (Chooser::Library, Some(r)) => format!(
                    "GpuOptions::gemm_min_rows = {r} keeps these {m} rows on the int8 GEMV; a gemm_min_rows of \
                     at most {m}, or none, runs the int8 GEMM, which stays within the limit"
                ),
                _ => "this tuning candidate is not run".into(),
            };
            format!(
                "`{entry}` on {m} rows of {k} input features {what} {LIMIT} {max} inputs even in passes of one row; {who}"
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More rows per pass never reach further, nor do LLM.int8() layers than W8A8 ones: what
    /// `cpu_pass_rows`' search from the most rows down relies on.
    #[test]
    fn more_rows_and_outliers_never_reach_further() {
        let entries = [Kernel::A8Rows, Kernel::A8Rows16, Kernel::A8Rows16Wide, Kernel::A8Gemm];
        let reach = |k, p, o| cpu_max_in(k, p, o).unwrap_or(usize::MAX);
        for entry in entries {
            for p in 1..8 {
                for o in [false, true] {
                    assert!(reach(entry, p + 1, o) <= reach(entry, p, o), "{entry:?} {p} {o}");
                }
                assert!(reach(entry, p, true) <= reach(entry, p, false), "{entry:?} {p}");
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

    /// The table gives the reach the loop-limit sweeps verified (the weight-only kernels at 8
    /// rows per pass, the int8 ones per pass size, W8A8 then LLM.int8()).
    #[test]
    fn the_table_keeps_the_verified_reach() {
        assert_eq!(cpu_max_in(Kernel::GemvRows, 1, false), None);
        assert_eq!(cpu_max_in(Kernel::GemvRows, 8, false), Some(16384));
        assert_eq!(cpu_max_in(Kernel::GemvRows16, 8, false), Some(65536));
        assert_eq!(cpu_max_in(Kernel::GemvRows16One, 1, false), None);
        assert_eq!(cpu_max_in(Kernel::GemvRows16Wide, 8, false), None);
        assert_eq!(cpu_max_in(Kernel::Gemm, 128, false), Some(32768));
        assert_eq!(cpu_max_in(Kernel::GemmDense, 128, false), Some(32768));
        let a8 = |e, o| [1, 2, 3, 4, 5, 8].map(|p| cpu_max_in(e, p, o));
        let s = Some;
        assert_eq!(a8(Kernel::A8Rows, false), [s(65536), s(57344), s(40960), s(40960), s(24576), s(24576)]);
        assert_eq!(a8(Kernel::A8Rows, true), [s(57344), s(49152), s(32768), s(32768), s(20480), s(20480)]);
        assert_eq!(a8(Kernel::A8Rows16, false), [None, None, None, None, s(98304), s(98304)]);
        assert_eq!(a8(Kernel::A8Rows16, true), [None, s(114688), s(98304), s(98304), s(65536), s(65536)]);
        assert_eq!(a8(Kernel::A8Rows16Wide, true), [s(0); 6]);
        assert_eq!(a8(Kernel::A8Rows16Wide, false), [None; 6]);
        assert_eq!(a8(Kernel::A8Gemm, true), [None; 6]);
    }
}
