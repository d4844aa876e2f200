//! The GPU handle: adapter and device, optional features, the pipeline cache, and readback.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, mpsc};

/// Usage of every storage buffer the crate creates (tensors, weights, parameters).
const STORAGE_USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

use crate::gpu::kernels::{Family, Kernel, Variant};
use crate::gpu::params;
use crate::{Error, Result};

/// Options for opening a device with [`Gpu::with_options`].
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
    /// Activation rows from which the tiled GEMM replaces passes of the 8-row GEMV (at least
    /// 9). `None` picks by adapter type. For tuning on a new device, and for benches and tests
    /// that measure one path.
    pub gemm_min_rows: Option<usize>,
}

/// Optional device features this crate detected (and requested) on the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `SHADER_F16`.
    pub shader_f16: bool,
    /// `SUBGROUP`.
    pub subgroups: bool,
    /// `TIMESTAMP_QUERY`.
    pub timestamps: bool,
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
    families: Mutex<HashMap<Family, Arc<FamilyObjects>>>,
    pipelines: Mutex<HashMap<(Kernel, Variant), Arc<wgpu::ComputePipeline>>>,
    poll_requests: Mutex<mpsc::Sender<()>>,
    uncaptured: Arc<Mutex<Option<String>>>,
    tuning: Tuning,
}

/// Kernel-choice overrides from [`GpuOptions`].
#[derive(Clone, Copy, Debug, Default)]
struct Tuning {
    gemv_rpt: Option<u8>,
    gemm_min_rows: Option<usize>,
}

pub(crate) struct FamilyObjects {
    module: wgpu::ShaderModule,
    pub(crate) bind_group_layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
}

