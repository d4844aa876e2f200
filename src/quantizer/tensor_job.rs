//! One job of a conversion: a tensor copied unchanged, or a layer quantized (in one pass over
//! its rows on the CPU, or on the GPU) and written with its report.

use super::eval::{EvalSpec, seed_of};
use super::one_pass::{self, Ints, OnePass};
use super::{LayerReport, Quantizer};
use crate::checkpoint::{self, Checkpoint, FileReader, ReadBuf, SafetensorsWriter, TensorInfo};
use crate::{DType, Element, QuantizedTensor, Result};

/// Bytes of a copied tensor read at a time. A worker's reused buffer grows to the larger of
/// this and its largest layer, so the window is kept below a typical layer's size.
const COPY_WINDOW: usize = 4 << 20;

/// One input tensor and what becomes of it.
pub(super) struct Job<'a> {
    /// Its name.
    pub(super) name: &'a str,
    pub(super) info: &'a TensorInfo,
    /// The output file it goes to.
    pub(super) out: usize,
    /// For a quantized layer: its name `P` and its index among the run's layers.
    pub(super) layer: Option<(&'a str, usize)>,
}

impl Quantizer {
    /// Quantizes the layer of `job` (or takes the GPU's ints `given`), its weight read into
    /// `buf`, writes its tensors and returns its report. Errors of the quantization name the
    /// tensor.
    pub(super) fn layer(
        &self,
        ckpt: &Checkpoint,
        reader: &FileReader,
        job: &Job<'_>,
        file: &SafetensorsWriter,
        given: Option<QuantizedTensor>,
        buf: &mut ReadBuf,
    ) -> Result<Option<LayerReport>> {
        let (p, _) = job.layer.expect("a layer job");
        let info = job.info;
        let dtype = info.float_dtype().expect("targets are float");
        let data = ckpt.read_tensor(reader, info, 0..info.nbytes(), buf)?;
        let stored = match dtype {
            DType::F32 => self.stored::<f32>(data, info, p, given),
            DType::F16 => self.stored::<half::f16>(data, info, p, given),
            DType::BF16 => self.stored::<half::bf16>(data, info, p, given),
        }
        .map_err(|e| e.in_tensor(job.name))?;
        let shape = layer_shape(info);
        let format = checkpoint::pack_format(self.method);
        let specs = checkpoint::layer_specs(shape, self.scheme, dtype, format)?;
        let bytes = checkpoint::layer_bytes(
            shape,
            self.scheme,
            dtype,
            format,
            stored.packed,
            &stored.scales,
            stored.zero_points.as_deref(),
        );
        let mut bytes_after = 0;
        for ((suffix, ..), b) in specs.iter().zip(&bytes) {
            file.write(&format!("{p}.{suffix}"), 0, b)?;
            bytes_after += b.len();
        }
        Ok(Some(LayerReport {
            name: p.to_string(),
            shape,
            dtype,
            scheme: self.scheme,
            bytes_before: info.nbytes(),
            bytes_after,
            mse: stored.mse,
            max_abs: stored.max_abs,
            output_rel_error: stored.output.map(|o| o.0),
            output_max_abs: stored.output.map(|o| o.1),
        }))
    }

    /// The stored form and metrics of layer `p`, whose weight is `bytes` read as `T`: in one pass
    /// ([`one_pass::quantize_layer`]), or, where that gives up, the reference way (which then gives
    /// the same result, or the error).
    fn stored<T: Element>(
        &self,
        bytes: &[u8],
        info: &TensorInfo,
        p: &str,
        given: Option<QuantizedTensor>,
    ) -> Result<OnePass> {
        let x = checkpoint::as_slice_of::<T>(bytes);
        let x = &*x;
        let (shape, dtype, seed) = (layer_shape(info), T::DTYPE, seed_of(p));
        let ints = given.as_ref().map_or(Ints::Compute, Ints::Given);
        let eval = EvalSpec { rows: self.eval_rows, seed, a8: self.activation_quant()? };
        match one_pass::quantize_layer(x, shape, self.scheme, dtype, ints, eval) {
            Some(f) => Ok(f),
            None => one_pass::reference_layer(x, shape, self.scheme, dtype, given, eval),
        }
    }
}

/// `[out, in]` of a planned layer (planned layers are 2-D).
pub(super) fn layer_shape(info: &TensorInfo) -> [usize; 2] {
    [info.shape[0], info.shape[1]]
}

/// Copies the tensor of `job` unchanged, a window at a time read into `buf`.
pub(super) fn copy(
    ckpt: &Checkpoint,
    reader: &FileReader,
    job: &Job<'_>,
    file: &SafetensorsWriter,
    buf: &mut ReadBuf,
) -> Result<Option<LayerReport>> {
    let len = job.info.nbytes();
    let mut at = 0;
    while at < len {
        let end = len.min(at + COPY_WINDOW);
        file.write(job.name, at, ckpt.read_tensor(reader, job.info, at..end, buf)?)?;
        at = end;
    }
    Ok(None)
}

/// Quantizes the layer of `job` on the GPU, its weight read into `buf`. Errors of the
/// quantization name the tensor.
pub(super) fn gpu_quantize(
    gpu: &crate::Gpu,
    ckpt: &Checkpoint,
    reader: &FileReader,
    job: &Job<'_>,
    scheme: crate::QuantScheme,
    buf: &mut ReadBuf,
) -> Result<QuantizedTensor> {
    fn run<T: Element>(
        gpu: &crate::Gpu,
        bytes: &[u8],
        shape: &[usize],
        scheme: crate::QuantScheme,
    ) -> Result<QuantizedTensor> {
        gpu.quantize(&checkpoint::as_slice_of::<T>(bytes), shape, scheme)?.to_host()
    }
    let info = job.info;
    let data = ckpt.read_tensor(reader, info, 0..info.nbytes(), buf)?;
    match info.float_dtype().expect("targets are float") {
        DType::F32 => run::<f32>(gpu, data, &info.shape, scheme),
        DType::F16 => run::<half::f16>(gpu, data, &info.shape, scheme),
        DType::BF16 => run::<half::bf16>(gpu, data, &info.shape, scheme),
    }
    .map_err(|e| e.in_tensor(job.name))
}
