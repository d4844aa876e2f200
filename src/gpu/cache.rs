//! Compiled shader families and pipelines, created once per device and variant; bind groups.
//! The device's handle reaches them through `pipelines.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::gpu::bindings;
use crate::gpu::family::Family;
use crate::gpu::scopes::ErrorScopes;
use crate::gpu::shaders::{Kernel, Variant};
use crate::{Error, Result};

/// The shader module and layouts of one kernel family.
pub(crate) struct FamilyObjects {
    module: wgpu::ShaderModule,
    pub(crate) bind_group_layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
}

/// Per device: each family's module and layouts, each (kernel, variant)'s pipeline.
#[derive(Default)]
pub(crate) struct PipelineCache {
    families: Mutex<HashMap<Family, Arc<FamilyObjects>>>,
    pipelines: Mutex<HashMap<(Kernel, Variant), Arc<wgpu::ComputePipeline>>>,
}

impl PipelineCache {
    /// `family`'s module and layouts on `device`, compiled once and cached.
    pub(crate) fn family(
        &self,
        device: &wgpu::Device,
        scopes: &ErrorScopes,
        family: Family,
    ) -> Result<Arc<FamilyObjects>> {
        let mut map = self.families.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = map.get(&family) {
            return Ok(f.clone());
        }
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(family.name()),
            source: wgpu::ShaderSource::Wgsl(family.source().into()),
        };
        let module = device.create_shader_module(desc);
        let entries = bindings::layout_entries(family);
        let bind_group_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(family.name()),
            entries: &entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(family.name()),
            bind_group_layouts: &[Some(&bind_group_layout)],
            immediate_size: 0,
        });
        let name = family.name();
        scopes.check(scope, move |e| Error::Gpu(format!("compiling shader family {name}: {e}")))?;
        let objects = Arc::new(FamilyObjects { module, bind_group_layout, pipeline_layout });
        map.insert(family, objects.clone());
        Ok(objects)
    }

    /// The compiled pipeline of `kernel` in `variant`, compiled once and cached.
    pub(crate) fn pipeline(
        &self,
        device: &wgpu::Device,
        scopes: &ErrorScopes,
        kernel: Kernel,
        variant: Variant,
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        let key = (kernel, variant);
        if let Some(p) = self.pipelines.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(p.clone());
        }
        let fam = self.family(device, scopes, kernel.family(variant))?;
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
        let entry = kernel.entry();
        scopes.check(scope, move |e| Error::Gpu(format!("compiling kernel {entry} {variant:?}: {e}")))?;
        let pipeline = Arc::new(pipeline);
        self.pipelines.lock().unwrap_or_else(|p| p.into_inner()).insert(key, pipeline.clone());
        Ok(pipeline)
    }
}

/// A bind group in `family`'s layout binding each slot to a whole buffer or a tensor's range.
pub(crate) fn bind_group(
    device: &wgpu::Device,
    family: &FamilyObjects,
    buffers: &[(u32, &dyn Bindable)],
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .map(|&(binding, b)| wgpu::BindGroupEntry { binding, resource: wgpu::BindingResource::Buffer(b.bind()) })
        .collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &family.bind_group_layout,
        entries: &entries,
    })
}

/// What a kernel binds at a slot: a whole buffer (weights, parameters, scratch), or the range of
/// one a tensor occupies ([`GpuTensor::binding`](crate::GpuTensor::binding)).
pub(crate) trait Bindable {
    /// The range bound.
    fn bind(&self) -> wgpu::BufferBinding<'_>;
}

impl Bindable for wgpu::Buffer {
    fn bind(&self) -> wgpu::BufferBinding<'_> {
        self.as_entire_buffer_binding()
    }
}
