//! The simple kernel of issue 12 with int8 activations (`bench/shaders/simple_gemv_a8.wgsl`):
//! 4 weight rows per invocation, u32 loads, `dot4I8Packed`, i32 accumulators, nothing clever;
//! timed beside the library's W8A8 matmul ([`ForwardStage::Matmul`]) on the same
//! quantized activations, so a table says whether the library's int8 GEMVs pay. It takes the
//! activations already quantized: the activation quantizer is part of the library's whole
//! forward, not of this job.

use std::sync::Arc;

#[cfg(doc)]
use int8_wgpu::ForwardStage;
use int8_wgpu::gpu::Timing;
use int8_wgpu::{ActivationQuant, DType, Error, Gpu, GpuTensor, QuantizedTensor, Result, reference};

use crate::simple_gemv::{PASS, SimpleWeight};
use crate::wgpu_util::{Dispatches, entry, grid, layout, module, pipeline, storage};

const SOURCE: &str = include_str!("../shaders/simple_gemv_a8.wgsl");
/// Invocations per workgroup (`SIMPLE_WG` in the shader).
const WG: usize = 64;
/// Weight rows per invocation.
const ROWS: usize = 4;

/// Per-row int8 activations on the GPU as the simple kernel reads them: packed words and one
/// f32 scale per row.
#[derive(Debug)]
pub struct SimpleA8Input {
    qx: wgpu::Buffer,
    sx: wgpu::Buffer,
    m: usize,
}

/// The simple int8 GEMV over a symmetric per-channel int8 weight:
/// `y[m, r] = (s_x[m] · Σ_c q_x[m, c] q[r, c]) · s[r]` in f32.
pub struct SimpleGemvA8 {
    weight: SimpleWeight,
    n: usize,
    k: usize,
    group_layout: wgpu::BindGroupLayout,
    pipeline: Arc<wgpu::ComputePipeline>,
}

impl std::fmt::Debug for SimpleGemvA8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimpleGemvA8").field("n", &self.n).field("k", &self.k).finish()
    }
}

impl SimpleGemvA8 {
    /// Uploads a 2-D weight `[out, in]` quantized symmetrically per output channel, `in` a
    /// multiple of 4, and compiles the kernel.
    pub fn new(gpu: &Gpu, weight: &QuantizedTensor) -> Result<Self> {
        let weight = SimpleWeight::new(gpu, weight, "the simple int8 GEMV")?;
        let (n, k) = (weight.n, weight.k);
        let ro = wgpu::BufferBindingType::Storage { read_only: true };
        let (group_layout, pipeline_layout) =
            layout(gpu, "simple_gemv_a8.wgsl", &[(0, ro), (2, ro), (3, ro), (4, ro), (5, ro)]);
        let module = module(gpu, "simple_gemv_a8.wgsl", SOURCE)?;
        let pipeline = pipeline(gpu, &pipeline_layout, &module, "simple_gemv_a8", &[])?;
        Ok(Self { weight, n, k, group_layout, pipeline })
    }

    /// Quantizes `x` (`[m, in]`, f32) per row as W8A8 does (`reference::quantize_activations`)
    /// and uploads it as the kernel reads it.
    pub fn upload(&self, x: &[f32]) -> Result<SimpleA8Input> {
        let qa = reference::quantize_activations(x, self.k, ActivationQuant::per_token())?;
        let words: Vec<u32> = qa
            .values
            .chunks(4)
            .map(|c| u32::from_le_bytes(std::array::from_fn(|j| c.get(j).map_or(0, |&v| v as u8))))
            .collect();
        let gpu = &self.weight.gpu;
        Ok(SimpleA8Input {
            qx: storage(gpu, "int8-wgpu simple int8 GEMV activations", bytemuck::cast_slice(&words))?,
            sx: storage(gpu, "int8-wgpu simple int8 GEMV scales", bytemuck::cast_slice(&qa.scales))?,
            m: qa.shape[0],
        })
    }

