//! Host side of `act_quant.wgsl`: int8 activations on the GPU (LLM.int8()'s outlier columns, then
//! per-row scales and packed int8 values), bit-identical to
//! [`reference::quantize_activations`](crate::reference::quantize_activations).

use std::sync::Arc;

use crate::gpu::bindings::slot;
use crate::gpu::cache::{Bindable, FamilyObjects};
use crate::gpu::family::Family;
use crate::gpu::linear::facts::DeviceFacts;
use crate::gpu::linear::heuristic::act_quant_per_row;
use crate::gpu::params::{self, ActQuantParams, META_COUNT, META_LIST, meta_scale_at, meta_words};
use crate::gpu::shaders::{Kernel, Variant};
use crate::gpu::{Gpu, GpuTensor};
use crate::quantized::unpack_rows;
use crate::{ActivationQuant, DType, Error, QuantizedActivations, Result};

/// The activation quantizer for `m` rows of `k` columns, with its parameters uploaded and its
/// results' buffers allocated: made once per (layer, rows), so a forward creates nothing.
pub(crate) struct ActQuantPlan {
    family: Arc<FamilyObjects>,
    /// Pipelines and grids in recording order: outlier flags and their ordered list
    /// (LLM.int8() only), then per-row quantization.
    passes: Vec<(Arc<wgpu::ComputePipeline>, (u32, u32))>,
    params: wgpu::Buffer,
    /// Packed int8 activations, `[m, ceil(k / 4)]` words (the int8 linear's `qx`).
    pub(crate) qx: wgpu::Buffer,
    /// Outlier count and list, flags and scales (layout at `params::META_COUNT`).
    pub(crate) act: wgpu::Buffer,
    m: usize,
    k: usize,
}

impl ActQuantPlan {
    /// Compiles the passes `act` needs for activations of `dtype` and allocates their outputs.
    pub(crate) fn new(gpu: &Gpu, m: usize, k: usize, dtype: DType, act: ActivationQuant) -> Result<Self> {
        if m == 0 || k == 0 {
            return Err(Error::Empty("activation".into()));
        }
        let words_per_row = k.div_ceil(4);
        let too_large =
            |what: &str, n: usize| Error::TooLarge { what: what.into(), size: n as u64, limit: u64::from(u32::MAX) };
        // The kernels index in u32.
        let qx_words = m.checked_mul(words_per_row).filter(|&w| w < u32::MAX as usize);
        let qx_words = qx_words.ok_or_else(|| too_large("int8 activation words", m.saturating_mul(words_per_row)))?;
        let meta = meta_words(m, k);
        if meta >= u32::MAX as usize {
            return Err(too_large("int8 activation metadata words", meta));
        }
        let p = ActQuantParams {
            m: m as u32,
            k: k as u32,
            words_per_row: words_per_row as u32,
            threshold: act.outlier_threshold().map_or(0, f32::to_bits),
            has_threshold: u32::from(act.outlier_threshold().is_some()),
            ..Default::default()
        };
        let v = Variant::new(dtype, DType::F32);
        let mut passes = Vec::with_capacity(3);
        if act.outlier_threshold().is_some() {
            passes.push((gpu.pipeline(Kernel::ActFlags, v)?, gpu.grid(k.div_ceil(params::WG) as u32)));
            passes.push((gpu.pipeline(Kernel::ActList, v)?, (1, 1)));
        }
        if act_quant_per_row(&DeviceFacts::of(gpu), k) {
            passes.push((gpu.pipeline(Kernel::ActQuantRows, v)?, gpu.grid(m.div_ceil(params::WG) as u32)));
        } else {
            passes.push((gpu.pipeline(Kernel::ActQuant, v)?, gpu.grid(m as u32)));
        }
        Ok(Self {
            family: gpu.family(Family::ActQuant)?,
            passes,
            params: gpu.storage_buffer("int8-wgpu activation quantize params", bytemuck::bytes_of(&p))?,
            qx: gpu.zeroed_buffer("int8-wgpu int8 activations", 4 * qx_words as u64)?,
            act: gpu.zeroed_buffer("int8-wgpu activation scales and outliers", 4 * meta as u64)?,
            m,
            k,
        })
    }

