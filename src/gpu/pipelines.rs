//! The device handle's compiled shader families, pipelines and bind groups (kept in
//! `cache.rs`), counted for [`Gpu::resource_counts`].

use std::sync::Arc;

use crate::Result;
use crate::gpu::Gpu;
use crate::gpu::cache::{Bindable, FamilyObjects, bind_group};
use crate::gpu::family::Family;
use crate::gpu::shaders::{Kernel, Variant};

impl Gpu {
    /// `family`'s module and layouts, compiled once per device.
    pub(crate) fn family(&self, family: Family) -> Result<Arc<FamilyObjects>> {
        self.cache().family(self.device(), self.scopes(), family)
    }

    /// The compiled pipeline of `kernel` in `variant`, compiled once per device.
    pub(crate) fn pipeline(&self, kernel: Kernel, variant: Variant) -> Result<Arc<wgpu::ComputePipeline>> {
        self.cache().pipeline(self.device(), self.scopes(), kernel, variant)
    }

    /// A bind group in `family`'s layout binding each slot to a whole buffer or a tensor's range.
    pub(crate) fn bind_group(&self, family: &FamilyObjects, buffers: &[(u32, &dyn Bindable)]) -> wgpu::BindGroup {
        self.count_created(true);
        bind_group(self.device(), family, buffers)
    }
}
