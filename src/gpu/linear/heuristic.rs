//! The heuristic: which kernel serves a layer where neither an explicit
//! [`GpuOptions`](crate::GpuOptions) field nor a tuned choice decides, from the device's facts
//! and the weight's shape. Measured on lavapipe only; other devices tune (`tune_measure.rs`).

use crate::gpu::linear::facts::{DeviceFacts, WeightFacts};
use crate::gpu::linear::kernel::LinearKernel;
use crate::gpu::linear::table::{cpu_max_in, whole_segments};
use crate::gpu::params::{FAST_GROUPS, FAST_LANES, GEMV_MAX_ROWS, WIDE_ROWS, WIDE_WG};
use crate::gpu::shaders::Kernel;

/// Fewest lane-group GEMV workgroups a GPU (not a CPU adapter) is given; see [`rows_per_group`].
const GEMV_MIN_WORKGROUPS: usize = 256;

/// Output rows above which CPU adapters serve passes of several activation rows with sixteen
/// weight rows per invocation rather than four: more than one workgroup of it (1.3-2.4x faster
/// on lavapipe for float activations, BENCHMARKS.md).
pub(crate) const WIDE_MIN_OUT: usize = WIDE_WG * WIDE_ROWS;
/// Activation rows from which CPU adapters run the wide int8 GEMV (passes share rows evenly, so
/// every pass has at least this many); two rows keep the four-row kernel.
const A8_WIDE_MIN_ROWS: usize = 3;
/// Input features from which CPU adapters run the wide int8 GEMV over more than
/// [`WIDE_MIN_OUT`] outputs; at 384 inputs the integer products bound it and four rows stay.
const A8_WIDE_MIN_IN: usize = 1024;
/// Input features beyond which CPU adapters run the wide int8 GEMV at any output count: it
/// needs no fewer rows per pass under the loop limit there.
const A8_WIDE_ANY_OUT_IN: usize = 65536;

/// Activation rows from which the tiled GEMM replaces passes of the GEMV, for rows of `k`
/// inputs: [`GpuOptions::gemm_min_rows`](crate::GpuOptions::gemm_min_rows) where set; on a GPU
/// 33 (more than four passes, not yet tuned on one); never on a CPU adapter, where passes beat
/// the GEMM (1.6-5.4x at [4096, 4096], BENCHMARKS.md), except the int8 GEMM for rows that are
/// not whole 16-byte units, which overtakes passes of the word-at-a-time GEMV once its 64-row
/// tiles fill.
pub(crate) fn gemm_min_rows(facts: &DeviceFacts, k: usize, a8: bool) -> usize {
    if let Some(r) = facts.gemm_min_rows {
        return r.max(GEMV_MAX_ROWS + 1);
    }
    match (facts.cpu, a8 && !k.is_multiple_of(16)) {
        (true, true) => 64,
        (true, false) => usize::MAX,
        (false, _) => 4 * GEMV_MAX_ROWS + 1,
    }
}

/// The GEMV the heuristic runs `m` rows of `w` on.
pub(crate) fn heuristic_gemv(facts: &DeviceFacts, w: &WeightFacts, m: usize, a8: bool) -> LinearKernel {
    if a8 { a8_gemv(facts, w, m) } else { float_gemv(facts, w, m) }
}

/// A CPU adapter takes whole rows per invocation read in 16-byte units wherever units hold
/// whole scale segments (3.3-8.4x over `rows`, 2.2-4.7x over `lanes/4` on lavapipe,
/// BENCHMARKS.md), sixteen weight rows per invocation for several activation rows above
/// [`WIDE_MIN_OUT`] outputs or past the four-row kernel's reach. The GEMV options keep choosing
/// among the older kernels, which they name.
fn float_gemv(facts: &DeviceFacts, w: &WeightFacts, m: usize) -> LinearKernel {
    if facts.cpu && !facts.gemv_options() && whole_segments(w, 16) {
        let long = cpu_max_in(Kernel::GemvRows16, m, false).is_some_and(|max| w.k > max);
        if m > 1 && (w.n > WIDE_MIN_OUT || long) { LinearKernel::GemvRows16Wide } else { LinearKernel::GemvRows16 }
    } else if uses_rows_per_thread(facts, w.k) && whole_segments(w, 4) {
        LinearKernel::GemvRows
    } else if whole_segments(w, 16) {
        LinearKernel::GemvLanes { rows_per_group: rows_per_group(facts, w.n) }
    } else {
        LinearKernel::GemvGeneric
    }
}

