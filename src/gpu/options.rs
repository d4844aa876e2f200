//! What a caller may ask of a device ([`GpuOptions`], [`TuneOptions`]), and the kernel-choice
//! overrides the device keeps from it.

use std::time::Duration;

use crate::{Error, Result};

/// Options for opening a device with [`Gpu::with_options`](crate::Gpu::with_options), or adopting
/// an application's with [`Gpu::from_device_with_options`](crate::Gpu::from_device_with_options).
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Backends to search; `None` honours `WGPU_BACKEND` (e.g. `vulkan`, `gl`), else all.
    pub backends: Option<wgpu::Backends>,
    /// Substring of the adapter name to pick; `None` honours `WGPU_ADAPTER_NAME`.
    pub adapter_name: Option<String>,
    /// Ask the device for a smaller `max_storage_buffer_binding_size` than the adapter offers
    /// (tests use this to force weights to be split into row blocks).
    pub max_storage_buffer_binding_size: Option<u64>,
    /// Weight rows each lane group of the vectorised GEMV computes: 1, 2 or 4. `None` picks by
    /// adapter type and layer size. For tuning on a new device, and for tests of every variant.
    pub gemv_rows_per_group: Option<u8>,
    /// Whether the GEMV gives each invocation whole weight rows (`Some(true)`, no cooperation
    /// between invocations) or spreads each row over a lane group (`Some(false)`). `None`
    /// picks by adapter type and row length: on CPU adapters whole rows read in 16-byte units
    /// (`rows16`) where those hold whole scale segments, else whole rows a word at a time for
    /// rows under 512 inputs; lane groups otherwise. Set, it names one of the two older kernels
    /// (`Some(true)`: `rows`). For tuning on a new device, and for tests of both.
    pub gemv_rows_per_thread: Option<bool>,
    /// Activation rows from which the tiled GEMM replaces passes of the GEMV (up to 8 rows each; at least
    /// 9). `None` picks by adapter type. For tuning on a new device, and for benches and tests
    /// that measure one path.
    pub gemm_min_rows: Option<usize>,
    /// Whether GPU quantization of weights whose scale groups are runs within rows (per output
    /// channel, groups of a multiple of 4) takes one invocation per group in one dispatch
    /// (`Some(true)`) or the three passes of statistics, scales and packing (`Some(false)`).
    /// Both give the same ints and scale bits. `None` takes the one-dispatch form on CPU
    /// adapters for groups of at most 16384 elements. For tests of both, and a new device.
    pub quantize_runs: Option<bool>,
    /// Whether int8-activation layers (W8A8, LLM.int8()) multiply packed int8 words with WGSL's
    /// `dot4I8Packed` (`Some(true)`) or from sign-extended bytes (`Some(false)`). Both give the
    /// same bits. `None` uses `dot4I8Packed` unless `INT8_WGPU_DISABLE` names `packed_dot`; see
    /// [`Capabilities::packed_dot`](crate::Capabilities::packed_dot).
    pub packed_dot: Option<bool>,
    /// Tune the fused linear's kernel choice ([`Gpu::tune`](crate::Gpu::tune)) at a layer's first forward with a
    /// row count of a class no layer has been tuned (or loaded) for: that forward then takes
    /// as long as the timing (seconds for large layers on a software adapter). `None`: only
    /// [`Gpu::tune`](crate::Gpu::tune) and [`Gpu::load_tuning_json`](crate::Gpu::load_tuning_json) (or `Gpu::load_tuning`) fill the tuning table.
    /// In a browser, which cannot block on the timing, such a forward is an
    /// [`Error::Unsupported`](crate::Error::Unsupported): await
    /// [`Gpu::tune_async`](crate::Gpu::tune_async) before it instead.
    pub tune_on_first_use: Option<TuneOptions>,
    /// Who polls the device so that readbacks complete: a thread of the `Gpu` (the default)
    /// or the application.
    pub polling: Polling,
}

