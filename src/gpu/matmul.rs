//! Host side of `gemv.wgsl` and `gemm.wgsl`: kernel choice and dispatch of the fused linear.

use crate::gpu::bindings::slot;
use crate::gpu::params::{FAST_GROUPS, FAST_LANES, GEMM_TILE, GEMV_ROWS, GEMV_WG, THREAD_ROWS, WIDE_ROWS, WIDE_WG};
pub(crate) use crate::gpu::params::{GEMV_MAX_ROWS, LinearParams};
use std::sync::Arc;

use crate::gpu::TuneCase;
use crate::gpu::cache::{Bindable, FamilyObjects};
use crate::gpu::loop_limit::{check_cpu_loop_limit, cpu_max_in};
use crate::gpu::shaders::{Kernel, Variant};
use crate::gpu::tune::{LinearVariant, TuneKey};
use crate::gpu::{Gpu, GpuQuantizedTensor};
use crate::{DType, Result};

/// Fewest fast-GEMV workgroups a GPU (not a CPU adapter) is given; see `rows_per_group`.
const GEMV_MIN_WORKGROUPS: usize = 256;

/// The kernel (and its variant) that serves `m` rows of `w`: the one place kernels are chosen.
///
/// Up to [`GEMV_MAX_ROWS`] rows take one GEMV pass; more rows take the tiled GEMM or GEMV
/// passes of up to 8 rows. Explicit [`GpuOptions`](crate::GpuOptions) decide what they name; a tuned
/// choice for the layer's class ([`Gpu::tune`]) decides the rest; the heuristic ([`heuristic`])
/// decides where neither does.
pub(crate) fn choose(gpu: &Gpu, w: &GpuQuantizedTensor, m: usize, dtype: DType) -> (Kernel, Variant) {
    // `choice` only returns variants `kernel_of` accepts for `w`; the generic GEMV serves any.
    kernel_of(gpu, w, dtype, choice(gpu, w, m, dtype)).unwrap_or((Kernel::Gemv, Variant::new(dtype, dtype)))
}

/// The variant [`choose`] runs, as the tuning names it.
pub(crate) fn choice(gpu: &Gpu, w: &GpuQuantizedTensor, m: usize, dtype: DType) -> LinearVariant {
    let tuned = gpu.tuned(w, m, dtype);
    let gemm = match tuned {
        Some(t) if gpu.gemm_min_rows().is_none() => t == LinearVariant::Gemm,
        _ => m >= gemm_min_rows(gpu),
    };
    let gemv_options = gpu.gemv_rows_per_thread().is_some() || gpu.gemv_rows_per_group().is_some();
    match tuned {
        _ if gemm => LinearVariant::Gemm,
        Some(t) if t != LinearVariant::Gemm && !gemv_options => t,
        _ => heuristic_gemv(gpu, w, m),
    }
}

/// The variant chosen without tuning (explicit options still apply): GEMM from
/// [`gemm_min_rows`] on, else the GEMV of [`uses_rows_per_thread`] and [`rows_per_group`].
pub(crate) fn heuristic(gpu: &Gpu, w: &GpuQuantizedTensor, m: usize) -> LinearVariant {
    if m >= gemm_min_rows(gpu) { LinearVariant::Gemm } else { heuristic_gemv(gpu, w, m) }
}

/// The GEMV variant of the heuristic. A CPU adapter takes whole rows per invocation read in
/// 16-byte units wherever units hold whole scale segments: on lavapipe (`examples/tune.rs`, five
/// interleaved rounds, load 2.9-3.3) `rows16` beat the former choice in every class measured,
/// 3.3-8.4x over the word-at-a-time `rows` at [1536, 384] and 2.2-4.7x over `lanes/4` at
/// [4096, 4096], at 1 and 8 rows, f32, f16 and bf16; for several rows, above
/// [`WIDE_MIN_OUT`] output rows, sixteen weight rows per invocation beat four (see there). The
/// explicit GEMV options keep choosing among the older kernels, which they name.
fn heuristic_gemv(gpu: &Gpu, w: &GpuQuantizedTensor, m: usize) -> LinearVariant {
    let explicit = gpu.gemv_rows_per_thread().is_some() || gpu.gemv_rows_per_group().is_some();
    if gpu.is_cpu_adapter() && !explicit && whole_segments(w, 16) {
        // Four-row passes stop short of llvmpipe's loop limit at large `in` (`cpu_max_in`).
        let long = cpu_max_in(Kernel::GemvRows16, m, false).is_some_and(|max| w.shape()[1] > max);
        if m > 1 && (w.shape()[0] > WIDE_MIN_OUT || long) {
            LinearVariant::GemvRows16Wide
        } else {
            LinearVariant::GemvRows16
        }
    } else if uses_rows_per_thread(gpu, w.shape()[1]) && whole_segments(w, 4) {
        LinearVariant::GemvRows
    } else if whole_segments(w, 16) {
        LinearVariant::GemvLanes { rows_per_group: rows_per_group(gpu, w.shape()[0]) }
    } else {
        LinearVariant::GemvGeneric
    }
}

