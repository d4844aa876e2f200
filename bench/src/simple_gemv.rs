//! The simple kernel of issue 12: "a 30-line WGSL GEMV that gives each invocation 4 weight rows
//! (u32 loads, `unpack4xI8`, f32 accumulate, no workgroup memory, no barriers)", timed beside the
//! library's pick on the same device so a table says whether the library's cleverness pays.
//!
//! It is a yardstick, not a contender: `bench/shaders/simple_gemv.wgsl` stays as the issue
//! describes it. Its parameters live in a storage buffer, as the library's do (lavapipe compiles
//! uniform values into the shader, which would flatter it), and it keeps wgpu's bounds checks,
//! as the library's kernels do. Any number of activation rows, in passes of 8 (a dispatch each,
//! for llvmpipe's loop limit), each pass's rows taken together inside the word loop.

use std::sync::Arc;

use int8_wgpu::gpu::Timing;
use int8_wgpu::{DType, Error, Gpu, GpuTensor, QuantScheme, QuantizedTensor, Result, reference};

use crate::wgpu_util::{Dispatches, entry, grid, layout, module, pipeline, shader_code, storage};

const SOURCE: &str = include_str!("../shaders/simple_gemv.wgsl");
/// The library's numeric helpers (activation decoding, output rounding, the quantizer's
/// rounding), which the simple kernels share with it.
const COMMON: &str = include_str!("../../shaders/common.wgsl");
/// Invocations per workgroup (`SIMPLE_WG` in the shader).
const WG: usize = 64;
/// Weight rows per invocation.
const ROWS: usize = 4;
/// Activation rows per dispatch.
pub(crate) const PASS: usize = 8;

/// The shader as compiled: [`with_common`] of the kernel.
fn source() -> String {
    with_common(SOURCE)
}

/// A bench kernel's source as compiled: the dtype codes `common.wgsl` needs, `common.wgsl`
/// (activation decoding, output rounding, the quantizer's numeric helpers), then `kernel`.
pub(crate) fn with_common(kernel: &str) -> String {
    let codes: String = [("DT_F32", DType::F32), ("DT_F16", DType::F16), ("DT_BF16", DType::BF16)]
        .iter()
        .map(|(name, dt)| format!("const {name}: u32 = {}u;\n", shader_code(*dt)))
        .collect();
    [&codes, COMMON, kernel].concat()
}

/// The override constants of the pipeline for activations (and outputs) of `dtype`.
pub(crate) fn constants(dtype: DType) -> [(&'static str, f64); 2] {
    let code = f64::from(shader_code(dtype));
    [("IN_DT", code), ("OUT_DT", code)]
}

/// A symmetric per-channel int8 weight on the GPU as the simple GEMVs read it: the ints as
/// plain bytes, row blocks of whole rows that each fit one binding (as the library splits a
/// weight), and one f32 scale per row.
pub(crate) struct SimpleWeight {
    pub(crate) gpu: Gpu,
    pub(crate) n: usize,
    pub(crate) k: usize,
    /// First row, rows and buffer of each block.
    pub(crate) blocks: Vec<(usize, usize, wgpu::Buffer)>,
    pub(crate) scales: wgpu::Buffer,
}

impl SimpleWeight {
    /// Uploads `weight` (`what` names the kernel in the errors): 2-D, symmetric per output
    /// channel, `in % 4 == 0` (whole words per row, no padding).
    pub(crate) fn new(gpu: &Gpu, weight: &QuantizedTensor, what: &str) -> Result<Self> {
        let [n, k] = weight.shape()[..] else {
            return Err(Error::Shape(format!("{what} takes a 2-D weight, not {:?}", weight.shape())));
        };
        if weight.scheme() != QuantScheme::default() || !k.is_multiple_of(4) {
            return Err(Error::Unsupported(format!(
                "{what} takes symmetric per-channel weights with in % 4 == 0 (got {:?}, in = {k})",
                weight.scheme()
            )));
        }
        let per = (gpu.max_binding_size() as usize / k).min(n);
        if per == 0 {
            return Err(Error::TooLarge {
                what: format!("one row of {what}"),
                size: k as u64,
                limit: gpu.max_binding_size(),
            });
        }
        let bytes: Vec<u8> = weight.values().iter().map(|&q| q as u8).collect();
        let mut blocks = Vec::new();
        for row0 in (0..n).step_by(per) {
            let rows = per.min(n - row0);
            blocks.push((
                row0,
                rows,
                storage(gpu, "int8-wgpu-bench simple weight", &bytes[row0 * k..(row0 + rows) * k])?,
            ));
        }
        let scales = storage(gpu, "int8-wgpu-bench simple scales", bytemuck::cast_slice(weight.scales()))?;
        Ok(Self { gpu: gpu.clone(), n, k, blocks, scales })
    }
}

/// The simple GEMV over a symmetric per-channel int8 weight: `y[m, r] = s[r] · Σ_c x[m, c] · q[r, c]`
/// for f32, f16 or bf16 activations (outputs in the same dtype).
pub struct SimpleGemv {
    weight: SimpleWeight,
    n: usize,
    k: usize,
    group_layout: wgpu::BindGroupLayout,
    /// One pipeline per activation dtype, indexed by its shader code.
    pipelines: Vec<Arc<wgpu::ComputePipeline>>,
}

impl std::fmt::Debug for SimpleGemv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimpleGemv").field("n", &self.n).field("k", &self.k).finish()
    }
}

