//! Host side of `linear_a8.wgsl`: the int8-activation linear (W8A8, LLM.int8()), its kernel
//! choice, and the per-rows plan that runs the activation quantizer and the integer matmul in
//! one compute pass.

use std::sync::Arc;

use crate::gpu::TuneCase;
use crate::gpu::act_quant::ActQuantPlan;
use crate::gpu::bindings::slot;
use crate::gpu::cache::FamilyObjects;
use crate::gpu::family::Family;
use crate::gpu::matmul::{Dispatch, WIDE_MIN_OUT, dispatch_params, upload_dispatches};
use crate::gpu::matmul_a8_run::{A8Run, Chooser, a8_run};
use crate::gpu::params::GEMV_MAX_ROWS;
use crate::gpu::shaders::{Kernel, Variant};
use crate::gpu::tune::{LinearVariant, TuneKey};
use crate::gpu::{Gpu, GpuQuantizedTensor};
use crate::{ActivationQuant, DType, Result};

/// Activation rows from which the int8 GEMM replaces passes of the 8-row int8 GEMV, for rows of
/// `k` inputs: the one place the int8-activation kernels are chosen.
///
/// The int8 GEMM stages raw packed words and does 16 products per `dot4`, so on lavapipe it
/// overtook passes of the word-at-a-time GEMV once its 64-row tiles filled (`forward_into` wall
/// time, W8A8 f32, A B A B interleaved, median of 3, load 2.8-3.8: GEMM against passes 0.39x /
/// 0.83x / 1.52x / 2.14x at [1536, 384] with 16 / 32 / 64 / 128 rows, 0.63x / 0.88x / 1.54x /
/// 1.67x at [384, 1536], 0.39x / 0.53x / 1.07x / 1.44x at [1024, 1024]): CPU adapters take it
/// from 64 rows where `k % 16 != 0`. Passes of the GEMV in 16-byte units (`k % 16 == 0`) keep
/// up with it at every row count there (GPU timestamps, W8A8 bf16, interleaved, load 1.8-2.0,
/// GEMM time / passes time: 3.58 / 1.90 / 1.08 / 1.09 / 1.06 at [1536, 384] with 16 / 32 / 64 /
/// 128 / 512 rows, 3.08 / 1.65 / 0.94 / 0.94 / 0.98 at [384, 1536], 5.11 / 2.57 / 1.30 / 1.30 at
/// [4096, 4096] with 16-128 rows), so CPU adapters never take the GEMM for those, as for the
/// weight-only kernels. On a GPU it starts at 33 rows as the weight-only GEMM does (not yet
/// measured on one). [`GpuOptions::gemm_min_rows`](crate::GpuOptions::gemm_min_rows) overrides
/// all of these, as for the weight-only kernels.
pub(crate) fn a8_gemm_min_rows(gpu: &Gpu, k: usize) -> usize {
    if let Some(r) = gpu.gemm_min_rows() {
        return r.max(GEMV_MAX_ROWS + 1);
    }
    match (gpu.is_cpu_adapter(), k.is_multiple_of(16)) {
        (true, true) => usize::MAX,
        (true, false) => 64,
        (false, _) => 4 * GEMV_MAX_ROWS + 1,
    }
}

/// Activation rows from which CPU adapters run the int8 GEMV with sixteen weight rows per
/// invocation (see [`a8_heuristic_gemv`]); passes share rows evenly, so from here every pass
/// has at least this many.
const A8_WIDE_MIN_ROWS: usize = 3;
/// Input features from which CPU adapters run the int8 GEMV with sixteen weight rows per
/// invocation (see [`a8_heuristic_gemv`]).
const A8_WIDE_MIN_IN: usize = 1024;