/// Whether units of `unit` int8 along a row of `w` hold whole scale segments (per row or
/// tensor, or groups of a multiple of `unit`): what the vectorised GEMVs need, since each scales
/// a unit's partial sum once.
fn whole_segments(w: &GpuQuantizedTensor, unit: usize) -> bool {
    let (k, inner) = (w.shape()[1], w.layout().inner);
    k.is_multiple_of(unit) && (inner >= k || inner.is_multiple_of(unit))
}

/// The kernel and pipeline variant that run `choice` on `w`, or `None` where `w`'s row length
/// or scale groups do not suit it.
pub(crate) fn kernel_of(
    gpu: &Gpu,
    w: &GpuQuantizedTensor,
    dtype: DType,
    choice: LinearVariant,
) -> Option<(Kernel, Variant)> {
    let v = Variant::new(dtype, dtype);
    let asym = w.scheme().has_zero_point();
    match choice {
        LinearVariant::Gemm => Some((Kernel::Gemm, v)),
        LinearVariant::GemvGeneric => Some((Kernel::Gemv, v)),
        // Whole rows per invocation: words of four int8 must hold whole scale segments.
        LinearVariant::GemvRows => whole_segments(w, 4).then_some((Kernel::GemvRows, Variant { asym, ..v })),
        // The same with a 16-byte unit per row per step: units must hold whole scale segments.
        LinearVariant::GemvRows16 => whole_segments(w, 16).then_some((Kernel::GemvRows16, Variant { asym, ..v })),
        LinearVariant::GemvRows16Wide => {
            whole_segments(w, 16).then_some((Kernel::GemvRows16Wide, Variant { asym, ..v }))
        }
        // 16-byte units must hold whole scale segments.
        LinearVariant::GemvLanes { rows_per_group } => whole_segments(w, 16).then_some((
            Kernel::GemvFast,
            Variant {
                grouped: w.layout().inner < w.shape()[1],
                asym,
                subgroups: gpu.uses_subgroup_reductions(),
                rpt: rows_per_group,
                ..v
            },
        )),
        // Int8-activation variants run on matmul_a8.rs's kernels.
        LinearVariant::Int8Rows
        | LinearVariant::Int8Rows16
        | LinearVariant::Int8Rows16Wide
        | LinearVariant::Int8Gemm => None,
    }
}

/// Whether the GEMV for rows of `k` inputs gives each invocation whole weight rows
/// (`gemv_rows.wgsl`) rather than spreading a row over a lane group (`gemv_fast_main`).
///
/// A lane group splits a row into 16-element units over its FAST_LANES lanes, so rows shorter
/// than FAST_LANES units leave lanes idle. On a CPU adapter, which runs a workgroup's
/// invocations as loops over SIMD lanes, that idleness decides: on lavapipe (`forward_into`
/// wall time, the two kernels interleaved, load 1.8, storage-buffer parameters) whole rows per
/// invocation were 1.6-2.2x faster at [1536, 384] (k = 384) and 0.4-0.65x as fast at
/// [384, 1536] and [4096, 4096], where the lane groups read neighbouring units together. So CPU
/// adapters take whole rows below k = 512; GPUs, which need many lanes per row to read memory
/// at full speed, keep the lane groups.
/// [`GpuOptions::gemv_rows_per_thread`](crate::GpuOptions::gemv_rows_per_thread) overrides it.
pub(crate) fn uses_rows_per_thread(gpu: &Gpu, k: usize) -> bool {
    gpu.gemv_rows_per_thread().unwrap_or_else(|| gpu.is_cpu_adapter() && k < FAST_LANES * 16)
}