/// Who polls the device, which is what makes wgpu run buffer-mapping callbacks and so lets a
/// readback ([`GpuTensor::read_async`](crate::GpuTensor::read_async) and the other `*_async`
/// readbacks) complete.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Polling {
    /// A thread of the `Gpu` polls the device while a readback waits, so async readbacks
    /// complete on any executor without blocking it.
    #[default]
    Thread,
    /// No thread: the application polls. An async readback then completes only once the
    /// device is polled after its copy was submitted: `device.poll(..)` from the application
    /// (a frame loop, or a thread of its own), or the browser's event loop on WebGPU, where
    /// polling is implicit. A readback future that the device is never polled for never
    /// completes. The blocking calls ([`GpuTensor::read`](crate::GpuTensor::read),
    /// [`GpuQuantizedTensor::to_host`](crate::GpuQuantizedTensor::to_host),
    /// [`Gpu::quantize`](crate::Gpu::quantize), …) poll the device themselves until their
    /// readback is done, and return an [`Error::Gpu`](crate::Error::Gpu) rather than wait
    /// forever if the device is idle and the readback still pending.
    Application,
}

/// Kernel-choice overrides from [`GpuOptions`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tuning {
    pub(crate) gemv_rpt: Option<u8>,
    pub(crate) gemv_rows_per_thread: Option<bool>,
    pub(crate) gemm_min_rows: Option<usize>,
    pub(crate) quantize_runs: Option<bool>,
    /// Resolved: `GpuOptions::packed_dot`, else not disabled by `INT8_WGPU_DISABLE`.
    pub(crate) packed_dot: bool,
    pub(crate) tune_on_first_use: Option<TuneOptions>,
}

impl Tuning {
    /// The overrides `options` sets, checked (`gemv_rows_per_group` is 1, 2 or 4 where set);
    /// `packed_dot` where it leaves that open.
    pub(crate) fn new(options: &GpuOptions, packed_dot: bool) -> Result<Self> {
        if let Some(r) = options.gemv_rows_per_group
            && ![1, 2, 4].contains(&r)
        {
            return Err(Error::InvalidOption(format!("gemv_rows_per_group must be 1, 2 or 4, not {r}")));
        }
        Ok(Self {
            gemv_rpt: options.gemv_rows_per_group,
            gemv_rows_per_thread: options.gemv_rows_per_thread,
            gemm_min_rows: options.gemm_min_rows,
            quantize_runs: options.quantize_runs,
            packed_dot: options.packed_dot.unwrap_or(packed_dot),
            tune_on_first_use: options.tune_on_first_use,
        })
    }
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            gemv_rpt: None,
            gemv_rows_per_thread: None,
            gemm_min_rows: None,
            quantize_runs: None,
            packed_dot: true,
            tune_on_first_use: None,
        }
    }
}

/// How [`Gpu::tune`](crate::Gpu::tune) measures.
#[derive(Clone, Copy, Debug)]
pub struct TuneOptions {
    /// Rounds of every candidate in turn (A B C A B C ...); each candidate's figure is the
    /// median of its rounds, so a burst of load on a shared machine moves all candidates alike.
    pub rounds: u32,
    /// Each round of a candidate repeats its forward until one sample lasts at least this long
    /// (at most 1000 forwards), so short kernels are timed above the timer's noise.
    pub min_sample: Duration,
    /// How much faster (0.05 = 5 %) the fastest candidate's median must be than the
    /// heuristic's choice to replace it. Load on a shared machine moves medians by a few per
    /// cent; a near tie keeps the default rather than a choice the noise made.
    pub margin: f64,
}

impl Default for TuneOptions {
    fn default() -> Self {
        TuneOptions { rounds: 5, min_sample: Duration::from_millis(10), margin: 0.05 }
    }
}

impl TuneOptions {
    /// An [`Error::InvalidOption`] for options that cannot measure: no rounds, or a margin that
    /// is not a finite fraction of at least zero (a NaN margin would compare false and silently
    /// drop the heuristic's place).
    pub(crate) fn check(&self) -> Result<()> {
        if self.rounds == 0 {
            return Err(Error::InvalidOption("TuneOptions::rounds is 0; tuning needs at least one round".into()));
        }
        if !self.margin.is_finite() || self.margin < 0.0 {
            return Err(Error::InvalidOption(format!(
                "TuneOptions::margin is {}; it must be a finite fraction of at least 0 (0.05 = 5 %)",
                self.margin
            )));
        }
        Ok(())
    }
}