    /// The bind group reading activations from `x`.
    pub(crate) fn bind(&self, gpu: &Gpu, x: &dyn Bindable) -> wgpu::BindGroup {
        gpu.bind_group(
            &self.family,
            &[(slot::PARAMS, &self.params), (slot::OUT, &self.qx), (slot::AQ_X, x), (slot::AQ_META, &self.act)],
        )
    }

    /// Records the passes: outlier flags and list (LLM.int8() only), then per-row quantization.
    pub(crate) fn record(&self, pass: &mut wgpu::ComputePass<'_>, group: &wgpu::BindGroup) {
        pass.set_bind_group(0, group, &[]);
        for (pipeline, (gx, gy)) in &self.passes {
            pass.set_pipeline(pipeline);
            pass.dispatch_workgroups(*gx, *gy, 1);
        }
    }
}

/// Reads the ordered outlier columns from an `act` buffer of `k` columns (waits for the GPU).
pub(crate) async fn read_outlier_columns(gpu: &Gpu, act: &wgpu::Buffer, k: usize) -> Result<Vec<usize>> {
    let count = words(&gpu.read_bytes(act, 4 * META_COUNT as u64, 4).await?)[0] as usize;
    if count > k {
        return Err(Error::Gpu(format!("the GPU reported {count} outlier columns of {k}")));
    }
    if count == 0 {
        return Ok(Vec::new());
    }
    let list = gpu.read_bytes(act, 4 * META_LIST as u64, 4 * count as u64).await?;
    Ok(words(&list).into_iter().map(|c| c as usize).collect())
}

fn words(bytes: &[u8]) -> Vec<u32> {
    bytemuck::pod_collect_to_vec(bytes)
}

impl Gpu {
    /// Quantizes activations `x` (`[..., k]`) to int8 per row, as an int8-activation
    /// [`QuantizedLinear`](crate::QuantizedLinear) does before its matmul, and reads the result
    /// back: int8 values, scale bits and outlier columns equal
    /// [`reference::quantize_activations`](crate::reference::quantize_activations).
    ///
    /// Device-resident values are not checked: NaN or infinite activations give unspecified
    /// (but memory-safe) results, where the CPU reference returns an [`Error::NonFinite`].
    pub fn quantize_activations(&self, x: &GpuTensor, act: ActivationQuant) -> Result<QuantizedActivations> {
        self.block_on(self.quantize_activations_async(x, act))
    }

    /// Async form of [`Gpu::quantize_activations`].
    pub async fn quantize_activations_async(
        &self,
        x: &GpuTensor,
        act: ActivationQuant,
    ) -> Result<QuantizedActivations> {
        x.same_gpu(self, "input")?;
        let k = *x.shape().last().ok_or_else(|| Error::Shape("activations need at least one axis".into()))?;
        if k == 0 || x.numel() == 0 {
            return Err(Error::Empty("activation".into()));
        }
        let m = x.numel() / k;
        let plan = ActQuantPlan::new(self, m, k, x.dtype(), act)?;
        let group = plan.bind(self, x);
        let mut enc = self.device().create_command_encoder(&Default::default());
        plan.record(&mut enc.begin_compute_pass(&Default::default()), &group);
        self.queue().submit([enc.finish()]);
        let qx = words(&self.read_bytes(&plan.qx, 0, plan.qx.size()).await?);
        let outlier_columns = read_outlier_columns(self, &plan.act, k).await?;
        let scales = self.read_bytes(&plan.act, 4 * meta_scale_at(k, 0) as u64, 4 * m as u64).await?;
        Ok(QuantizedActivations {
            shape: [plan.m, plan.k],
            values: unpack_rows(&qx[..m * k.div_ceil(4)], m, k),
            scales: bytemuck::pod_collect_to_vec(&scales),
            outlier_columns,
        })
    }
}