/// Activation rows from which the tiled GEMM replaces passes of the GEMV (up to 8 rows each).
///
/// A pass re-reads the weights (from cache when they fit), so passes win while the GEMM's tiles
/// are mostly empty or its arithmetic is slow. A CPU adapter never takes the GEMM: on lavapipe
/// the passes beat it 1.6-5.4x at [4096, 4096] with 32 and 128 rows, where the GEMM was slower
/// than calling the layer row by row (0.49-0.67x at 32 rows); at [1536, 384] the GEMM was
/// faster (1.1-2.9x), but the passes stayed faster than row by row there too. On a GPU the
/// GEMM starts at 33 rows (more than four passes), a threshold not yet tuned on a real GPU.
pub(crate) fn gemm_min_rows(gpu: &Gpu) -> usize {
    if let Some(r) = gpu.gemm_min_rows() {
        return r.max(GEMV_MAX_ROWS + 1);
    }
    if gpu.is_cpu_adapter() { usize::MAX } else { 4 * GEMV_MAX_ROWS + 1 }
}

/// Weight rows per lane group of the fast GEMV for a layer of `n` output rows.
///
/// More rows per group reuse each activation load for more weight rows (at 8 f32 activation
/// rows, one row per group reads 32 bytes of x from cache per weight byte), but leave fewer
/// workgroups. A CPU adapter (lavapipe, WARP, SwiftShader) runs a few workgroups at a time on its
/// cores, so it takes the most reuse: 4 rows measured 1.2-3.1x faster than 1 on lavapipe. A GPU
/// keeps at least [`GEMV_MIN_WORKGROUPS`] workgroups, enough to give every compute unit of a
/// large GPU a few; this rule is not yet tuned on a real GPU.
pub(crate) fn rows_per_group(gpu: &Gpu, n: usize) -> u8 {
    if let Some(r) = gpu.gemv_rows_per_group() {
        return r;
    }
    if gpu.is_cpu_adapter() {
        return 4;
    }
    [4u8, 2].into_iter().find(|&r| n.div_ceil(FAST_GROUPS * usize::from(r)) >= GEMV_MIN_WORKGROUPS).unwrap_or(1)
}

/// Workgroups a kernel needs for `rows` weight rows and `m` activation rows.
pub(crate) fn workgroups(kernel: Kernel, v: Variant, rows: usize, m: usize) -> u32 {
    (match kernel {
        Kernel::Gemv => rows.div_ceil(GEMV_ROWS),
        Kernel::GemvRows | Kernel::GemvRows16 | Kernel::A8Rows | Kernel::A8Rows16 => {
            rows.div_ceil(GEMV_WG * THREAD_ROWS)
        }
        Kernel::GemvRows16One => rows.div_ceil(GEMV_WG * 2 * THREAD_ROWS),
        Kernel::GemvRows16Wide | Kernel::A8Rows16Wide => rows.div_ceil(WIDE_WG * WIDE_ROWS),
        Kernel::GemvFast | Kernel::GemvDense => rows.div_ceil(FAST_GROUPS * usize::from(v.rpt)),
        _ => rows.div_ceil(GEMM_TILE) * m.div_ceil(GEMM_TILE),
    }) as u32
}

/// The dispatches of one linear: per row block, and per pass of at most 8 activation rows when
/// a GEMV serves more (`LinearParams::m0` is the pass's first row).
pub(crate) struct Plan {
    pub(crate) kernel: Kernel,
    pub(crate) variant: Variant,
    /// Row block index and the parameters of each dispatch, in recording order.
    pub(crate) dispatches: Vec<(usize, LinearParams)>,
}

/// Output rows from which `rows16` serves a single activation row with eight weight rows per
/// invocation (`gemv_rows16_one_main`) instead of four: two workgroups of it.
///
/// With one activation row, four weight rows per invocation load as many activations as weight
/// units, and lavapipe runs every storage load lane by lane; eight halve the activation loads.
/// On lavapipe (GPU timestamps, the two interleaved, seven rounds, load 1.3-1.5) eight rows were
/// 1.32x (f32) and 1.25x (bf16) faster at [4096, 4096] and 1.27x / 1.17x at [1536, 384]; at
/// [384, 1536] (one workgroup of eight-row invocations, so one core idle) 1.10x / 0.92x. Results
/// are bit-identical (the same operations per row in the same order).
const ONE_ROW_MIN_OUT: usize = 2 * GEMV_WG * 2 * THREAD_ROWS;