impl SimpleGemv {
    /// Uploads a 2-D weight `[out, in]` quantized symmetrically per output channel, `in` a
    /// multiple of 4 (whole words per row, no padding to skip), and compiles the kernel for
    /// each activation dtype.
    pub fn new(gpu: &Gpu, weight: &QuantizedTensor) -> Result<Self> {
        let weight = SimpleWeight::new(gpu, weight, "the simple GEMV")?;
        let (n, k) = (weight.n, weight.k);
        let ro = wgpu::BufferBindingType::Storage { read_only: true };
        let (group_layout, pipeline_layout) = layout(gpu, "simple_gemv.wgsl", &[(0, ro), (2, ro), (3, ro), (4, ro)]);
        let module = module(gpu, "simple_gemv.wgsl", &source())?;
        let pipelines = [DType::F32, DType::F16, DType::BF16]
            .into_iter()
            .map(|dtype| pipeline(gpu, &pipeline_layout, &module, "simple_gemv", &constants(dtype)))
            .collect::<Result<_>>()?;
        Ok(Self { weight, n, k, group_layout, pipelines })
    }

    /// Bind groups and dispatches of one forward of `x` (`[m, in]`) into `y` (`[m, out]`, same dtype).
    fn prepare(&self, x: &GpuTensor, y: &GpuTensor) -> Result<Dispatches> {
        let gpu = &self.weight.gpu;
        if !x.gpu().same_device(gpu) || !y.gpu().same_device(gpu) {
            return Err(Error::WrongDevice("the simple GEMV's tensors are on another device".into()));
        }
        let m = x.numel() / self.k;
        if !x.numel().is_multiple_of(self.k) || y.numel() != m * self.n || y.dtype() != x.dtype() {
            return Err(Error::Shape(format!(
                "the simple GEMV takes [m, {}] and writes [m, {}] of the same dtype",
                self.k, self.n
            )));
        }
        let mut groups = Vec::new();
        // One pass per 8 activation rows (see the shader: llvmpipe's loop limit).
        for ((row0, rows, weights), m0) in
            self.weight.blocks.iter().flat_map(|b| (0..m).step_by(PASS).map(move |m0| (b, m0)))
        {
            let m1 = (m0 + PASS).min(m);
            let words = [m, self.n, self.k, self.k / 4, *row0, *rows, m0, m1].map(|v| v as u32);
            let params = storage(gpu, "int8-wgpu simple GEMV params", bytemuck::cast_slice(&words))?;
            let group = gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("simple_gemv.wgsl"),
                layout: &self.group_layout,
                entries: &[
                    entry(0, params.as_entire_binding()),
                    entry(1, y.buffer().as_entire_binding()),
                    entry(2, x.buffer().as_entire_binding()),
                    entry(3, weights.as_entire_binding()),
                    entry(4, self.weight.scales.as_entire_binding()),
                ],
            });
            let workgroups = rows.div_ceil(ROWS).div_ceil(WG) as u32;
            groups.push((group, grid(gpu, workgroups)));
        }
        let pipeline = self.pipelines[shader_code(x.dtype()) as usize].clone();
        Ok(Dispatches { pipeline, groups })
    }

    /// Runs the kernel on `x` (`[m, in]`) into a new `[m, out]` tensor of `x`'s dtype.
    pub fn forward(&self, x: &GpuTensor) -> Result<GpuTensor> {
        let gpu = &self.weight.gpu;
        let y = GpuTensor::zeros(gpu, &[x.numel() / self.k, self.n], x.dtype())?;
        self.prepare(x, &y)?.run(gpu);
        Ok(y)
    }

    /// Times `iters` forwards of `x` recorded into one pass, as `DenseLinear::time_forward`.
    pub fn time(&self, x: &GpuTensor, iters: u32) -> Result<Timing> {
        let gpu = &self.weight.gpu;
        let y = GpuTensor::zeros(gpu, &[x.numel() / self.k, self.n], x.dtype())?;
        self.prepare(x, &y)?.time(gpu, iters)
    }

    /// Runs the kernel on `x` and compares it with `reference::linear` over `weight` (the host
    /// tensor this one was uploaded from) and `x` as the kernel read it (16-bit values widened).
    /// Returns the largest `|y − reference| / tolerance` over the outputs: at most 1 passes.
    ///
    /// The tolerance of an output is `2 (k + 4) u Σ_c |s x_c q_c|` (u = 2^-24: both sides sum
    /// k f32 products, in different orders, each within about `k u` of that magnitude), plus,
    /// for a 16-bit output, its one rounding: half an ulp, `2^-11 |y|` (f16, and 2^-25 for its
    /// subnormals) or `2^-8 |y|` (bf16). A non-finite output gives infinity.
    pub fn check(&self, x: &GpuTensor, weight: &QuantizedTensor) -> Result<f64> {
        if weight.shape() != [self.n, self.k] {
            return Err(Error::Shape(format!("checking against a {:?} weight", weight.shape())));
        }
        let got = self.forward(x)?.read_f32()?;
        let xs = x.read_f32()?;
        let want = reference::linear(&xs, weight, None)?;
        let u = f64::from(f32::EPSILON) / 2.0;
        let (rel, abs) = match x.dtype() {
            DType::F32 => (0.0, 0.0),
            DType::F16 => (2f64.powi(-11), 2f64.powi(-25)),
            DType::BF16 => (2f64.powi(-8), 0.0),
        };
        let mut worst = 0f64;
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            let (row, col) = (i / self.n, i % self.n);
            let qs = &weight.values()[col * self.k..(col + 1) * self.k];
            let mag: f64 = xs[row * self.k..(row + 1) * self.k]
                .iter()
                .zip(qs)
                .map(|(&xv, &q)| f64::from(xv).abs() * f64::from(q).abs())
                .sum::<f64>()
                * f64::from(weight.scales()[col]);
            let tol = 2.0 * (self.k as f64 + 4.0) * u * mag + rel * f64::from(w).abs() + abs + 1e-30;
            let err = if g.is_finite() { (f64::from(g) - f64::from(w)).abs() } else { f64::INFINITY };
            worst = worst.max(err / tol);
        }
        Ok(worst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel parses, validates and translates for every backend in every activation dtype,
    /// on any machine.
    #[test]
    fn simple_gemv_translates() {
        let src = source();
        let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{}", e.emit_to_string(&src)));
        let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("simple_gemv.wgsl: {e:?}"));
        // As wgpu's Metal backend does: one buffer slot per binding; binding 1 is written.
        let bindings: Vec<(u32, bool)> = (0..5).map(|b| (b, b == 1)).collect();
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let constants: naga::back::PipelineConstants =
                constants(dtype).into_iter().map(|(name, v)| (name.to_string(), v)).collect();
            let n = crate::translate::translate_for_every_backend(
                &module,
                &info,
                "simple_gemv",
                &constants,
                Some(&bindings),
                true,
                &format!("simple_gemv {dtype}"),
            );
            assert_eq!(n, 4, "{dtype}: SPIR-V, MSL, HLSL and GLSL");
        }
    }
}
