//! The fused linear's kernels, host side: one table of kernels (`table.rs`), one choice
//! (`choose.rs`, from the device's facts, the heuristic, the tuned choices and the options),
//! the loop-limit guard, one plan per row count in which int8 activations are an optional
//! pre-pass (`plan.rs`; the activation quantizer itself in `act_quant.rs`), and the tuning that
//! measures the choice per device.

mod act_quant;
mod choose;
mod facts;
mod heuristic;
mod kernel;
mod loop_limit;
mod plan;
mod table;
#[cfg(feature = "files")]
mod tune_file;
mod tune_json;
mod tune_measure;
mod tune_table;

pub use kernel::LinearKernel;
pub use tune_measure::{CandidateTiming, TuneCase, TuneReport, TuneResult};
pub use tune_table::TuneClass;

pub(crate) use act_quant::read_outlier_columns;
pub(crate) use plan::{Bound, LinearPlan};
pub(crate) use tune_table::TuneTable;

use crate::gpu::{Gpu, GpuQuantizedTensor};
use crate::{ActivationQuant, DType, Result};

/// Plans `m` rows of `dtype` activations through `w`, quantized to int8 as `act` where given,
/// with the kernel [`choose`](choose::choose) picks. With
/// [`GpuOptions::tune_on_first_use`](crate::GpuOptions::tune_on_first_use), the first plan of a
/// class not yet in the tuning table times it first.
pub(crate) fn prepare(
    gpu: &Gpu,
    w: &GpuQuantizedTensor,
    m: usize,
    dtype: DType,
    has_bias: bool,
    act: Option<ActivationQuant>,
) -> Result<LinearPlan> {
    let a8 = act.is_some();
    if let Some(options) = gpu.tune_on_first_use()
        && gpu.tune_table().get(&choose::class_of(w, dtype, m, a8)).is_none()
    {
        // A browser cannot block on the timing: an error, never a silent untuned choice.
        #[cfg(target_arch = "wasm32")]
        {
            let _ = options;
            return Err(crate::Error::Unsupported(
                "GpuOptions::tune_on_first_use cannot tune inside a forward in a browser: await Gpu::tune_async \
                 (or QuantizedLinear::tune_async) before the layer's first forward, or load_tuning_json"
                    .into(),
            ));
        }
        #[cfg(not(target_arch = "wasm32"))]
        gpu.tune(&[TuneCase { weight: w, activation: dtype, rows: &[m], a8 }], &options)?;
    }
    LinearPlan::new(gpu, w, m, &choose::choose(gpu, w, m, dtype, act)?, has_bias)
}