/// Output rows above which CPU adapters serve passes of several activation rows with sixteen
/// weight rows per invocation (`rows16/wide`, workgroups of `WIDE_WG`) rather than four
/// (`rows16`): more than one workgroup of it.
///
/// On lavapipe (`examples/tune.rs`, GPU timestamps, five interleaved rounds, load 1.3-2.0)
/// sixteen rows beat four in every class measured: 1.41-2.37x at [4096, 4096] and 1.26-1.77x at
/// [1536, 384] with 8, 9 and 128 rows, 1.02-1.30x with 2, for f32, f16 and bf16 activations.
/// Most of it is the named accumulators (in a harness, four rows with named accumulators ran
/// 1.2x faster than with an array indexed per activation row; sixteen rows 2.5x). One
/// activation row keeps eight rows per invocation ([`ONE_ROW_MIN_OUT`]): there sixteen ran 2.3x
/// slower at [4096, 4096], bound by reading sixteen rows' streams per invocation, not by
/// arithmetic.
pub(crate) const WIDE_MIN_OUT: usize = WIDE_WG * WIDE_ROWS;

/// Plans `y = x · dequant(w)ᵀ + bias` for `m` activation rows with `kernel` and `variant`.
fn plan(w: &GpuQuantizedTensor, m: usize, (kernel, variant): (Kernel, Variant), has_bias: bool) -> Plan {
    let pass = if kernel == Kernel::Gemm { m } else { GEMV_MAX_ROWS };
    let one = w.shape()[0] >= ONE_ROW_MIN_OUT;
    let kernel = match kernel {
        Kernel::GemvRows16 | Kernel::GemvRows16Wide if m == 1 && one => Kernel::GemvRows16One,
        Kernel::GemvRows16Wide if m == 1 => Kernel::GemvRows16,
        k => k,
    };
    Plan { kernel, variant, dispatches: dispatch_params(w, m, pass, has_bias) }
}

/// The parameters of each dispatch of a linear over `m` activation rows of `w`, in passes of
/// at most `pass` rows (`LinearParams::m0` is a pass's first row), per row block within each
/// pass. The passes share the rows evenly (9 rows: 5 and 4, not 8 and 1): a GEMV's time grows
/// with its pass's rows, and a last pass of one row would run a kernel built for several.
pub(crate) fn dispatch_params(
    w: &GpuQuantizedTensor,
    m: usize,
    pass: usize,
    has_bias: bool,
) -> Vec<(usize, LinearParams)> {
    let (n, k) = (w.shape()[0], w.shape()[1]);
    let l = w.layout();
    // Each generic-GEMV thread takes chunks of k; a multiple of 4 keeps chunks word-aligned.
    let chunk = k.div_ceil(GEMV_WG).next_multiple_of(4).max(4);
    let mut dispatches = Vec::new();
    let passes = m.div_ceil(pass.max(1));
    for j in 0..passes {
        let (m0, m1) = (j * m / passes, (j + 1) * m / passes);
        for (i, b) in w.blocks.iter().enumerate() {
            let params = LinearParams {
                m: (m1 - m0) as u32,
                n: n as u32,
                k: k as u32,
                words_per_row: k.div_ceil(4) as u32,
                row0: b.row0 as u32,
                rows: b.rows as u32,
                inner: l.inner as u32,
                channels: l.channels as u32,
                chunk: chunk as u32,
                has_bias: u32::from(has_bias),
                xor_mask: w.xor_mask(),
                m0: m0 as u32,
            };
            dispatches.push((i, params));
        }
    }
    dispatches
}

/// A linear dispatch with its bind groups made, ready to record into compute passes.
pub(crate) struct Prepared {
    pub(crate) pipeline: Arc<wgpu::ComputePipeline>,
    /// Per row block: its bind group and workgroup grid.
    pub(crate) groups: Vec<(wgpu::BindGroup, (u32, u32))>,
}

impl Prepared {
    pub(crate) fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        for (g, (gx, gy)) in &self.groups {
            pass.set_bind_group(0, g, &[]);
            pass.dispatch_workgroups(*gx, *gy, 1);
        }
    }
}

/// A [`Plan`] for some number of activation rows with its parameters uploaded and its pipeline
/// compiled: everything about a forward that does not depend on which buffers it reads and
/// writes, built once per (layer, rows) and reused.
pub(crate) struct RowsPlan {
    family: Arc<FamilyObjects>,
    pipeline: Arc<wgpu::ComputePipeline>,
    dispatches: Vec<Dispatch>,
}

