//! Loading a checkpoint's quantized layers onto the GPU, with the activation dtype that the
//! method fixes and the int8 activations the checkpoint asks for.

use super::{Checkpoint, PackFormat, TensorInfo, as_slice_of};
use crate::{DType, Gpu, GpuQuantizedTensor, QuantizedLinear, Result};

impl Checkpoint {
    /// The activation dtype [`Checkpoint::linear`] uses: [`Method::activation_dtype`](crate::Method::activation_dtype)
    /// of [`Checkpoint::method`] (`w8a16` when there is none) for the original weights' dtype,
    /// which is the scale dtype of the quantized layers (for bitsandbytes, whose scales are always
    /// f32, config.json's `dtype`): f32 for `w8a32`; for the others that dtype if it is f16 or
    /// bf16, else bf16.
    pub fn activation_dtype(&self) -> DType {
        let weight_dtype = if self.is_bitsandbytes() {
            self.bnb_model_dtype()
        } else {
            let scale_dtype = self.quantized_layers().first().and_then(|p| self.info(&format!("{p}.weight_scale")));
            // Without a float scale there is no 16-bit dtype to keep: as for an f32 checkpoint.
            scale_dtype.and_then(TensorInfo::float_dtype).unwrap_or(DType::F32)
        };
        self.method().unwrap_or_default().activation_dtype(weight_dtype)
    }

    /// Loads quantized layer `name` (with `name.bias` when present) as a GPU layer, with the
    /// activation dtype of [`Checkpoint::activation_dtype`].
    pub fn linear(&self, gpu: &Gpu, name: &str) -> Result<QuantizedLinear> {
        self.linear_with(gpu, name, self.activation_dtype())
    }

    /// Like [`Checkpoint::linear`] with a chosen activation dtype.
    ///
    /// The layer quantizes its activations as [`Checkpoint::activation_quant`] says (its errors
    /// come before any upload); a W8A8 or LLM.int8() checkpoint whose weights are not symmetric
    /// per row or per tensor is an [`Error::Scheme`](crate::Error::Scheme).
    ///
    /// `pack-quantized` words are uploaded as they are in the file: the kernels read the
    /// offset-binary bytes (`q ^ 0x80`) directly ([`GpuQuantizedTensor::from_packed`]).
    pub fn linear_with(&self, gpu: &Gpu, name: &str, activation: DType) -> Result<QuantizedLinear> {
        let build = || -> Result<QuantizedLinear> {
            let a8 = self.activation_quant()?;
            let info = self.layer_info(name)?;
            if a8.is_some() {
                crate::reference::check_a8_weight_scheme(info.scheme, &info.shape)?;
            }
            let bias_name = format!("{name}.bias");
            let bias = match self.info(&bias_name) {
                Some(_) => Some(self.tensor_f32(&bias_name)?),
                None => None,
            };
            let layer = match info.format {
                PackFormat::PackQuantized => {
                    // Read into a buffer dropped once uploaded: no host copy outlives it.
                    let data = self.tensor_data(&format!("{name}.weight_packed"))?;
                    let words = as_slice_of::<u32>(&data);
                    super::compressed_tensors::check_padding(name, &words, info.shape[0], info.shape[1])?;
                    let (scales, zps) = self.params(&info)?;
                    let w = GpuQuantizedTensor::from_packed(
                        gpu,
                        &info.shape,
                        info.scheme,
                        &words,
                        true,
                        &scales,
                        zps.as_deref(),
                    )?;
                    QuantizedLinear::from_gpu(w, bias.as_deref(), activation)?
                }
                PackFormat::IntQuantized | PackFormat::BitsAndBytes => {
                    QuantizedLinear::from_quantized(gpu, &self.rebuild(name)?, bias.as_deref(), activation)?
                }
            };
            match a8 {
                Some(a8) => layer.with_activation_quant(a8),
                None => Ok(layer),
            }
        };
        build().map_err(|e| e.in_tensor(name))
    }
}