/// A new wgpu instance; the first one of each backend set is also kept until the process ends.
///
/// Destroying the last instance unloads the driver; Mesa's lavapipe leaves an exit handler
/// behind that then crashes the process at exit (seen in ~5% of short runs). One kept instance
/// keeps the driver loaded. Instances are not shared between `Gpu`s: on GL, two devices of one
/// instance contend for its single context and ran 10-50x slower in our tests.
fn new_instance(desc: wgpu::InstanceDescriptor) -> wgpu::Instance {
    static KEPT: Mutex<Vec<(wgpu::Backends, wgpu::Instance)>> = Mutex::new(Vec::new());
    let backends = desc.backends;
    let instance = wgpu::Instance::new(desc);
    let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
    if !kept.iter().any(|(b, _)| *b == backends) {
        kept.push((backends, instance.clone()));
    }
    instance
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
    pub fn new() -> Result<Self> {
        pollster::block_on(Self::with_options_async(GpuOptions::default()))
    }

    /// [`Gpu::new`] with options.
    pub fn with_options(options: GpuOptions) -> Result<Self> {
        pollster::block_on(Self::with_options_async(options))
    }

    /// Async form of [`Gpu::with_options`].
    pub async fn with_options_async(options: GpuOptions) -> Result<Self> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        if let Some(b) = options.backends {
            desc.backends = b;
        }
        let backends = desc.backends;
        let instance = new_instance(desc);
        let name = options.adapter_name.or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok());
        let adapter = match name {
            Some(name) => {
                let adapters = instance.enumerate_adapters(backends).await;
                let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
                adapters
                    .into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&name.to_lowercase()))
                    .ok_or_else(|| Error::NoAdapter {
                        backends: format!("{backends:?}"),
                        detail: format!("none is named like `{name}`; found {names:?}"),
                    })?
            }
            None => instance
                .request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::from_env()
                        .unwrap_or(wgpu::PowerPreference::HighPerformance),
                    ..Default::default()
                })
                .await
                .map_err(|e| Error::NoAdapter { backends: format!("{backends:?}"), detail: e.to_string() })?,
        };
        let info = adapter.get_info();
        let disabled = std::env::var("INT8_WGPU_DISABLE").unwrap_or_default().to_lowercase();
        let mut wanted = wgpu::Features::empty();
        for (feature, key) in [
            (wgpu::Features::SHADER_F16, "f16"),
            (wgpu::Features::SUBGROUP, "subgroups"),
            (wgpu::Features::TIMESTAMP_QUERY, "timestamps"),
        ] {
            if !disabled.contains(key) {
                wanted |= feature;
            }
        }
        if let Some(r) = options.gemv_rows_per_group
            && ![1, 2, 4].contains(&r)
        {
            return Err(Error::Scheme(format!("gemv_rows_per_group must be 1, 2 or 4, not {r}")));
        }
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
        let tuning = Tuning { gemv_rpt: options.gemv_rows_per_group, gemm_min_rows: options.gemm_min_rows };
        Ok(Self::build(device, queue, Some(info), true, tuning))
    }

    /// Adopts an application's own device and queue. Features the device was opened with
    /// (`SHADER_F16`, `SUBGROUP`, `TIMESTAMP_QUERY`) are detected; none is required. The
    /// device's uncaptured-error handler is left to the application.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        let info = device.adapter_info();
        Self::build(device, queue, Some(info), false, Tuning::default())
    }

    fn build(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: Option<wgpu::AdapterInfo>,
        own: bool,
        tuning: Tuning,
    ) -> Self {
        let f = device.features();
        let caps = Capabilities {
            shader_f16: f.contains(wgpu::Features::SHADER_F16),
            subgroups: f.contains(wgpu::Features::SUBGROUP),
            timestamps: f.contains(wgpu::Features::TIMESTAMP_QUERY),
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
        // Map callbacks only fire while the device is polled; one thread polls on request so
        // that async readbacks never block their caller's executor.
        let (tx, rx) = mpsc::channel::<()>();
        let poll_device = device.clone();
        std::thread::Builder::new()
            .name("int8-wgpu-poll".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    let _ = poll_device.poll(wgpu::PollType::wait_indefinitely());
                }
            })
            .expect("spawning the poll thread");
        let limits = device.limits();
        Self {
            inner: Arc::new(Inner {
                device,
                queue,
                info,
                caps,
                limits,
                families: Mutex::default(),
                pipelines: Mutex::default(),
                poll_requests: Mutex::new(tx),
                uncaptured,
                tuning,
            }),
        }
    }

    /// Whether two handles are clones of one `Gpu` (tensors and layers made through one may be
    /// used with the other). Two `Gpu`s adopted from the same wgpu device count as different.
    pub fn same_device(&self, other: &Gpu) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
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
        self.inner.caps
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

    /// Waits until all submitted work is done.
    pub fn synchronize(&self) -> Result<()> {
        self.inner.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(e.to_string()))?;
        self.take_uncaptured()
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

    pub(crate) fn family(&self, family: Family) -> Result<Arc<FamilyObjects>> {
        let mut map = self.inner.families.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = map.get(&family) {
            return Ok(f.clone());
        }
        let device = &self.inner.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(family.name()),
            source: wgpu::ShaderSource::Wgsl(family.source().into()),
        };
        let module = if family.indexing_proven() {
            let checks = wgpu::ShaderRuntimeChecks {
                bounds_checks: false,
                force_loop_bounding: false,
                ..wgpu::ShaderRuntimeChecks::checked()
            };
            // SAFETY: `indexing_proven` families index only below lengths derived from their
            // own buffer sizes and terminate by construction (see Family::indexing_proven).
            unsafe { device.create_shader_module_trusted(desc, checks) }
        } else {
            device.create_shader_module(desc)
        };
        let entries = params::layout_entries(family);
        let bind_group_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(family.name()),
            entries: &entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(family.name()),
            bind_group_layouts: &[Some(&bind_group_layout)],
            immediate_size: 0,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("compiling shader family {}: {e}", family.name())));
        }
        let objects = Arc::new(FamilyObjects { module, bind_group_layout, pipeline_layout });
        map.insert(family, objects.clone());
        Ok(objects)
    }

    /// The compiled pipeline of `kernel` in `variant`, compiled once and cached.
    pub(crate) fn pipeline(&self, kernel: Kernel, variant: Variant) -> Result<Arc<wgpu::ComputePipeline>> {
        let key = (kernel, variant);
        if let Some(p) = self.inner.pipelines.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(p.clone());
        }
        let fam = self.family(kernel.family(variant))?;
        let device = &self.inner.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut constants = vec![
            ("IN_DT", f64::from(variant.in_dt.shader_code())),
            ("OUT_DT", f64::from(variant.out_dt.shader_code())),
        ];
        constants.extend(kernel.extra_constants(variant));
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.entry()),
            layout: Some(&fam.pipeline_layout),
            module: &fam.module,
            entry_point: Some(kernel.entry()),
            // Every kernel writes its workgroup memory before reading it. wgpu's GL backend
            // zero-fills it with code that took llvmpipe's compiler 10-50 s per kernel.
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("compiling kernel {} {variant:?}: {e}", kernel.entry())));
        }
        let pipeline = Arc::new(pipeline);
        self.inner.pipelines.lock().unwrap_or_else(|p| p.into_inner()).insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// [`GpuOptions::gemv_rows_per_group`], if it was set.
    pub(crate) fn gemv_rows_per_group(&self) -> Option<u8> {
        self.inner.tuning.gemv_rpt
    }

    /// [`GpuOptions::gemm_min_rows`], if it was set.
    pub(crate) fn gemm_min_rows(&self) -> Option<usize> {
        self.inner.tuning.gemm_min_rows
    }

    /// Whether the adapter is a CPU (lavapipe, llvmpipe, WARP, SwiftShader): few workgroups run
    /// at a time there, which the kernel choices take into account.
    pub(crate) fn is_cpu_adapter(&self) -> bool {
        self.inner.info.as_ref().is_some_and(|i| i.device_type == wgpu::DeviceType::Cpu)
    }

    /// Whether a linear layer over `rows` activation rows runs the tiled GEMM; otherwise it runs
    /// the GEMV, in passes of [`GEMV_MAX_ROWS`](crate::gpu::GEMV_MAX_ROWS) rows.
    pub fn uses_gemm(&self, rows: usize) -> bool {
        rows >= crate::gpu::linear::gemm_min_rows(self)
    }

    /// Whether the GEMV kernels reduce with subgroup operations: the device has them and every
    /// subgroup size it may use divides the kernels' 32 lanes per row (else workgroup memory).
    pub fn uses_subgroup_reductions(&self) -> bool {
        let max = self.inner.info.as_ref().map_or(0, |i| i.subgroup_max_size);
        self.inner.caps.subgroups && max > 0 && max <= 32 && max.is_power_of_two()
    }

    /// Copies `size` bytes at `offset` of `buffer` back to the host.
    pub(crate) async fn read_bytes(&self, buffer: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>> {
        let device = &self.inner.device;
        let staging = self.create_buffer(
            "int8-wgpu readback",
            size,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            None,
        )?;
        let mut enc = device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buffer, offset, &staging, 0, size);
        self.inner.queue.submit([enc.finish()]);
        let (tx, rx) = futures::channel::oneshot::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.inner
            .poll_requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(())
            .map_err(|_| Error::Gpu("the poll thread has stopped".into()))?;
        rx.await
            .map_err(|_| Error::Gpu("the buffer mapping was dropped (device lost?)".into()))?
            .map_err(|e| Error::Gpu(format!("mapping a readback buffer: {e}")))?;
        self.take_uncaptured()?;
        let bytes =
            staging.get_mapped_range(..).map_err(|e| Error::Gpu(format!("reading a mapped buffer: {e}")))?.to_vec();
        staging.unmap();
        Ok(bytes)
    }

    /// Creates a buffer of `size` bytes, filled with `contents` when given (`size` must then be
    /// its length), else zeroed.
    ///
    /// Every allocation of the crate goes through here. Allocation failures are caught in an
    /// error scope and returned as [`Error::OutOfMemory`] from this call: `create_buffer_init`
    /// would panic inside wgpu ("Failed to get mapped range") and a plain `create_buffer` would
    /// leave the error to surface at some later, unrelated readback.
    pub(crate) fn create_buffer(
        &self,
        label: &str,
        size: u64,
        usage: wgpu::BufferUsages,
        contents: Option<&[u8]>,
    ) -> Result<wgpu::Buffer> {
        let device = &self.inner.device;
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: contents.is_some(),
        });
        // Scopes pop in reverse order of their pushes.
        let invalid = pollster::block_on(validation.pop());
        if let Some(e) = pollster::block_on(oom.pop()) {
            log::warn!("int8-wgpu: allocating {size} bytes for {label}: {e}");
            return Err(Error::OutOfMemory { what: label.to_string(), bytes: size });
        }
        if let Some(e) = invalid {
            return Err(Error::Gpu(format!("creating {label} ({size} bytes): {e}")));
        }
        if let Some(bytes) = contents {
            let mut view = buffer.get_mapped_range_mut(..).map_err(|e| {
                // Some backends (wgpu's GL) report a failed allocation only here, as an
                // invalid buffer; it was just created, so nothing else can have made it so.
                log::warn!("int8-wgpu: mapping {size} bytes for {label} at creation: {e}");
                Error::OutOfMemory { what: label.to_string(), bytes: size }
            })?;
            view.copy_from_slice(bytes);
            drop(view);
            buffer.unmap();
        }
        Ok(buffer)
    }

    /// Creates a storage buffer holding `bytes` (padded to a multiple of 4).
    pub(crate) fn storage_buffer(&self, label: &str, bytes: &[u8]) -> Result<wgpu::Buffer> {
        self.check_binding(label, bytes.len() as u64)?;
        let mut padded;
        let contents = if bytes.len().is_multiple_of(4) && !bytes.is_empty() {
            bytes
        } else {
            padded = bytes.to_vec();
            padded.resize(bytes.len().div_ceil(4).max(1) * 4, 0);
            &padded
        };
        self.create_buffer(label, contents.len() as u64, STORAGE_USAGE, Some(contents))
    }

    /// Creates a zeroed storage buffer of at least `size` bytes.
    pub(crate) fn zeroed_buffer(&self, label: &str, size: u64) -> Result<wgpu::Buffer> {
        self.check_binding(label, size)?;
        self.create_buffer(label, size.div_ceil(4).max(1) * 4, STORAGE_USAGE, None)
    }

    pub(crate) fn uniform_buffer(&self, label: &str, bytes: &[u8]) -> Result<wgpu::Buffer> {
        self.create_buffer(
            label,
            bytes.len() as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            Some(bytes),
        )
    }

    pub(crate) fn check_binding(&self, what: &str, size: u64) -> Result<()> {
        let limit = self.max_binding_size();
        if size > limit {
            return Err(Error::TooLarge { what: format!("{what} ({size} bytes, one storage binding)"), size, limit });
        }
        Ok(())
    }

    pub(crate) fn bind_group(&self, family: &FamilyObjects, buffers: &[(u32, &wgpu::Buffer)]) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .map(|&(binding, buffer)| wgpu::BindGroupEntry { binding, resource: buffer.as_entire_binding() })
            .collect();
        self.inner.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &family.bind_group_layout,
            entries: &entries,
        })
    }
}