/// One dispatch of a linear plan: its row block, parameter buffer and workgroup grid.
pub(crate) type Dispatch = (usize, wgpu::Buffer, (u32, u32));

/// Plans `m` rows of `w` with the kernel [`choose`] picks and uploads each dispatch's parameters.
pub(crate) fn prepare_rows(
    gpu: &Gpu,
    w: &GpuQuantizedTensor,
    m: usize,
    dtype: DType,
    has_bias: bool,
) -> Result<RowsPlan> {
    // GpuOptions::tune_on_first_use: the first plan of a class not yet in the table times it.
    if let Some(options) = gpu.tune_on_first_use()
        && gpu.tune_table().get(&TuneKey::of(w, dtype, m)).is_none()
    {
        gpu.tune(&[TuneCase { weight: w, activation: dtype, rows: &[m], int8_activations: false }], &options)?;
    }
    prepare_kernel(gpu, w, m, choose(gpu, w, m, dtype), has_bias)
}

/// [`prepare_rows`] with a given kernel and variant (the tuning times each candidate so).
pub(crate) fn prepare_kernel(
    gpu: &Gpu,
    w: &GpuQuantizedTensor,
    m: usize,
    chosen: (Kernel, Variant),
    has_bias: bool,
) -> Result<RowsPlan> {
    let plan = plan(w, m, chosen, has_bias);
    check_cpu_loop_limit(gpu, plan.kernel, w.shape()[1], m)?;
    let family = gpu.family(plan.kernel.family(plan.variant))?;
    let pipeline = gpu.pipeline(plan.kernel, plan.variant)?;
    let dispatches = upload_dispatches(gpu, w, plan.kernel, plan.variant, &plan.dispatches)?;
    Ok(RowsPlan { family, pipeline, dispatches })
}

/// Uploads each dispatch's parameters and sizes its grid for `kernel`: per dispatch, in
/// recording order, its row block, parameter buffer and workgroup grid.
pub(crate) fn upload_dispatches(
    gpu: &Gpu,
    w: &GpuQuantizedTensor,
    kernel: Kernel,
    variant: Variant,
    dispatches: &[(usize, LinearParams)],
) -> Result<Vec<Dispatch>> {
    dispatches
        .iter()
        .map(|(i, p)| {
            let params = gpu.storage_buffer("int8-wgpu linear params", bytemuck::bytes_of(p))?;
            let grid = gpu.grid(workgroups(kernel, variant, w.blocks[*i].rows, p.m as usize));
            Ok((*i, params, grid))
        })
        .collect()
}

impl RowsPlan {
    /// Binds the plan to its buffers. 16-bit outputs are OR-ed into `y`: the caller clears it
    /// first.
    pub(crate) fn bind(
        &self,
        gpu: &Gpu,
        w: &GpuQuantizedTensor,
        x: &dyn Bindable,
        bias: &dyn Bindable,
        y: &dyn Bindable,
    ) -> Prepared {
        let groups = self
            .dispatches
            .iter()
            .map(|(i, params, grid)| {
                let b = &w.blocks[*i];
                let g = gpu.bind_group(
                    &self.family,
                    &[
                        (slot::PARAMS, params),
                        (slot::OUT, y),
                        (slot::X, x),
                        (slot::WEIGHTS, &b.buffer),
                        (slot::SCALES, &w.scales),
                        (slot::ZERO_POINTS, &w.zero_points),
                        (slot::BIAS, bias),
                    ],
                );
                (g, *grid)
            })
            .collect();
        Prepared { pipeline: self.pipeline.clone(), groups }
    }
}

impl Gpu {
    /// Whether a linear layer over `rows` activation rows runs the tiled GEMM by the heuristic
    /// (and [`GpuOptions::gemm_min_rows`](crate::GpuOptions::gemm_min_rows)); otherwise it runs
    /// the GEMV, in passes of [`GEMV_MAX_ROWS`](crate::gpu::GEMV_MAX_ROWS) rows. A tuned class
    /// may choose otherwise: [`Gpu::linear_variant`] says what a given layer runs.
    pub fn uses_gemm(&self, rows: usize) -> bool {
        rows >= gemm_min_rows(self)
    }
}