/// The int8 GEMV in 16-byte units where rows are whole units (2.0-3.1x faster than a word at a
/// time on lavapipe, BENCHMARKS.md); on CPU adapters its wide form for passes of at least
/// [`A8_WIDE_MIN_ROWS`] rows over more than [`WIDE_MIN_OUT`] outputs and [`A8_WIDE_MIN_IN`]
/// inputs, or beyond [`A8_WIDE_ANY_OUT_IN`] inputs.
fn a8_gemv(facts: &DeviceFacts, w: &WeightFacts, m: usize) -> LinearKernel {
    let (n, k) = (w.n, w.k);
    let wide = m >= A8_WIDE_MIN_ROWS && ((n > WIDE_MIN_OUT && k >= A8_WIDE_MIN_IN) || k > A8_WIDE_ANY_OUT_IN);
    if k.is_multiple_of(16) && facts.cpu && wide {
        LinearKernel::A8Rows16Wide
    } else if k.is_multiple_of(16) {
        LinearKernel::A8Rows16
    } else {
        LinearKernel::A8Rows
    }
}

/// Whether the float GEMV for rows of `k` inputs gives each invocation whole weight rows rather
/// than spreading a row over a lane group: on CPU adapters below `k` = 512, where lane groups
/// leave lanes idle (1.6-2.2x faster at k = 384 on lavapipe, BENCHMARKS.md); GPUs keep lane
/// groups. [`GpuOptions::gemv_rows_per_thread`](crate::GpuOptions::gemv_rows_per_thread)
/// decides where set.
fn uses_rows_per_thread(facts: &DeviceFacts, k: usize) -> bool {
    facts.gemv_rows_per_thread.unwrap_or(facts.cpu && k < FAST_LANES * 16)
}

/// Weight rows per lane group of the lane-group GEMV for a layer of `n` output rows: more reuse
/// each activation load, fewer leave fewer workgroups. CPU adapters take 4 (1.2-3.1x faster than
/// 1 on lavapipe, BENCHMARKS.md); a GPU keeps at least [`GEMV_MIN_WORKGROUPS`] workgroups.
pub(crate) fn rows_per_group(facts: &DeviceFacts, n: usize) -> u8 {
    if let Some(r) = facts.gemv_rows_per_group {
        return r;
    }
    if facts.cpu {
        return 4;
    }
    [4u8, 2].into_iter().find(|&r| n.div_ceil(FAST_GROUPS * usize::from(r)) >= GEMV_MIN_WORKGROUPS).unwrap_or(1)
}

/// The longest rows CPU adapters quantize with one invocation per row (`act_quant_rows_main`)
/// rather than one workgroup per row (2-5x faster on lavapipe at 8-512 rows, BENCHMARKS.md):
/// such an invocation loops about 2.25 times this many times, inside llvmpipe's 65535 loop
/// iterations per invocation (`table.rs`).
const ACT_QUANT_ROWS_MAX_IN: usize = 16384;

/// Whether the activation quantizer (the int8 activations' pre-pass) takes one invocation per
/// row rather than one workgroup per row, for rows of `k` inputs: on CPU adapters, up to
/// [`ACT_QUANT_ROWS_MAX_IN`].
pub(crate) fn act_quant_per_row(facts: &DeviceFacts, k: usize) -> bool {
    facts.cpu && k <= ACT_QUANT_ROWS_MAX_IN
}
