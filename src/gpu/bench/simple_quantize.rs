//! The simple quantizer (`shaders/bench/simple_quantize.wgsl`): one invocation per row, absmax,
//! scale, ints, nothing clever. It is the yardstick of two library kernels that do this job per
//! row: GPU quantization of a weight symmetric per channel (timed as `Gpu::quantize_tensor` is,
//! [`SimpleQuantize::time`]) and W8A8's per-token activation quantizer (timed as
//! `QuantizedLinear::time_activation_quant` is, [`SimpleQuantize::time_kernel`]). Checked against
//! `reference::quantize` (ints and scale bits) before it is timed; per-token activations follow
//! the same rules (`reference::quantize_activations`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::gpu::bench::read_limit::{entry, layout};
use crate::gpu::bench::simple_gemv::with_common;
use crate::gpu::bench::{Timing, time_passes};
use crate::gpu::linear::Prepared;
use crate::gpu::{Gpu, GpuTensor};
use crate::{DType, Error, QuantScheme, Result, reference};

const SOURCE: &str = include_str!("../../../shaders/bench/simple_quantize.wgsl");
/// Invocations per workgroup (`SIMPLE_WG` in the shader).
const WG: usize = 64;

/// What one run writes: packed ints and one scale per row.
struct Output {
    words: wgpu::Buffer,
    scales: wgpu::Buffer,
}

/// The simple symmetric per-row quantizer of a 2-D f32, f16 or bf16 tensor on the GPU.
pub struct SimpleQuantize {
    gpu: Gpu,
    group_layout: wgpu::BindGroupLayout,
    /// One pipeline per input dtype, indexed by its shader code.
    pipelines: Vec<Arc<wgpu::ComputePipeline>>,
}

impl std::fmt::Debug for SimpleQuantize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimpleQuantize").finish_non_exhaustive()
    }
}

impl SimpleQuantize {
    /// Compiles the kernel on `gpu` for each input dtype.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let device = gpu.device();
        let ro = wgpu::BufferBindingType::Storage { read_only: true };
        let rw = wgpu::BufferBindingType::Storage { read_only: false };
        let (group_layout, pipeline_layout) = layout(gpu, "simple_quantize.wgsl", &[(0, ro), (2, ro), (3, rw)]);
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("simple_quantize.wgsl"),
            source: wgpu::ShaderSource::Wgsl(with_common(SOURCE).into()),
        });
        let pipelines = [DType::F32, DType::F16, DType::BF16]
            .into_iter()
            .map(|dtype| {
                let code = f64::from(dtype.shader_code());
                Arc::new(device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some("simple_quantize"),
                    layout: Some(&pipeline_layout),
                    module: &module,
                    entry_point: Some("simple_quantize"),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &[("IN_DT", code), ("OUT_DT", code)],
                        ..Default::default()
                    },
                    cache: None,
                }))
            })
            .collect();
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("compiling simple_quantize.wgsl: {e}")));
        }
        Ok(Self { gpu: gpu.clone(), group_layout, pipelines })
    }

    /// The dispatch of one run over `x` (`[rows, cols]`) and the new buffers it writes.
    fn prepare(&self, x: &GpuTensor) -> Result<(Prepared, Output)> {
        x.same_gpu(&self.gpu, "input")?;
        let [m, k] = x.shape()[..] else {
            return Err(Error::Shape(format!("the simple quantizer takes a 2-D tensor, not {:?}", x.shape())));
        };
        let gpu = &self.gpu;
        let wpr = k.div_ceil(4);
        let params = [m, k, wpr, 0].map(|v| v as u32);
        let params = gpu.storage_buffer("int8-wgpu simple quantize params", bytemuck::cast_slice(&params))?;
        let out = Output {
            words: gpu.zeroed_buffer("int8-wgpu simple quantize ints", (m * wpr * 4) as u64)?,
            scales: gpu.zeroed_buffer("int8-wgpu simple quantize scales", (m * 4) as u64)?,
        };
        let group = gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("simple_quantize.wgsl"),
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

    /// Quantizes `x` and waits for it, as `Gpu::quantize_tensor` does: new output buffers, one
    /// submission, a small readback.
    fn run(&self, x: &GpuTensor) -> Result<Output> {
        let (prepared, out) = self.prepare(x)?;
        let mut enc = self.gpu.device().create_command_encoder(&Default::default());
        prepared.record(&mut enc.begin_compute_pass(&Default::default()));
        self.gpu.queue().submit([enc.finish()]);
        pollster::block_on(self.gpu.read_bytes(&out.scales, 0, 4))?;
        Ok(out)
    }

    /// Wall time per quantization of `x` over `iters` runs, each with its own buffers, a
    /// submission and a wait (the job `Gpu::quantize_tensor` does).
    pub fn time(&self, x: &GpuTensor, iters: u32) -> Result<Duration> {
        let start = Instant::now();
        for _ in 0..iters.max(1) {
            self.run(x)?;
        }
        Ok(start.elapsed() / iters.max(1))
    }

    /// Times `iters` runs over `x` recorded into one pass (GPU timestamps where the device has
    /// them): the kernel alone, as the activation quantizer of a forward is timed.
    pub fn time_kernel(&self, x: &GpuTensor, iters: u32) -> Result<Timing> {
        let (prepared, _out) = self.prepare(x)?;
        time_passes(&self.gpu, iters, |_| {}, |pass| prepared.record(pass))
    }

    /// Quantizes `x` and counts the ints and scales whose bits differ from `reference::quantize`
    /// of `x` (as read from the GPU) symmetric per channel: 0 passes.
    pub fn check(&self, x: &GpuTensor) -> Result<usize> {
        let out = self.run(x)?;
        let (m, k) = (x.shape()[0], x.shape()[1]);
        let want = reference::quantize(&x.read_f32()?, x.shape(), QuantScheme::default())?;
        let wpr = k.div_ceil(4);
        let words = pollster::block_on(self.gpu.read_bytes(&out.words, 0, (m * wpr * 4) as u64))?;
        let scales = pollster::block_on(self.gpu.read_bytes(&out.scales, 0, (m * 4) as u64))?;
        let ints = (0..m * k).filter(|&i| words[(i / k) * wpr * 4 + i % k] as i8 != want.values()[i]).count();
        let scale_bits = scales.chunks(4).zip(want.scales()).filter(|(b, s)| b[..] != s.to_le_bytes()[..]).count();
        Ok(ints + scale_bits)
    }
}

#[cfg(test)]
mod tests {
    /// The kernel parses, validates and translates for every backend in every dtype.
    #[test]
    fn simple_quantize_translates() {
        let src = crate::gpu::bench::simple_gemv::with_common(super::SOURCE);
        let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{}", e.emit_to_string(&src)));
        let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("simple_quantize.wgsl: {e:?}"));
        let bindings: Vec<(u32, bool)> = (0..4).map(|b| (b, b == 1 || b == 3)).collect();
        for dtype in [crate::DType::F32, crate::DType::F16, crate::DType::BF16] {
            let code = f64::from(dtype.shader_code());
            let constants: naga::back::PipelineConstants =
                [("IN_DT".to_string(), code), ("OUT_DT".to_string(), code)].into_iter().collect();
            let n = crate::gpu::shaders::translate_for_every_backend(
                &module,
                &info,
                "simple_quantize",
                &constants,
                Some(&bindings),
                true,
                &format!("simple_quantize {dtype}"),
            );
            assert_eq!(n, 4, "{dtype}: SPIR-V, MSL, HLSL and GLSL");
        }
    }
}