    /// Bind groups and dispatches of one forward of `input` into `y` (`[m, out]`, f32).
    fn prepare(&self, input: &SimpleA8Input, y: &GpuTensor) -> Result<Dispatches> {
        let gpu = &self.weight.gpu;
        let mut groups = Vec::new();
        let m = input.m;
        // One pass per 8 activation rows (see the shader: llvmpipe's loop limit).
        for ((row0, rows, weights), m0) in
            self.weight.blocks.iter().flat_map(|b| (0..m).step_by(PASS).map(move |m0| (b, m0)))
        {
            let m1 = (m0 + PASS).min(m);
            let words = [m, self.n, self.k, self.k / 4, *row0, *rows, m0, m1].map(|v| v as u32);
            let params = storage(gpu, "int8-wgpu simple int8 GEMV params", bytemuck::cast_slice(&words))?;
            let group = gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("simple_gemv_a8.wgsl"),
                layout: &self.group_layout,
                entries: &[
                    entry(0, params.as_entire_binding()),
                    entry(1, y.buffer().as_entire_binding()),
                    entry(2, input.qx.as_entire_binding()),
                    entry(3, weights.as_entire_binding()),
                    entry(4, self.weight.scales.as_entire_binding()),
                    entry(5, input.sx.as_entire_binding()),
                ],
            });
            groups.push((group, grid(gpu, rows.div_ceil(ROWS).div_ceil(WG) as u32)));
        }
        Ok(Dispatches { pipeline: self.pipeline.clone(), groups })
    }

    /// Runs the kernel on `input` and reads the `[m, out]` f32 result back.
    pub fn forward(&self, input: &SimpleA8Input) -> Result<Vec<f32>> {
        let gpu = &self.weight.gpu;
        let y = GpuTensor::zeros(gpu, &[input.m, self.n], DType::F32)?;
        self.prepare(input, &y)?.run(gpu);
        y.read_f32()
    }

    /// Times `iters` forwards of `input` recorded into one pass, as `SimpleGemv::time`.
    pub fn time(&self, input: &SimpleA8Input, iters: u32) -> Result<Timing> {
        let gpu = &self.weight.gpu;
        let y = GpuTensor::zeros(gpu, &[input.m, self.n], DType::F32)?;
        self.prepare(input, &y)?.time(gpu, iters)
    }

    /// Runs the kernel on `x` (`[m, in]`, f32, quantized per row as [`upload`](Self::upload)
    /// does) and counts the outputs whose bits differ from `reference::linear_a8` over `weight`
    /// (the host tensor this one was uploaded from) with per-token activations: 0 passes. Both
    /// compute `(s_x · f32(acc)) · s_w` from the same exact integer sum, so they agree bit for bit.
    pub fn check(&self, x: &[f32], weight: &QuantizedTensor) -> Result<usize> {
        if weight.shape() != [self.n, self.k] {
            return Err(Error::Shape(format!("checking against a {:?} weight", weight.shape())));
        }
        let got = self.forward(&self.upload(x)?)?;
        let want = reference::linear_a8(x, weight, None, ActivationQuant::per_token())?;
        Ok(got.iter().zip(&want).filter(|(g, w)| g.to_bits() != w.to_bits()).count())
    }
}

#[cfg(test)]
mod tests {
    /// The kernel parses, validates and translates for every backend, on any machine.
    #[test]
    fn simple_gemv_a8_translates() {
        let src = super::SOURCE;
        let module = naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{}", e.emit_to_string(src)));
        let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("simple_gemv_a8.wgsl: {e:?}"));
        let bindings: Vec<(u32, bool)> = (0..6).map(|b| (b, b == 1)).collect();
        let n = crate::translate::translate_for_every_backend(
            &module,
            &info,
            "simple_gemv_a8",
            &Default::default(),
            Some(&bindings),
            true,
            "simple_gemv_a8",
        );
        assert_eq!(n, 4, "SPIR-V, MSL, HLSL and GLSL");
    }
}
