//! The kernel table: one row per [`LinearKernel`], with its entry points, what it needs of the
//! weight, whether it takes the scheme's zero points, which activations it serves, its
//! workgroups and how far it reaches under llvmpipe's loop limit. The heuristic, the tuning,
//! the [`GpuOptions`](crate::GpuOptions) overrides and the loop-limit guard all read it.

use crate::gpu::linear::facts::WeightFacts;
use crate::gpu::linear::kernel::LinearKernel;
use crate::gpu::params::{FAST_GROUPS, GEMM_TILE, GEMV_ROWS, GEMV_WG, THREAD_ROWS, WIDE_ROWS, WIDE_WG};
use crate::gpu::shaders::Kernel;

/// Output rows from which one activation row of `rows16` runs eight weight rows per invocation
/// (`gemv_rows16_one_main`) rather than four: two workgroups of it. Bit-identical, 1.2-1.3x
/// faster on lavapipe at [4096, 4096] (BENCHMARKS.md).
pub(crate) const ONE_ROW_MIN_OUT: usize = 2 * GEMV_WG * 2 * THREAD_ROWS;

/// What a kernel needs of a weight's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Needs {
    /// Any row length and scale groups.
    Any,
    /// Units of this many int8 along a row hold whole scale segments (the kernel scales a
    /// unit's partial sum once): `in` and the scale group a multiple of it, or one group a row.
    WholeSegments(usize),
    /// `in` a multiple of this many int8 (int8-activation kernels: one scale per row).
    RowUnits(usize),
}

/// How far an entry point reaches on a CPU adapter under llvmpipe's loop limit (65535 loop
/// iterations per invocation, all loops together, silently stopped beyond): for passes of up
/// to `rows` activation rows, the most input features verified right, `None` where none was
/// met up to 2^17, with and without LLM.int8() outlier columns (checked with every column an
/// outlier). The entries are ordered by `rows`; rows beyond the last have no limit.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reach {
    pub(crate) rows: usize,
    pub(crate) plain: Option<usize>,
    pub(crate) outliers: Option<usize>,
}

const fn reach(rows: usize, plain: Option<usize>, outliers: Option<usize>) -> Reach {
    Reach { rows, plain, outliers }
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spec {
    /// The entry point for passes of several activation rows.
    pub(crate) entry: Kernel,
    /// The entry point for one activation row.
    pub(crate) one_row: Kernel,
    /// The entry point for one activation row from [`ONE_ROW_MIN_OUT`] output rows on.
    pub(crate) one_row_many_out: Option<Kernel>,
    pub(crate) needs: Needs,
    /// The pipeline subtracts the scheme's zero points (`ASYM` override).
    pub(crate) asym: bool,
    /// Serves int8 activations (else f32, f16 and bf16 activations).
    pub(crate) a8: bool,
    /// `entry`'s reach under llvmpipe's loop limit.
    pub(crate) reach: &'static [Reach],
}

const MAX: usize = usize::MAX;
const fn float(entry: Kernel, needs: Needs, asym: bool, reach: &'static [Reach]) -> Spec {
    Spec { entry, one_row: entry, one_row_many_out: None, needs, asym, a8: false, reach }
}
const fn a8(entry: Kernel, needs: Needs, reach: &'static [Reach]) -> Spec {
    Spec { entry, one_row: entry, one_row_many_out: None, needs, asym: false, a8: true, reach }
}

// The word-at-a-time GEMVs pass the limit beyond 16384 inputs at 8 rows, the 16-byte ones
// beyond 65536, the GEMMs beyond 32768; one activation row reaches 2^17 on the float GEMVs.
// The int8 GEMVs' figures are the last points of sweeps whose next point was wrong; the wide
// int8 GEMV loops over the outlier columns once per output, which met the limit from about
// 500 outlier columns, so LLM.int8() layers never run it on CPU adapters.
const GEMM: Spec = float(Kernel::Gemm, Needs::Any, false, &[reach(MAX, Some(32768), Some(32768))]);
const ROWS: Spec = float(
    Kernel::GemvRows,
    Needs::WholeSegments(4),
    true,
    &[reach(1, None, None), reach(MAX, Some(16384), Some(16384))],
);
const ROWS16: Spec = Spec {
    one_row_many_out: Some(Kernel::GemvRows16One),
    ..float(
        Kernel::GemvRows16,
        Needs::WholeSegments(16),
        true,
        &[reach(1, None, None), reach(MAX, Some(65536), Some(65536))],
    )
};
const ROWS16_WIDE: Spec = Spec {
    one_row: Kernel::GemvRows16,
    one_row_many_out: Some(Kernel::GemvRows16One),
    ..float(Kernel::GemvRows16Wide, Needs::WholeSegments(16), true, &[])
};
const LANES: Spec = float(Kernel::GemvFast, Needs::WholeSegments(16), true, &[]);
const GENERIC: Spec = float(Kernel::Gemv, Needs::Any, false, &[]);
const A8_ROWS: Spec = a8(
    Kernel::A8Rows,
    Needs::Any,
    &[
        reach(1, Some(65536), Some(57344)),
        reach(2, Some(57344), Some(49152)),
        reach(4, Some(40960), Some(32768)),
        reach(MAX, Some(24576), Some(20480)),
    ],
);
const A8_ROWS16: Spec = a8(
    Kernel::A8Rows16,
    Needs::RowUnits(16),
    &[
        reach(1, None, None),
        reach(2, None, Some(114688)),
        reach(4, None, Some(98304)),
        reach(MAX, Some(98304), Some(65536)),
    ],
);
const A8_ROWS16_WIDE: Spec =
    Spec { one_row: Kernel::A8Rows16, ..a8(Kernel::A8Rows16Wide, Needs::RowUnits(16), &[reach(MAX, None, Some(0))]) };
const A8_GEMM: Spec = a8(Kernel::A8Gemm, Needs::Any, &[]);

/// The table's row of `kernel`.
pub(crate) fn spec(kernel: LinearKernel) -> &'static Spec {
    match kernel {
        LinearKernel::Gemm => &GEMM,
        LinearKernel::GemvRows => &ROWS,
        LinearKernel::GemvRows16 => &ROWS16,
        LinearKernel::GemvRows16Wide => &ROWS16_WIDE,
        LinearKernel::GemvLanes { .. } => &LANES,
        LinearKernel::GemvGeneric => &GENERIC,
        LinearKernel::A8Rows => &A8_ROWS,
        LinearKernel::A8Rows16 => &A8_ROWS16,
        LinearKernel::A8Rows16Wide => &A8_ROWS16_WIDE,
        LinearKernel::A8Gemm => &A8_GEMM,
    }
}

