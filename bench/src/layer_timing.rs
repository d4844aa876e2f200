//! Timing the library's own layers as the yardsticks are timed: `iters` forwards (or one stage
//! of them) recorded into one compute pass.

use int8_wgpu::gpu::Timing;
use int8_wgpu::{ForwardStage, GpuTensor, QuantizedLinear, Result};

/// The output tensor of `layer` for the input `x`.
fn output(layer: &QuantizedLinear, x: &GpuTensor) -> Result<GpuTensor> {
    let mut shape = x.shape().to_vec();
    if let Some(last) = shape.last_mut() {
        *last = layer.out_features();
    }
    GpuTensor::zeros(x.gpu(), &shape, layer.activation_dtype())
}

/// Times `iters` forwards of `layer` on `x` recorded into one pass.
pub fn time_forward(layer: &QuantizedLinear, x: &GpuTensor, iters: u32) -> Result<Timing> {
    let y = output(layer, x)?;
    x.gpu().time_pass(iters, |pass| layer.record(pass, x, &y))
}

/// Times `iters` runs of one stage of `layer`'s forward on `x` recorded into one pass, after a
/// whole forward (so the matmul reads int8 activations the quantizer wrote). An
/// [`Error::Unsupported`](int8_wgpu::Error::Unsupported) for weight-only layers.
pub fn time_stage(layer: &QuantizedLinear, x: &GpuTensor, stage: ForwardStage, iters: u32) -> Result<Timing> {
    let y = output(layer, x)?;
    layer.forward_into(x, &y)?;
    x.gpu().time_pass(iters, |pass| layer.record_stage(pass, x, &y, stage))
}
