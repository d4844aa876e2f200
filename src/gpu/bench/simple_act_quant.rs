//! The simple activation quantizer (`shaders/bench/simple_act_quant.wgsl`): one invocation per
//! activation row, absmax, scale, ints; timed beside the library's W8A8 activation quantizer
//! (`QuantizedLinear::time_activation_quant`) on the same activations, and checked bit for bit
//! against `reference::quantize_activations` first.

use std::sync::Arc;

use crate::gpu::bench::read_limit::{entry, layout};
use crate::gpu::bench::simple_gemv::with_common;
use crate::gpu::bench::{Timing, time_passes};
use crate::gpu::matmul::Prepared;
use crate::gpu::{Gpu, GpuTensor};
use crate::{ActivationQuant, DType, Error, Result, reference};

const SOURCE: &str = include_str!("../../../shaders/bench/simple_act_quant.wgsl");
/// Invocations per workgroup (`SIMPLE_WG` in the shader).
const WG: usize = 64;

/// What one run writes: packed ints and one scale per row.
struct Output {
    words: wgpu::Buffer,
    scales: wgpu::Buffer,
}

/// The simple per-token int8 activation quantizer, for f32, f16 and bf16 activations.
pub struct SimpleActQuant {
    gpu: Gpu,
    group_layout: wgpu::BindGroupLayout,
    /// One pipeline per activation dtype, indexed by its shader code.
    pipelines: Vec<Arc<wgpu::ComputePipeline>>,
}

impl std::fmt::Debug for SimpleActQuant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimpleActQuant").finish_non_exhaustive()
    }
}

impl SimpleActQuant {
    /// Compiles the kernel on `gpu` for each activation dtype.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let device = gpu.device();
        let ro = wgpu::BufferBindingType::Storage { read_only: true };
        let rw = wgpu::BufferBindingType::Storage { read_only: false };
        let (group_layout, pipeline_layout) = layout(gpu, "simple_act_quant.wgsl", &[(0, ro), (2, ro), (3, rw)]);
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("simple_act_quant.wgsl"),
            source: wgpu::ShaderSource::Wgsl(with_common(SOURCE).into()),
        });
        let pipelines = [DType::F32, DType::F16, DType::BF16]
            .into_iter()
            .map(|dtype| {
                let code = f64::from(dtype.shader_code());
                Arc::new(device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some("simple_act_quant"),
                    layout: Some(&pipeline_layout),
                    module: &module,
                    entry_point: Some("simple_act_quant"),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &[("IN_DT", code), ("OUT_DT", code)],
                        ..Default::default()
                    },
                    cache: None,
                }))
            })
            .collect();
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("compiling simple_act_quant.wgsl: {e}")));
        }
        Ok(Self { gpu: gpu.clone(), group_layout, pipelines })
    }

    /// The dispatch of one run over `x` (`[m, k]`) and the buffers it writes.
    fn prepare(&self, x: &GpuTensor) -> Result<(Prepared, Output)> {
        x.same_gpu(&self.gpu)?;
        let [m, k] = x.shape()[..] else {
            return Err(Error::Shape(format!("the simple activation quantizer takes [m, k], not {:?}", x.shape())));
        };
        let gpu = &self.gpu;
        let wpr = k.div_ceil(4);
        let params = [m, k, wpr, 0].map(|v| v as u32);
        let params = gpu.storage_buffer("int8-wgpu simple act quant params", bytemuck::cast_slice(&params))?;
        let out = Output {
            words: gpu.zeroed_buffer("int8-wgpu simple act quant ints", (m * wpr * 4) as u64)?,
            scales: gpu.zeroed_buffer("int8-wgpu simple act quant scales", (m * 4) as u64)?,
        };
        let group = gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("simple_act_quant.wgsl"),
            layout: &self.group_layout,
            entries: &[
                entry(0, params.as_entire_binding()),
                entry(1, out.words.as_entire_binding()),
                entry(2, x.buffer().as_entire_binding()),
                entry(3, out.scales.as_entire_binding()),
            ],
        });
        let pipeline = self.pipelines[x.dtype().shader_code() as usize].clone();
        Ok((Prepared { pipeline, groups: vec![(group, gpu.grid(m.div_ceil(WG) as u32))] }, out))
    }

    /// Times `iters` runs over `x` recorded into one pass (GPU timestamps where the device has
    /// them), as `SimpleGemv::time`.
    pub fn time(&self, x: &GpuTensor, iters: u32) -> Result<Timing> {
        let (prepared, _out) = self.prepare(x)?;
        time_passes(&self.gpu, iters, |_| {}, |pass| prepared.record(pass))
    }

    /// Runs over `x` and counts the ints and scales whose bits differ from
    /// `reference::quantize_activations` of `x` (per token, as read from the GPU): 0 passes.
    pub fn check(&self, x: &GpuTensor) -> Result<usize> {
        let (prepared, out) = self.prepare(x)?;
        let mut enc = self.gpu.device().create_command_encoder(&Default::default());
        prepared.record(&mut enc.begin_compute_pass(&Default::default()));
        self.gpu.queue().submit([enc.finish()]);
        let (m, k) = (x.shape()[0], x.shape()[1]);
        let wpr = k.div_ceil(4);
        let want = reference::quantize_activations(&x.read_f32()?, k, ActivationQuant::per_token())?;
        let words = pollster::block_on(self.gpu.read_bytes(&out.words, 0, (m * wpr * 4) as u64))?;
        let scales = pollster::block_on(self.gpu.read_bytes(&out.scales, 0, (m * 4) as u64))?;
        let ints = (0..m * k).filter(|&i| words[(i / k) * wpr * 4 + i % k] as i8 != want.values[i]).count();
        let scale_bits = scales.chunks(4).zip(&want.scales).filter(|(b, s)| b[..] != s.to_le_bytes()[..]).count();
        Ok(ints + scale_bits)
    }
}

#[cfg(test)]
mod tests {
    /// The kernel parses, validates and translates for every backend in every dtype.
    #[test]
    fn simple_act_quant_translates() {
        let src = crate::gpu::bench::simple_gemv::with_common(super::SOURCE);
        let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{}", e.emit_to_string(&src)));
        let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("simple_act_quant.wgsl: {e:?}"));
        let bindings: Vec<(u32, bool)> = (0..4).map(|b| (b, b == 1 || b == 3)).collect();
        for dtype in [crate::DType::F32, crate::DType::F16, crate::DType::BF16] {
            let code = f64::from(dtype.shader_code());
            let constants: naga::back::PipelineConstants =
                [("IN_DT".to_string(), code), ("OUT_DT".to_string(), code)].into_iter().collect();
            let n = crate::gpu::shaders::translate_for_every_backend(
                &module,
                &info,
                "simple_act_quant",
                &constants,
                Some(&bindings),
                true,
                &format!("simple_act_quant {dtype}"),
            );
            assert_eq!(n, 4, "{dtype}: SPIR-V, MSL, HLSL and GLSL");
        }
    }
}