/// The variant an int8-activation layer runs on `m` rows of `w`: the one place its kernels are
/// chosen. `GpuOptions::gemm_min_rows` decides GEMM or passes where set; a tuned choice for the
/// layer's class ([`Gpu::tune`] with `int8_activations`) decides the rest; [`a8_heuristic`]
/// decides where neither does.
pub(crate) fn a8_choice(gpu: &Gpu, w: &GpuQuantizedTensor, m: usize, dtype: DType) -> LinearVariant {
    let tuned = gpu.tuned_int8(w, m, dtype);
    let gemm = match tuned {
        Some(t) if gpu.gemm_min_rows().is_none() => t == LinearVariant::Int8Gemm,
        _ => m >= a8_gemm_min_rows(gpu, w.shape()[1]),
    };
    match tuned {
        _ if gemm => LinearVariant::Int8Gemm,
        Some(t) if t != LinearVariant::Int8Gemm => t,
        _ => a8_heuristic_gemv(gpu, w, m),
    }
}

/// The variant chosen without tuning (explicit options still apply): the GEMM from
/// [`a8_gemm_min_rows`], else the GEMV of [`a8_heuristic_gemv`].
pub(crate) fn a8_heuristic(gpu: &Gpu, w: &GpuQuantizedTensor, m: usize) -> LinearVariant {
    if m >= a8_gemm_min_rows(gpu, w.shape()[1]) { LinearVariant::Int8Gemm } else { a8_heuristic_gemv(gpu, w, m) }
}

/// The int8 GEMV for `m` rows of `w`: in 16-byte units where rows are whole units
/// (`k % 16 == 0`), else one word at a time.
///
/// The 16-byte GEMV was 2.0-3.1x faster than the word-at-a-time one on lavapipe at
/// [1536, 384], [384, 1536] and [4096, 4096] with 1, 8 and 32 rows (W8A8, bf16, `time_forward`
/// with GPU timestamps, the two interleaved in one process, five rounds, load 2.8-3.6), with
/// `dot4I8Packed` and with the sign-extended fallback alike (within 5 % of each other). It was
/// still 1.2-1.6x slower than the weight-only W8A16 layer of the same design (`rows16`) there:
/// on this CPU adapter the integer products cost what the float ones do, and the activation
/// quantizer's passes come on top.
///
/// CPU adapters run passes of [`A8_WIDE_MIN_ROWS`] rows or more over more than
/// [`WIDE_MIN_OUT`] output rows and at least [`A8_WIDE_MIN_IN`] inputs with sixteen weight rows
/// per invocation (`a8_rows16_wide_main`) rather than four. On lavapipe (`examples/tune.rs`,
/// GPU timestamps, five interleaved rounds, load 0.3-1.8, W8A8) sixteen rows were 1.06-1.64x
/// faster at [4096, 4096] with 8, 9 and 128 rows, 1.10-1.69x at [1024, 4096] and 1.00-1.46x at
/// [4096, 1024] with 3-8 rows, 1.03-1.16x at [384, 1536]; but 0.75-0.89x at [4096, 4096] with 2
/// rows, 0.95x at [1024, 1024] with 3, and 0.81-0.92x at [1536, 384] (384 inputs) with every
/// row count (2-128), where the four-row kernel stays. Unlike the weight-only kernels (where
/// sixteen rows won every class), the integer products, not the accumulators, bound it there.
fn a8_heuristic_gemv(gpu: &Gpu, w: &GpuQuantizedTensor, m: usize) -> LinearVariant {
    let (n, k) = (w.shape()[0], w.shape()[1]);
    // Beyond 65536 inputs sixteen weight rows won from 3 rows at any output count (W8A8 on
    // lavapipe, `forward_host` wall time, two interleaved rounds, load 4-5: 26-47 / 92 ms
    // against 40-56 / 117-135 ms in passes of the four-row kernel at [256, 81920] / [1024,
    // 81920] with 8 rows, 26-39 against 34-42 ms with 5, even with 3; 2 rows keep four, 15-36
    // against 20-44 ms at 81920 and 131072). It also needs no fewer rows per pass under
    // llvmpipe's loop limit (`cpu_max_in`).
    let wide = m >= A8_WIDE_MIN_ROWS && ((n > WIDE_MIN_OUT && k >= A8_WIDE_MIN_IN) || k > 65536);
    if k.is_multiple_of(16) && gpu.is_cpu_adapter() && wide {
        LinearVariant::Int8Rows16Wide
    } else if k.is_multiple_of(16) {
        LinearVariant::Int8Rows16
    } else {
        LinearVariant::Int8Rows
    }
}

