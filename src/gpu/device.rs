//! The GPU handle: opening or adopting a device, its optional features and limits, and the
//! accessors of the kernel-choice overrides (`options.rs`); no kernel policy lives here.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::gpu::adapter::shared_adapter;
use crate::gpu::cache::PipelineCache;
use crate::gpu::disable::wanted_features;
use crate::gpu::linear::TuneTable;
use crate::gpu::options::{GpuOptions, Polling, TuneOptions, Tuning};
use crate::gpu::poll::{PollRequests, poll_thread};
use crate::gpu::scopes::ErrorScopes;
use crate::{Error, Result};

/// What the device is and offers, as the kernels see it: its optional features this crate
/// detected (and requested), and the facts that follow from them and from the adapter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// `SHADER_F16` is offered by the device (informational: no kernel needs it, 16-bit values
    /// travel packed in `u32`, and it is not requested).
    pub shader_f16: bool,
    /// `SUBGROUP`.
    pub subgroups: bool,
    /// `TIMESTAMP_QUERY`.
    pub timestamps: bool,
    /// The adapter is a CPU (lavapipe, llvmpipe, WARP, SwiftShader): few workgroups run at a
    /// time there, which kernel choice takes into account, and llvmpipe's loop limit (65535
    /// loop iterations per shader invocation) makes the library run fewer activation rows per
    /// pass, or another kernel, on very long rows, and refuse a forced kernel that would pass it
    /// (`Error::Unsupported`; the library's own choices stay within it).
    pub cpu_adapter: bool,
    /// The GEMV kernels reduce with subgroup operations: the device has them and every subgroup
    /// size it may use divides the kernels' 32 lanes per row (else workgroup memory).
    pub subgroup_reductions: bool,
    /// Int8-activation layers (W8A8, LLM.int8()) multiply with WGSL's `dot4I8Packed`, else from
    /// sign-extended bytes (both exact, same bits): yes unless [`GpuOptions::packed_dot`] or
    /// `INT8_WGPU_DISABLE=packed_dot` says no. How naga lowers the builtin per backend:
    /// docs/backends.md.
    pub packed_dot: bool,
}

/// A GPU device with its queue and a cache of compiled pipelines.
///
/// Cheap to clone (`Arc` inside), `Send + Sync`. Open one with [`Gpu::new`] or adopt an
/// application's device with [`Gpu::from_device`].
#[derive(Clone)]
pub struct Gpu {
    inner: Arc<Inner>,
}

struct Inner {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: Option<wgpu::AdapterInfo>,
    caps: Capabilities,
    limits: wgpu::Limits,
    cache: PipelineCache,
    /// Error scopes whose catch a later readback reports (wasm32).
    scopes: ErrorScopes,
    /// The poll thread's request channel; `None` with [`Polling::Application`].
    poll_requests: Option<PollRequests>,
    uncaptured: Arc<Mutex<Option<String>>>,
    tuning: Tuning,
    /// Kernel choices measured by `Gpu::tune` or loaded (`linear/tune_table.rs`).
    tuned: TuneTable,
    buffers_created: AtomicU64,
    bind_groups_created: AtomicU64,
    /// The buffer ranges of layer parameters (biases), which no layer writes.
    parameters: Mutex<Vec<(Weak<wgpu::Buffer>, Range<u64>)>>,
    /// How many parameters were ever registered: a layer re-checks a cached binding only when it moved.
    parameters_registered: AtomicU64,
    /// The staging buffer [`GpuTensor::read_into`](crate::GpuTensor::read_into) reuses.
    staging: Mutex<Option<wgpu::Buffer>>,
}

/// How many GPU objects a [`Gpu`] has created: diagnostics for an application's hot loop,
/// which should create none per iteration (see [`QuantizedLinear::encode`](crate::QuantizedLinear::encode)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResourceCounts {
    /// Buffers created (parameters, tensors, weights, readback staging).
    pub buffers: u64,
    /// Bind groups created.
    pub bind_groups: u64,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu").field("adapter", &self.describe()).field("caps", &self.inner.caps).finish()
    }
}

