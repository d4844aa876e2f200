//! How an int8-activation forward runs on the adapter: the chosen kernel, the activation rows
//! each of its passes serves, and on CPU adapters the replacement of a kernel that would pass
//! llvmpipe's loop limit ([`cpu_max_in`]).

use crate::gpu::Gpu;
use crate::gpu::loop_limit::{cpu_max_in, cpu_pass_rows};
use crate::gpu::params::GEMV_MAX_ROWS;
use crate::gpu::shaders::Kernel;
use crate::{ActivationQuant, Error, Result};

/// The kernel an int8-activation forward runs and the activation rows per pass (all of them
/// for the GEMM, which takes them in one dispatch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct A8Run {
    pub(crate) kernel: Kernel,
    pub(crate) pass: usize,
}

/// Who chose the kernel [`a8_run`] is given, which decides what happens where it cannot run.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Chooser {
    /// The library (heuristic or tuned choice): it takes another kernel that can.
    Library,
    /// [`GpuOptions::gemm_min_rows`](crate::GpuOptions::gemm_min_rows), with this value: a
    /// GEMV it keeps rows on that cannot run is refused.
    GemmMinRows(usize),
    /// A tuning candidate: refused where it cannot run, so the tuning skips it.
    Candidate,
}

/// How `kernel`, chosen by `chooser`, runs `m` rows of `k` inputs with activations quantized as
/// `act`.
///
/// One activation row runs the wide GEMV as its four-row kernel. On CPU adapters each pass
/// serves as many rows (up to [`GEMV_MAX_ROWS`]) as [`cpu_max_in`] allows for the worst case
/// (LLM.int8(): every column an outlier); where not even one row fits, the wide GEMV gives way
/// to the four-row one, then the library's choices to the int8 GEMM, which has no limit up to
/// 2^17 inputs. Fewer rows per pass over the same kernel came first because they were faster
/// than the GEMM at these few rows on lavapipe (W8A8, [256, k], `forward_host` wall time,
/// load 3-13, two interleaved rounds: 2 / 8 rows at k = 16388 took 9-20 / 72-96 ms in passes of
/// two rows of the word GEMV and 148-260 / 122-302 ms as the GEMM; at 40004, 43-81 / 185-476
/// against 447-479 / 386-437 ms; at 70000, 26-56 / 144-192 ms in one-row passes of the 16-byte
/// GEMV against 737-952 ms).
pub(crate) fn a8_run(
    gpu: &Gpu,
    k: usize,
    m: usize,
    act: ActivationQuant,
    kernel: Kernel,
    chooser: Chooser,
) -> Result<A8Run> {
    let kernel = if kernel == Kernel::A8Rows16Wide && m == 1 { Kernel::A8Rows16 } else { kernel };
    let rows = |kernel| if kernel == Kernel::A8Gemm { m } else { m.min(GEMV_MAX_ROWS) };
    if !gpu.is_cpu_adapter() {
        return Ok(A8Run { kernel, pass: rows(kernel) });
    }
    let outliers = act.outlier_threshold().is_some();
    let mut candidates = vec![kernel];
    if kernel == Kernel::A8Rows16Wide {
        candidates.push(Kernel::A8Rows16);
    }
    if matches!(chooser, Chooser::Library) {
        candidates.push(Kernel::A8Gemm);
    }
    for c in candidates {
        if let Some(pass) = cpu_pass_rows(c, k, rows(c), outliers) {
            return Ok(A8Run { kernel: c, pass });
        }
    }
    let max = cpu_max_in(kernel, 1, outliers).unwrap_or(0);
    let what = if outliers { "with LLM.int8() outlier columns (up to all of them)" } else { "(W8A8)" };
    let who = match chooser {
        Chooser::GemmMinRows(r) => format!(
            "GpuOptions::gemm_min_rows = {r} keeps these {m} rows on the int8 GEMV; a gemm_min_rows of at most \
             {m}, or none, runs the int8 GEMM, which stays within the limit"
        ),
        _ => "this tuning candidate is not run".into(),
    };
    Err(Error::Unsupported(format!(
        "`{}` on {m} rows of {k} input features {what} on a CPU adapter: llvmpipe stops a shader \
         invocation's loops after 65535 iterations in all, without an error, which this kernel \
         passes beyond {max} inputs even in passes of one row; {who}",
        kernel.entry()
    )))
}
