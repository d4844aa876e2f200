//! What a caller may ask of a device ([`GpuOptions`]), and the kernel-choice overrides the
//! device keeps from it.

use crate::gpu::TuneOptions;

/// Options for opening a device with [`Gpu::with_options`](crate::Gpu::with_options).
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
    /// [`Gpu::uses_packed_dot`](crate::Gpu::uses_packed_dot).
    pub packed_dot: Option<bool>,
    /// Tune the fused linear's kernel choice ([`Gpu::tune`](crate::Gpu::tune)) at a layer's first forward with a
    /// row count of a class no layer has been tuned (or loaded) for: that forward then takes
    /// as long as the timing (seconds for large layers on a software adapter). `None`: only
    /// [`Gpu::tune`](crate::Gpu::tune) and [`Gpu::load_tuning`](crate::Gpu::load_tuning) fill the tuning table.
    pub tune_on_first_use: Option<TuneOptions>,
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
