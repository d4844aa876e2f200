//! What the yardsticks share, in raw wgpu on the library's device (`Gpu::device`,
//! `Gpu::queue`): buffers, bind group layouts, recorded dispatches, readback and timing.

use std::sync::Arc;

use int8_wgpu::gpu::Timing;
use int8_wgpu::{DType, Error, Gpu, Result};
use wgpu::util::DeviceExt;

/// Usage of the yardsticks' storage buffers.
const STORAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

/// A pipeline and its dispatches (a bind group and workgroup grid each), ready to record.
pub(crate) struct Dispatches {
    pub(crate) pipeline: Arc<wgpu::ComputePipeline>,
    pub(crate) groups: Vec<(wgpu::BindGroup, (u32, u32))>,
}

impl Dispatches {
    /// Records every dispatch into `pass`.
    pub(crate) fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        for (g, (gx, gy)) in &self.groups {
            pass.set_bind_group(0, g, &[]);
            pass.dispatch_workgroups(*gx, *gy, 1);
        }
    }

    /// Records the dispatches into one pass and submits it.
    pub(crate) fn run(&self, gpu: &Gpu) {
        let mut enc = gpu.device().create_command_encoder(&Default::default());
        self.record(&mut enc.begin_compute_pass(&Default::default()));
        gpu.queue().submit([enc.finish()]);
    }

    /// Times `iters` runs recorded into one pass ([`Gpu::time_pass`]).
    pub(crate) fn time(&self, gpu: &Gpu, iters: u32) -> Result<Timing> {
        gpu.time_pass(iters, |pass| {
            self.record(pass);
            Ok(())
        })
    }
}

/// A buffer holding `bytes` (padded to a multiple of 4) with `usage`, within the device's
/// binding limit.
pub(crate) fn buffer(gpu: &Gpu, label: &str, bytes: &[u8], usage: wgpu::BufferUsages) -> Result<wgpu::Buffer> {
    let mut contents = bytes.to_vec();
    contents.resize(bytes.len().div_ceil(4).max(1) * 4, 0);
    if contents.len() as u64 > gpu.max_binding_size() {
        return Err(Error::TooLarge { what: label.into(), size: contents.len() as u64, limit: gpu.max_binding_size() });
    }
    Ok(gpu.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: &contents,
        usage,
    }))
}

/// A storage buffer holding `bytes`.
pub(crate) fn storage(gpu: &Gpu, label: &str, bytes: &[u8]) -> Result<wgpu::Buffer> {
    buffer(gpu, label, bytes, STORAGE)
}

/// A zeroed storage buffer of at least `size` bytes.
pub(crate) fn zeroed(gpu: &Gpu, label: &str, size: u64) -> Result<wgpu::Buffer> {
    storage(gpu, label, &vec![0; size as usize])
}

/// The workgroup grid of `groups` workgroups: `(x, y)` within the per-dimension limit.
pub(crate) fn grid(gpu: &Gpu, groups: u32) -> (u32, u32) {
    let max = gpu.limits().max_compute_workgroups_per_dimension.max(1);
    if groups <= max { (groups.max(1), 1) } else { (max, groups.div_ceil(max)) }
}

/// `size` bytes of `buffer` from its start, copied back to the host.
pub(crate) fn read_bytes(gpu: &Gpu, buffer: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
    let staging = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("int8-wgpu-bench readback"),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = gpu.device().create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(buffer, 0, &staging, 0, size);
    gpu.queue().submit([enc.finish()]);
    let (tx, rx) = std::sync::mpsc::channel();
    staging.map_async(wgpu::MapMode::Read, .., move |r| {
        let _ = tx.send(r);
    });
    gpu.synchronize()?;
    rx.recv()
        .map_err(|_| Error::Gpu("the readback mapping was dropped".into()))?
        .map_err(|e| Error::Gpu(format!("mapping a readback buffer: {e}")))?;
    let bytes = staging.get_mapped_range(..).map_err(|e| Error::Gpu(format!("reading a mapped buffer: {e}")))?.to_vec();
    staging.unmap();
    Ok(bytes)
}

pub(crate) fn entry(binding: u32, resource: wgpu::BindingResource<'_>) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry { binding, resource }
}

/// A bind group layout with a read-write storage buffer at binding 1 (the sink, or the simple
/// kernel's output) and `extra` bindings, and its pipeline layout, both labelled `label`.
pub(crate) fn layout(
    gpu: &Gpu,
    label: &str,
    extra: &[(u32, wgpu::BufferBindingType)],
) -> (wgpu::BindGroupLayout, wgpu::PipelineLayout) {
    let device = gpu.device();
    let entries: Vec<_> = std::iter::once((1, wgpu::BufferBindingType::Storage { read_only: false }))
        .chain(extra.iter().copied())
        .map(|(binding, ty)| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer { ty, has_dynamic_offset: false, min_binding_size: None },
            count: None,
        })
        .collect();
    let group =
        device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(label), entries: &entries });
    let pipeline = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(label),
        bind_group_layouts: &[Some(&group)],
        immediate_size: 0,
    });
    (group, pipeline)
}

/// A shader module compiled from `source`, with compilation errors as [`Error::Gpu`].
pub(crate) fn module(gpu: &Gpu, label: &str, source: &str) -> Result<wgpu::ShaderModule> {
    let scope = gpu.device().push_error_scope(wgpu::ErrorFilter::Validation);
    let module = gpu.device().create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    match pollster::block_on(scope.pop()) {
        Some(e) => Err(Error::Gpu(format!("compiling {label}: {e}"))),
        None => Ok(module),
    }
}

/// The pipeline of `entry_point` in `module` with override `constants`, compiled as the library
/// compiles its kernels (no zero-filling of workgroup memory, which every kernel writes first).
pub(crate) fn pipeline(
    gpu: &Gpu,
    layout: &wgpu::PipelineLayout,
    module: &wgpu::ShaderModule,
    entry_point: &str,
    constants: &[(&str, f64)],
) -> Result<Arc<wgpu::ComputePipeline>> {
    let scope = gpu.device().push_error_scope(wgpu::ErrorFilter::Validation);
    let pipeline = gpu.device().create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry_point),
        layout: Some(layout),
        module,
        entry_point: Some(entry_point),
        compilation_options: wgpu::PipelineCompilationOptions { constants, zero_initialize_workgroup_memory: false },
        cache: None,
    });
    match pollster::block_on(scope.pop()) {
        Some(e) => Err(Error::Gpu(format!("compiling {entry_point}: {e}"))),
        None => Ok(Arc::new(pipeline)),
    }
}

/// The code `common.wgsl` gives `dtype` (`DT_F32`, `DT_F16`, `DT_BF16`).
pub(crate) fn shader_code(dtype: DType) -> u32 {
    match dtype {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::BF16 => 2,
    }
}