/// The kernel that runs `variant` on `w`, or `None` where `w`'s row length does not suit it (or
/// the variant is not one of int8 activations).
pub(crate) fn a8_kernel_of(w: &GpuQuantizedTensor, variant: LinearVariant) -> Option<Kernel> {
    let units = w.shape()[1].is_multiple_of(16);
    match variant {
        LinearVariant::Int8Rows => Some(Kernel::A8Rows),
        LinearVariant::Int8Rows16 => units.then_some(Kernel::A8Rows16),
        LinearVariant::Int8Rows16Wide => units.then_some(Kernel::A8Rows16Wide),
        LinearVariant::Int8Gemm => Some(Kernel::A8Gemm),
        _ => None,
    }
}

/// The int8-activation forward of `m` rows of `w`: the activation quantizer's plan, then the
/// matmul's dispatches with their parameters uploaded. Made once per (layer, rows).
pub(crate) struct A8RowsPlan {
    pub(crate) act: ActQuantPlan,
    family: Arc<FamilyObjects>,
    pipeline: Arc<wgpu::ComputePipeline>,
    /// In recording order.
    dispatches: Vec<Dispatch>,
}

/// Plans `m` rows of activations in `dtype` through `w` with activations quantized as `act`.
pub(crate) fn prepare_a8(
    gpu: &Gpu,
    w: &GpuQuantizedTensor,
    m: usize,
    dtype: DType,
    has_bias: bool,
    act: ActivationQuant,
) -> Result<A8RowsPlan> {
    // GpuOptions::tune_on_first_use: the first plan of a class not yet in the table times it.
    if let Some(options) = gpu.tune_on_first_use()
        && gpu.tune_table().get(&TuneKey::of_int8(w, dtype, m)).is_none()
    {
        gpu.tune(&[TuneCase { weight: w, activation: dtype, rows: &[m], int8_activations: true }], &options)?;
    }
    let variant = a8_choice(gpu, w, m, dtype);
    // `a8_choice` only returns variants `a8_kernel_of` accepts for `w`; the word GEMV serves any.
    let kernel = a8_kernel_of(w, variant).unwrap_or(Kernel::A8Rows);
    // The option decides GEMM or passes only above one pass.
    let chooser = match gpu.gemm_min_rows() {
        Some(r) if m > GEMV_MAX_ROWS => Chooser::GemmMinRows(r),
        _ => Chooser::Library,
    };
    let run = a8_run(gpu, w.shape()[1], m, act, kernel, chooser)?;
    prepare_a8_run(gpu, w, m, dtype, has_bias, act, run)
}

/// [`prepare_a8`] with a given kernel: a tuning candidate, refused where it cannot run.
pub(crate) fn prepare_a8_kernel(
    gpu: &Gpu,
    w: &GpuQuantizedTensor,
    m: usize,
    dtype: DType,
    has_bias: bool,
    act: ActivationQuant,
    kernel: Kernel,
) -> Result<A8RowsPlan> {
    let run = a8_run(gpu, w.shape()[1], m, act, kernel, Chooser::Candidate)?;
    prepare_a8_run(gpu, w, m, dtype, has_bias, act, run)
}

