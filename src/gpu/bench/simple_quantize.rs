//! The simple quantizer (`shaders/bench/simple_quantize.wgsl`): one invocation per weight row,
//! absmax, scale, ints, nothing clever; timed beside the library's GPU quantization of the same
//! tensor (symmetric per channel, f32 on the GPU) so a table says whether the library's three
//! passes pay. Checked against `reference::quantize` (ints and scale bits) before it is timed.

use std::time::{Duration, Instant};

use crate::gpu::bench::read_limit::{entry, layout};
use crate::gpu::bench::simple_gemv::with_common;
use crate::gpu::{Gpu, GpuTensor};
use crate::{DType, Error, QuantScheme, Result, reference};

const SOURCE: &str = include_str!("../../../shaders/bench/simple_quantize.wgsl");
/// Invocations per workgroup (`SIMPLE_WG` in the shader).
const WG: usize = 64;

/// The shader as compiled (dtype codes, `common.wgsl`, the kernel).
fn source() -> String {
    with_common(SOURCE)
}

/// What one run left on the GPU: the packed ints and the scales.
struct Output {
    words: wgpu::Buffer,
    scales: wgpu::Buffer,
}

/// The simple symmetric per-channel quantizer of a 2-D f32 tensor on the GPU.
pub struct SimpleQuantize {
    gpu: Gpu,
    group_layout: wgpu::BindGroupLayout,
    pipeline: wgpu::ComputePipeline,
}

impl std::fmt::Debug for SimpleQuantize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimpleQuantize").finish_non_exhaustive()
    }
}

impl SimpleQuantize {
    /// Compiles the kernel on `gpu`.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let device = gpu.device();
        let ro = wgpu::BufferBindingType::Storage { read_only: true };
        let rw = wgpu::BufferBindingType::Storage { read_only: false };
        let (group_layout, pipeline_layout) = layout(gpu, "simple_quantize.wgsl", &[(0, ro), (2, ro), (3, rw)]);
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("simple_quantize.wgsl"),
            source: wgpu::ShaderSource::Wgsl(source().into()),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("simple_quantize"),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some("simple_quantize"),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &[
                    ("IN_DT", f64::from(DType::F32.shader_code())),
                    ("OUT_DT", f64::from(DType::F32.shader_code())),
                ],
                ..Default::default()
            },
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("compiling simple_quantize.wgsl: {e}")));
        }
        Ok(Self { gpu: gpu.clone(), group_layout, pipeline })
    }

    /// Quantizes `x` (2-D, f32, on this device) and waits for it, as the library's
    /// `Gpu::quantize_tensor` does: new output buffers, one submission, a small readback.
    fn run(&self, x: &GpuTensor) -> Result<Output> {
        x.same_gpu(&self.gpu)?;
        let [rows, cols] = x.shape()[..] else {
            return Err(Error::Shape(format!("the simple quantizer takes a 2-D tensor, not {:?}", x.shape())));
        };
        if x.dtype() != DType::F32 {
            return Err(Error::Unsupported(format!("the simple quantizer reads f32, not {}", x.dtype())));
        }
        let gpu = &self.gpu;
        let wpr = cols.div_ceil(4);
        let params = [rows, cols, wpr, 0].map(|v| v as u32);
        let params = gpu.storage_buffer("int8-wgpu simple quantize params", bytemuck::cast_slice(&params))?;
        let words = gpu.zeroed_buffer("int8-wgpu simple quantize ints", (rows * wpr * 4) as u64)?;
        let scales = gpu.zeroed_buffer("int8-wgpu simple quantize scales", (rows * 4) as u64)?;
        let group = gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("simple_quantize.wgsl"),
            layout: &self.group_layout,
            entries: &[
                entry(0, params.as_entire_binding()),
                entry(1, words.as_entire_binding()),
                entry(2, x.buffer().as_entire_binding()),
                entry(3, scales.as_entire_binding()),
            ],
        });
        let mut enc = gpu.device().create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &group, &[]);
            let (gx, gy) = gpu.grid(rows.div_ceil(WG) as u32);
            pass.dispatch_workgroups(gx, gy, 1);
        }
        gpu.queue().submit([enc.finish()]);
        // Waits as the library's flag readback does.
        pollster::block_on(gpu.read_bytes(&scales, 0, 4))?;
        Ok(Output { words, scales })
    }

    /// Wall time per quantization of `x` over `iters` runs (each a submission and a wait).
    pub fn time(&self, x: &GpuTensor, iters: u32) -> Result<Duration> {
        let start = Instant::now();
        for _ in 0..iters.max(1) {
            self.run(x)?;
        }
        Ok(start.elapsed() / iters.max(1))
    }

    /// Quantizes `x` and counts the ints and scales whose bits differ from
    /// `reference::quantize` of `xs` (the host copy of `x`) symmetric per channel: 0 passes.
    pub fn check(&self, x: &GpuTensor, xs: &[f32]) -> Result<usize> {
        let out = self.run(x)?;
        let want = reference::quantize(xs, x.shape(), QuantScheme::default())?;
        let (rows, cols) = (x.shape()[0], x.shape()[1]);
        let wpr = cols.div_ceil(4);
        let words = pollster::block_on(self.gpu.read_bytes(&out.words, 0, (rows * wpr * 4) as u64))?;
        let scales = pollster::block_on(self.gpu.read_bytes(&out.scales, 0, (rows * 4) as u64))?;
        let ints =
            (0..rows * cols).filter(|&i| words[(i / cols) * wpr * 4 + i % cols] as i8 != want.values()[i]).count();
        let scale_bits = scales.chunks(4).zip(want.scales()).filter(|(b, s)| b[..] != s.to_le_bytes()[..]).count();
        Ok(ints + scale_bits)
    }
}

#[cfg(test)]
mod tests {
    /// The kernel parses, validates and translates for every backend, on any machine.
    #[test]
    fn simple_quantize_translates() {
        let src = super::source();
        let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{}", e.emit_to_string(&src)));
        let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("simple_quantize.wgsl: {e:?}"));
        let bindings: Vec<(u32, bool)> = (0..4).map(|b| (b, b == 1 || b == 3)).collect();
        let constants: naga::back::PipelineConstants =
            [("IN_DT".to_string(), 0.0), ("OUT_DT".to_string(), 0.0)].into_iter().collect();
        let n = crate::gpu::shaders::translate_for_every_backend(
            &module,
            &info,
            "simple_quantize",
            &constants,
            Some(&bindings),
            true,
            "simple_quantize",
        );
        assert_eq!(n, 4, "SPIR-V, MSL, HLSL and GLSL");
    }
}