/// Whether units of `unit` int8 along a row of `w` hold whole scale segments.
pub(crate) fn whole_segments(w: &WeightFacts, unit: usize) -> bool {
    let (k, inner) = (w.k, w.inner);
    k.is_multiple_of(unit) && (inner >= k || inner.is_multiple_of(unit))
}

impl Spec {
    /// Whether the kernel can run `w` (its activations' kind aside).
    pub(crate) fn suits(&self, w: &WeightFacts) -> bool {
        match self.needs {
            Needs::Any => true,
            Needs::WholeSegments(unit) => whole_segments(w, unit),
            Needs::RowUnits(unit) => w.k.is_multiple_of(unit),
        }
    }

    /// The entry point serving `m` activation rows of a layer of `n` output rows.
    pub(crate) fn entry_for(&self, m: usize, n: usize) -> Kernel {
        match self.one_row_many_out {
            _ if m != 1 => self.entry,
            Some(entry) if n >= ONE_ROW_MIN_OUT => entry,
            _ => self.one_row,
        }
    }
}

/// The most input features at which `entry` (a linear entry point), serving passes of `rows`
/// activation rows, stays within llvmpipe's loop limit; `None` where it has no limit.
/// `outliers`: an LLM.int8() layer.
pub(crate) fn cpu_max_in(entry: Kernel, rows: usize, outliers: bool) -> Option<usize> {
    let spec = [GEMM, ROWS, ROWS16, ROWS16_WIDE, LANES, GENERIC]
        .into_iter()
        .chain([A8_ROWS, A8_ROWS16, A8_ROWS16_WIDE, A8_GEMM])
        .find(|s| s.entry == entry || (entry == Kernel::GemmDense && s.entry == Kernel::Gemm))?;
    let r = spec.reach.iter().find(|r| rows <= r.rows)?;
    if outliers { r.outliers } else { r.plain }
}

/// Workgroups `entry` needs for `rows` weight rows and `m` activation rows, with `rpt` weight
/// rows per lane group (the lane-group GEMVs).
pub(crate) fn workgroups(entry: Kernel, rpt: u8, rows: usize, m: usize) -> u32 {
    (match entry {
        Kernel::Gemv => rows.div_ceil(GEMV_ROWS),
        Kernel::GemvRows | Kernel::GemvRows16 | Kernel::A8Rows | Kernel::A8Rows16 => {
            rows.div_ceil(GEMV_WG * THREAD_ROWS)
        }
        Kernel::GemvRows16One => rows.div_ceil(GEMV_WG * 2 * THREAD_ROWS),
        Kernel::GemvRows16Wide | Kernel::A8Rows16Wide => rows.div_ceil(WIDE_WG * WIDE_ROWS),
        Kernel::GemvFast | Kernel::GemvDense => rows.div_ceil(FAST_GROUPS * usize::from(rpt)),
        _ => rows.div_ceil(GEMM_TILE) * m.div_ceil(GEMM_TILE),
    }) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table serves each kernel's activations, and the GEMMs take all rows at once.
    #[test]
    fn rows_match_their_kernels() {
        for k in LinearKernel::FLOAT.into_iter().chain(LinearKernel::A8) {
            let s = spec(k);
            assert_eq!(s.a8, k.is_a8(), "{k}");
            assert!(!(s.a8 && s.asym), "{k}: int8 activations take symmetric weights");
            assert_eq!(
                s.entry
                    .family(crate::gpu::shaders::Variant::new(crate::DType::F32, crate::DType::F32))
                    .name()
                    .starts_with("linear_a8"),
                s.a8,
                "{k}"
            );
        }
    }
}