/// Plans `run`: its dispatches' parameters and the activation quantizer.
fn prepare_a8_run(
    gpu: &Gpu,
    w: &GpuQuantizedTensor,
    m: usize,
    dtype: DType,
    has_bias: bool,
    act: ActivationQuant,
    run: A8Run,
) -> Result<A8RowsPlan> {
    let variant = Variant { packed_dot: gpu.uses_packed_dot(), ..Variant::new(dtype, dtype) };
    let dispatches = upload_dispatches(gpu, w, run.kernel, variant, &dispatch_params(w, m, run.pass, has_bias))?;
    Ok(A8RowsPlan {
        act: ActQuantPlan::new(gpu, m, w.shape()[1], dtype, act)?,
        family: gpu.family(Family::LinearA8)?,
        pipeline: gpu.pipeline(run.kernel, variant)?,
        dispatches,
    })
}

/// An [`A8RowsPlan`] bound to its input, bias and output buffers, ready to record.
pub(crate) struct A8Prepared {
    plan: Arc<A8RowsPlan>,
    act_group: wgpu::BindGroup,
    /// Per dispatch: its bind group and workgroup grid.
    groups: Vec<(wgpu::BindGroup, (u32, u32))>,
}

impl A8RowsPlan {
    /// Binds the plan to `x`, `bias` and `y`.
    pub(crate) fn bind(
        self: &Arc<Self>,
        gpu: &Gpu,
        w: &GpuQuantizedTensor,
        x: &wgpu::Buffer,
        bias: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> A8Prepared {
        let groups = self
            .dispatches
            .iter()
            .map(|(i, params, grid)| {
                let g = gpu.bind_group(
                    &self.family,
                    &[
                        (slot::PARAMS, params),
                        (slot::OUT, y),
                        (slot::X, x),
                        (slot::WEIGHTS, &w.blocks[*i].buffer),
                        (slot::SCALES, &w.scales),
                        (slot::BIAS, bias),
                        (slot::QX, &self.act.qx),
                        (slot::META, &self.act.act),
                    ],
                );
                (g, *grid)
            })
            .collect();
        A8Prepared { plan: self.clone(), act_group: self.act.bind(gpu, x), groups }
    }
}

impl A8Prepared {
    /// Records the activation quantizer, then the matmul, into `pass` (wgpu orders each
    /// dispatch after those writing what it reads).
    pub(crate) fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.record_act_quant(pass);
        self.record_matmul(pass);
    }

    /// Records the activation quantizer alone.
    pub(crate) fn record_act_quant(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.plan.act.record(pass, &self.act_group);
    }

    /// Records the matmul alone, reading the activations the quantizer left in the plan.
    pub(crate) fn record_matmul(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.plan.pipeline);
        for (g, (gx, gy)) in &self.groups {
            pass.set_bind_group(0, g, &[]);
            pass.dispatch_workgroups(*gx, *gy, 1);
        }
    }

    /// The buffer holding this forward's outlier list (see `act_quant::read_outlier_columns`).
    pub(crate) fn act_buffer(&self) -> &wgpu::Buffer {
        &self.plan.act.act
    }
}

impl Gpu {
    /// Whether a W8A8 layer of `in_features` inputs over `rows` activation rows runs the tiled
    /// int8 GEMM: from [`GpuOptions::gemm_min_rows`](crate::GpuOptions::gemm_min_rows) or the
    /// adapter's threshold on, and on CPU adapters where not even one-row passes of the int8 GEMV
    /// stay within llvmpipe's loop limit (more than 65536 inputs not a multiple of 16);
    /// otherwise the int8 GEMV, in passes of up to [`GEMV_MAX_ROWS`](crate::gpu::GEMV_MAX_ROWS)
    /// rows. An LLM.int8() layer takes the GEMM there from 57345 such inputs (any column may
    /// be an outlier).
    pub fn uses_int8_gemm(&self, in_features: usize, rows: usize) -> bool {
        if rows >= a8_gemm_min_rows(self, in_features) {
            return true;
        }
        let gemv = if in_features.is_multiple_of(16) { Kernel::A8Rows16 } else { Kernel::A8Rows };
        let run = a8_run(self, in_features, rows, ActivationQuant::per_token(), gemv, Chooser::Library);
        run.is_ok_and(|r| r.kernel == Kernel::A8Gemm)
    }
}
