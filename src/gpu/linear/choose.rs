//! Where kernels are chosen: [`choose`] turns the device's facts, the weight, the rows, the
//! dtype, the activation quantization, the tuned choices and the options into one [`Choice`].
//!
//! Precedence: an explicit [`GpuOptions`](crate::GpuOptions) field decides what it names
//! (`gemm_min_rows`: GEMM or passes; `gemv_rows_per_thread` / `gemv_rows_per_group`: the float
//! GEMV), a tuned choice for the layer's class decides the rest, the heuristic decides where no
//! layer of the class was tuned; the loop-limit guard then has the last word on CPU adapters.

use crate::gpu::linear::facts::{DeviceFacts, WeightFacts};
use crate::gpu::linear::heuristic::{gemm_min_rows, heuristic_gemv};
use crate::gpu::linear::kernel::LinearKernel;
use crate::gpu::linear::loop_limit::{Chooser, Run, run};
use crate::gpu::linear::table::spec;
use crate::gpu::linear::tune_table::{RowClass, TuneClass};
use crate::gpu::params::GEMV_MAX_ROWS;
use crate::gpu::shaders::{Kernel, Variant};
use crate::gpu::{Gpu, GpuQuantizedTensor};
use crate::{ActivationQuant, DType, Result};

/// How a layer runs `m` activation rows: its kernel, entry point and pipeline variant, the rows
/// per pass, and for int8 activations the activation quantizer that runs first.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Choice {
    pub(crate) kernel: LinearKernel,
    pub(crate) entry: Kernel,
    pub(crate) variant: Variant,
    /// Activation rows per pass (all of them for the GEMMs).
    pub(crate) pass: usize,
    /// The pre-pass quantizing the activations to int8; `None` for float activations.
    pub(crate) act: Option<ActivationQuant>,
}

/// The kernel for `m` rows of `w`, before the loop-limit guard: options, then `tuned` (where
/// it suits `w`), then the heuristic. `tuned: None` gives the heuristic's choice.
pub(crate) fn choose_kernel(
    facts: &DeviceFacts,
    w: &WeightFacts,
    m: usize,
    a8: bool,
    tuned: Option<LinearKernel>,
) -> LinearKernel {
    let tuned = tuned.filter(|&t| t.is_a8() == a8 && spec(t).suits(w));
    let gemm_kernel = if a8 { LinearKernel::A8Gemm } else { LinearKernel::Gemm };
    let gemm = match tuned {
        Some(t) if facts.gemm_min_rows.is_none() => t == gemm_kernel,
        _ => m >= gemm_min_rows(facts, w.k, a8),
    };
    // The float GEMV options name a GEMV themselves; int8 activations have none.
    let gemv_options = !a8 && facts.gemv_options();
    match tuned {
        _ if gemm => gemm_kernel,
        Some(t) if t != gemm_kernel && !gemv_options => t,
        _ => heuristic_gemv(facts, w, m, a8),
    }
}

/// The pipeline variant running `kernel` on `w` with `dtype` activations.
fn variant(facts: &DeviceFacts, kernel: LinearKernel, w: &WeightFacts, dtype: DType) -> Variant {
    let v = Variant::new(dtype, dtype);
    let s = spec(kernel);
    match kernel {
        _ if s.a8 => Variant { packed_dot: facts.packed_dot, ..v },
        LinearKernel::GemvLanes { rows_per_group } => {
            Variant { grouped: w.inner < w.k, asym: w.zero_point, subgroups: facts.subgroups, rpt: rows_per_group, ..v }
        }
        _ => Variant { asym: s.asym && w.zero_point, ..v },
    }
}

/// How `kernel`, chosen by `chooser`, runs `m` rows of `w`; `None` where it does not suit `w`.
pub(crate) fn resolve(
    facts: &DeviceFacts,
    w: &WeightFacts,
    m: usize,
    dtype: DType,
    act: Option<ActivationQuant>,
    kernel: LinearKernel,
    chooser: Chooser,
) -> Option<Result<Choice>> {
    if kernel.is_a8() != act.is_some() || !spec(kernel).suits(w) {
        return None;
    }
    let outliers = act.is_some_and(|a| a.outlier_threshold().is_some());
    Some(run(facts, kernel, [w.n, w.k], m, outliers, chooser).map(|r: Run| Choice {
        kernel: r.kernel,
        entry: r.entry,
        variant: variant(facts, r.kernel, w, dtype),
        pass: r.pass,
        act,
    }))
}