impl Gpu {
    /// Opens a headless device, honouring `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`.
    ///
    /// Fails with [`Error::NoAdapter`], whose message says what to install, when no adapter exists.
    /// On wasm32 (a browser, which cannot block) it fails with [`Error::Unsupported`]: use
    /// [`Gpu::with_options_async`].
    pub fn new() -> Result<Self> {
        Self::with_options(GpuOptions::default())
    }

    /// [`Gpu::new`] with options.
    pub fn with_options(options: GpuOptions) -> Result<Self> {
        #[cfg(target_arch = "wasm32")]
        {
            drop(options);
            Err(Error::Unsupported(
                "opening a device blocks, which a browser cannot do: use Gpu::with_options_async".into(),
            ))
        }
        #[cfg(not(target_arch = "wasm32"))]
        pollster::block_on(Self::with_options_async(options))
    }

    /// Async form of [`Gpu::with_options`].
    pub async fn with_options_async(options: GpuOptions) -> Result<Self> {
        let backends = match options.backends {
            Some(b) => b,
            None => match wgpu::Backends::from_env() {
                Some(b) if b.is_empty() && !std::env::var("WGPU_BACKEND").unwrap_or_default().trim().is_empty() => {
                    return Err(Error::InvalidOption(format!(
                        "WGPU_BACKEND={:?} names no backend wgpu knows (vulkan, metal, dx12, gl, webgpu)",
                        std::env::var("WGPU_BACKEND").unwrap_or_default()
                    )));
                }
                b => b.unwrap_or(wgpu::Backends::all()),
            },
        };
        let name = options.adapter_name.clone().or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok());
        let adapter = shared_adapter(backends, name.as_deref()).await?;
        let info = adapter.get_info();
        let (wanted, packed_dot) = wanted_features(&std::env::var("INT8_WGPU_DISABLE").unwrap_or_default())?;
        let tuning = Tuning::new(&options, packed_dot)?;
        let features = adapter.features() & wanted;
        let mut limits = adapter.limits();
        if let Some(max) = options.max_storage_buffer_binding_size {
            limits.max_storage_buffer_binding_size = max.min(limits.max_storage_buffer_binding_size);
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("int8-wgpu"),
                required_features: features,
                required_limits: limits,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::RequestDevice { adapter: info.name.clone(), detail: e.to_string() })?;
        log::info!("int8-wgpu: adapter {} ({:?}, {})", info.name, info.backend, info.driver_info);
        // The device was opened with the binding size asked for.
        Ok(Self::build(device, queue, Some(info), true, tuning, options.polling, None))
    }

    /// A `Gpu` around an opened (`own`) or adopted device: its capabilities, error handler
    /// (on its own device only), poll thread and caches; `max_binding` caps the storage
    /// binding size this crate uses below the device's.
    pub(super) fn build(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: Option<wgpu::AdapterInfo>,
        own: bool,
        tuning: Tuning,
        polling: Polling,
        max_binding: Option<u64>,
    ) -> Self {
        let f = device.features();
        let caps = Capabilities {
            shader_f16: f.contains(wgpu::Features::SHADER_F16),
            subgroups: f.contains(wgpu::Features::SUBGROUP),
            timestamps: f.contains(wgpu::Features::TIMESTAMP_QUERY),
            ..Capabilities::default()
        };
        let uncaptured = Arc::new(Mutex::new(None));
        if own {
            // The default handler panics; we turn late errors into an Error at the next readback.
            let sink = uncaptured.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                log::error!("int8-wgpu: uncaptured GPU error: {e}");
                let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert_with(|| e.to_string());
            }));
        }
        let poll_requests = poll_thread(&device, polling);
        let mut limits = device.limits();
        if let Some(max) = max_binding {
            limits.max_storage_buffer_binding_size = max.min(limits.max_storage_buffer_binding_size);
        }
        Self {
            inner: Arc::new(Inner {
                device,
                queue,
                info,
                caps,
                limits,
                cache: PipelineCache::default(),
                scopes: ErrorScopes::default(),
                poll_requests,
                uncaptured,
                tuning,
                tuned: TuneTable::default(),
                buffers_created: AtomicU64::new(0),
                bind_groups_created: AtomicU64::new(0),
                parameters: Mutex::default(),
                parameters_registered: AtomicU64::new(0),
                staging: Mutex::default(),
            }),
        }
    }

    /// Whether two handles are clones of one `Gpu` (tensors and layers made through one may be
    /// used with the other). Two `Gpu`s adopted from the same wgpu device count as different.
    pub fn same_device(&self, other: &Gpu) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The compiled shader families and pipelines of this device.
    pub(super) fn cache(&self) -> &PipelineCache {
        &self.inner.cache
    }

    /// Asks the poll thread to drive the device until pending map callbacks have fired;
    /// nothing with [`Polling::Application`] (the application polls, or [`Gpu::block_on`] does).
    pub(super) fn request_poll(&self) -> Result<()> {
        let Some(requests) = &self.inner.poll_requests else { return Ok(()) };
        requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(())
            .map_err(|_| Error::Gpu("the poll thread has stopped".into()))
    }

    /// The error scopes whose catch a later readback reports (`scopes.rs`).
    pub(super) fn scopes(&self) -> &ErrorScopes {
        &self.inner.scopes
    }

    /// The staging buffer kept for reuse by `readback.rs`.
    pub(super) fn staging(&self) -> &Mutex<Option<wgpu::Buffer>> {
        &self.inner.staging
    }

    /// Whether this `Gpu` polls its device from a thread of its own ([`Polling::Thread`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn has_poll_thread(&self) -> bool {
        self.inner.poll_requests.is_some()
    }

    /// How many buffers and bind groups this `Gpu` (and its clones) has created so far.
    pub fn resource_counts(&self) -> ResourceCounts {
        ResourceCounts {
            buffers: self.inner.buffers_created.load(Ordering::Relaxed),
            bind_groups: self.inner.bind_groups_created.load(Ordering::Relaxed),
        }
    }

    /// Counts one created buffer (`bind_group: false`) or bind group.
    pub(super) fn count_created(&self, bind_group: bool) {
        let c = if bind_group { &self.inner.bind_groups_created } else { &self.inner.buffers_created };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The wgpu device.
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }

    /// The adapter's description.
    pub fn adapter_info(&self) -> Option<&wgpu::AdapterInfo> {
        self.inner.info.as_ref()
    }

    /// Optional features in use.
    pub fn capabilities(&self) -> Capabilities {
        Capabilities {
            cpu_adapter: self.is_cpu_adapter(),
            subgroup_reductions: self.uses_subgroup_reductions(),
            packed_dot: self.uses_packed_dot(),
            ..self.inner.caps
        }
    }

    /// The device's limits.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.inner.limits
    }

    /// Largest buffer this crate binds at once: weights beyond it are split into row blocks.
    pub fn max_binding_size(&self) -> u64 {
        self.inner.limits.max_storage_buffer_binding_size.min(self.inner.limits.max_buffer_size)
    }

    /// A one-line description: adapter, backend, driver.
    pub fn describe(&self) -> String {
        match &self.inner.info {
            Some(i) => format!("{} ({:?}, {:?}, {} {})", i.name, i.backend, i.device_type, i.driver, i.driver_info),
            None => "application device".into(),
        }
    }

    /// Waits until all submitted work is done. On wasm32 (a browser, which cannot block) it
    /// fails with [`Error::Unsupported`]; an awaited readback waits there instead.
    pub fn synchronize(&self) -> Result<()> {
        #[cfg(target_arch = "wasm32")]
        return Err(Error::Unsupported("Gpu::synchronize blocks, which a browser cannot do: await a readback".into()));
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.inner.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(e.to_string()))?;
            self.take_uncaptured()
        }
    }

    /// Records `range` of `buffer` as a layer parameter's: no layer writes it, however it is
    /// wrapped, while the parameter's tensor lives.
    pub(crate) fn register_parameter(&self, buffer: &Arc<wgpu::Buffer>, range: Range<u64>) {
        let mut parameters = self.inner.parameters.lock().unwrap_or_else(|p| p.into_inner());
        parameters.retain(|(p, _)| p.strong_count() > 0);
        parameters.push((Arc::downgrade(buffer), range));
        self.inner.parameters_registered.fetch_add(1, Ordering::SeqCst);
    }

    /// The count of parameters ever registered ([`Gpu::register_parameter`]): while it stays the
    /// same, a binding checked against the registry needs no new check.
    pub(crate) fn parameters_registered(&self) -> u64 {
        self.inner.parameters_registered.load(Ordering::SeqCst)
    }

    /// Whether `range` of `buffer` overlaps a live layer parameter's ([`Gpu::register_parameter`]).
    pub(crate) fn overlaps_parameter(&self, buffer: &wgpu::Buffer, range: Range<u64>) -> bool {
        let parameters = self.inner.parameters.lock().unwrap_or_else(|p| p.into_inner());
        parameters
            .iter()
            .any(|(p, r)| r.start < range.end && range.start < r.end && p.upgrade().is_some_and(|p| *p == *buffer))
    }

    pub(crate) fn take_uncaptured(&self) -> Result<()> {
        match self.inner.uncaptured.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(e) => Err(Error::Gpu(e)),
            None => Ok(()),
        }
    }

    /// Splits `groups` workgroups over x and y within the per-dimension limit.
    pub(crate) fn grid(&self, groups: u32) -> (u32, u32) {
        let max = self.inner.limits.max_compute_workgroups_per_dimension.max(1);
        if groups <= max { (groups.max(1), 1) } else { (max, groups.div_ceil(max)) }
    }

    /// The tuned kernel choices.
    pub(crate) fn tune_table(&self) -> &TuneTable {
        &self.inner.tuned
    }

    /// [`GpuOptions::gemv_rows_per_group`], if it was set.
    pub(crate) fn gemv_rows_per_group(&self) -> Option<u8> {
        self.inner.tuning.gemv_rpt
    }

    /// [`GpuOptions::gemv_rows_per_thread`], if it was set.
    pub(crate) fn gemv_rows_per_thread(&self) -> Option<bool> {
        self.inner.tuning.gemv_rows_per_thread
    }

    /// [`GpuOptions::quantize_runs`], if it was set.
    pub(crate) fn quantize_runs_option(&self) -> Option<bool> {
        self.inner.tuning.quantize_runs
    }

    /// [`GpuOptions::gemm_min_rows`], if it was set.
    pub(crate) fn gemm_min_rows(&self) -> Option<usize> {
        self.inner.tuning.gemm_min_rows
    }

    /// [`GpuOptions::tune_on_first_use`], if it was set.
    pub(crate) fn tune_on_first_use(&self) -> Option<TuneOptions> {
        self.inner.tuning.tune_on_first_use
    }

    /// [`Capabilities::cpu_adapter`].
    pub(crate) fn is_cpu_adapter(&self) -> bool {
        self.inner.info.as_ref().is_some_and(|i| i.device_type == wgpu::DeviceType::Cpu)
    }

    /// [`Capabilities::packed_dot`].
    pub(crate) fn uses_packed_dot(&self) -> bool {
        self.inner.tuning.packed_dot
    }

    /// [`Capabilities::subgroup_reductions`].
    pub(crate) fn uses_subgroup_reductions(&self) -> bool {
        let max = self.inner.info.as_ref().map_or(0, |i| i.subgroup_max_size);
        self.inner.caps.subgroups && max > 0 && max <= 32 && max.is_power_of_two()
    }
}
