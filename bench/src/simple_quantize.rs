//! The simple quantizer (`bench/shaders/simple_quantize.wgsl`): one invocation per row, absmax,
//! scale, ints, nothing clever. It is the yardstick of two library kernels that do this job per
//! row: GPU quantization of a weight symmetric per channel (timed as `Gpu::quantize_tensor` is,
//! [`SimpleQuantize::time`]) and W8A8's per-token activation quantizer (timed as
//! [`ForwardStage::QuantizeActivations`] is, [`SimpleQuantize::time_kernel`]). Checked against
//! `reference::quantize` (ints and scale bits) before it is timed; per-token activations follow
//! the same rules (`reference::quantize_activations`).

use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg(doc)]
use int8_wgpu::ForwardStage;
use int8_wgpu::gpu::Timing;
use int8_wgpu::{DType, Error, Gpu, GpuTensor, QuantScheme, Result, reference};

use crate::simple_gemv::{constants, with_common};
use crate::wgpu_util::{Dispatches, entry, grid, layout, module, pipeline, read_bytes, shader_code, storage, zeroed};

const SOURCE: &str = include_str!("../shaders/simple_quantize.wgsl");
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
        let ro = wgpu::BufferBindingType::Storage { read_only: true };
        let rw = wgpu::BufferBindingType::Storage { read_only: false };
        let (group_layout, pipeline_layout) = layout(gpu, "simple_quantize.wgsl", &[(0, ro), (2, ro), (3, rw)]);
        let module = module(gpu, "simple_quantize.wgsl", &with_common(SOURCE))?;
        let pipelines = [DType::F32, DType::F16, DType::BF16]
            .into_iter()
            .map(|dtype| pipeline(gpu, &pipeline_layout, &module, "simple_quantize", &constants(dtype)))
            .collect::<Result<_>>()?;
        Ok(Self { gpu: gpu.clone(), group_layout, pipelines })
    }

    /// The dispatch of one run over `x` (`[rows, cols]`) and the new buffers it writes.
    fn prepare(&self, x: &GpuTensor) -> Result<(Dispatches, Output)> {
        if !x.gpu().same_device(&self.gpu) {
            return Err(Error::WrongDevice("the simple quantizer's input is on another device".into()));
        }
        let [m, k] = x.shape()[..] else {
            return Err(Error::Shape(format!("the simple quantizer takes a 2-D tensor, not {:?}", x.shape())));
        };
        let gpu = &self.gpu;
        let wpr = k.div_ceil(4);
        let params = [m, k, wpr, 0].map(|v| v as u32);
        let params = storage(gpu, "int8-wgpu simple quantize params", bytemuck::cast_slice(&params))?;
        let out = Output {
            words: zeroed(gpu, "int8-wgpu simple quantize ints", (m * wpr * 4) as u64)?,
            scales: zeroed(gpu, "int8-wgpu simple quantize scales", (m * 4) as u64)?,
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
        let pipeline = self.pipelines[shader_code(x.dtype()) as usize].clone();
        Ok((Dispatches { pipeline, groups: vec![(group, grid(gpu, m.div_ceil(WG) as u32))] }, out))
    }

    /// Quantizes `x` and waits for it, as `Gpu::quantize_tensor` does: new output buffers, one
    /// submission, a small readback.
    fn run(&self, x: &GpuTensor) -> Result<Output> {
        let (prepared, out) = self.prepare(x)?;
        prepared.run(&self.gpu);
        read_bytes(&self.gpu, &out.scales, 4)?;
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
        prepared.time(&self.gpu, iters)
    }

    /// Quantizes `x` and counts the ints and scales whose bits differ from `reference::quantize`
    /// of `x` (as read from the GPU) symmetric per channel: 0 passes.
    pub fn check(&self, x: &GpuTensor) -> Result<usize> {
        let out = self.run(x)?;
        let (m, k) = (x.shape()[0], x.shape()[1]);
        let want = reference::quantize(&x.read_f32()?, x.shape(), QuantScheme::default())?;
        let wpr = k.div_ceil(4);
        let words = read_bytes(&self.gpu, &out.words, (m * wpr * 4) as u64)?;
        let scales = read_bytes(&self.gpu, &out.scales, (m * 4) as u64)?;
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
        let src = crate::simple_gemv::with_common(super::SOURCE);
        let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{}", e.emit_to_string(&src)));
        let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("simple_quantize.wgsl: {e:?}"));
        let bindings: Vec<(u32, bool)> = (0..4).map(|b| (b, b == 1 || b == 3)).collect();
        for dtype in [int8_wgpu::DType::F32, int8_wgpu::DType::F16, int8_wgpu::DType::BF16] {
            let code = f64::from(crate::wgpu_util::shader_code(dtype));
            let constants: naga::back::PipelineConstants =
                [("IN_DT".to_string(), code), ("OUT_DT".to_string(), code)].into_iter().collect();
            let n = crate::translate::translate_for_every_backend(
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