/// The class of `w` run on `m` activation rows of `dtype`, quantized to int8 where `a8`.
pub(crate) fn class_of(w: &GpuQuantizedTensor, dtype: DType, m: usize, a8: bool) -> TuneClass {
    let WeightFacts { n, k, inner, zero_point } = WeightFacts::of(w);
    TuneClass {
        a8,
        activation: dtype,
        in_class: k.next_power_of_two(),
        out_class: n.next_power_of_two(),
        rows: RowClass::of(m),
        grouped: inner < k,
        zero_point,
    }
}

/// The tuned choice for `m` rows of `w` on `gpu`, if its class was tuned.
fn tuned(gpu: &Gpu, w: &GpuQuantizedTensor, m: usize, dtype: DType, a8: bool) -> Option<LinearKernel> {
    gpu.tune_table().get(&class_of(w, dtype, m, a8))
}

/// The kernel [`choose_kernel`] picks for `m` rows of `w` in `dtype` on `gpu`, with activations
/// quantized as `act`, and how it runs after the loop-limit guard.
fn decide(
    gpu: &Gpu,
    w: &GpuQuantizedTensor,
    m: usize,
    dtype: DType,
    act: Option<ActivationQuant>,
) -> (LinearKernel, Result<Choice>) {
    let (facts, weight, a8) = (DeviceFacts::of(gpu), WeightFacts::of(w), act.is_some());
    let kernel = choose_kernel(&facts, &weight, m, a8, tuned(gpu, w, m, dtype, a8));
    // `choose_kernel` only returns kernels that suit `w`; the generic GEMVs serve any.
    let generic = if a8 { LinearKernel::A8Rows } else { LinearKernel::GemvGeneric };
    let choice = resolve(&facts, &weight, m, dtype, act, kernel, Chooser::Library)
        .or_else(|| resolve(&facts, &weight, m, dtype, act, generic, Chooser::Library))
        .expect("the generic GEMVs serve every weight");
    (kernel, choice)
}

/// How `m` rows of `w` in `dtype`, with activations quantized as `act`, run on `gpu`.
pub(crate) fn choose(
    gpu: &Gpu,
    w: &GpuQuantizedTensor,
    m: usize,
    dtype: DType,
    act: Option<ActivationQuant>,
) -> Result<Choice> {
    decide(gpu, w, m, dtype, act).1
}

/// Whether a CPU adapter runs `m` (at most one pass of) W8A8 rows of `k` inputs on the int8
/// GEMM because not even one-row passes of the heuristic's int8 GEMV stay within the loop limit:
/// the int8 GEMM is then a tuning candidate at so few rows.
pub(crate) fn a8_gemm_past_loop_limit(facts: &DeviceFacts, [n, k]: [usize; 2], m: usize) -> bool {
    let gemv = if k.is_multiple_of(16) { LinearKernel::A8Rows16 } else { LinearKernel::A8Rows };
    m <= GEMV_MAX_ROWS && run(facts, gemv, [n, k], m, false, Chooser::Library).is_ok_and(|r| r.kernel.is_gemm())
}

impl Gpu {
    /// The kernel a linear layer with `weight` runs on `rows` activation rows of `activation`,
    /// with activations quantized as `act` (`None`: float activations, W8A32 / W8A16): explicit
    /// [`GpuOptions`](crate::GpuOptions), then the tuned choice of its class ([`Gpu::tune`]),
    /// then the heuristic, within llvmpipe's loop limit on CPU adapters. A kernel that options
    /// or tuning force past that limit is named here and refused when the layer plans it.
    pub fn linear_kernel(
        &self,
        weight: &GpuQuantizedTensor,
        activation: DType,
        act: Option<ActivationQuant>,
        rows: usize,
    ) -> LinearKernel {
        let (kernel, choice) = decide(self, weight, rows.max(1), activation, act);
        choice.map_or(kernel, |c| c.kernel)
    }
}

#[cfg(test)]
#[path = "choose_tests.rs"]
mod tests;
