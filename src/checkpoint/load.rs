//! Loading a checkpoint's quantized layers onto the GPU, with the activation dtype that the
//! method recorded in the checkpoint fixes.

use super::{Checkpoint, PackFormat, TensorInfo, as_slice_of};
use crate::{DType, Gpu, GpuQuantizedTensor, Method, QuantizedLinear, Result};

/// The `__metadata__` key where the quantizer records its method (`w8a16` / `w8a32`).
pub(crate) const METHOD_METADATA_KEY: &str = "int8_wgpu.method";

impl Checkpoint {
    /// The method the checkpoint was written with, from the `__metadata__` of its first file;
    /// `None` for a checkpoint without our metadata.
    pub fn method(&self) -> Option<Method> {
        self.metadata()?.get(METHOD_METADATA_KEY)?.parse().ok()
    }

    /// The activation dtype [`Checkpoint::linear`] uses: [`Method::activation_dtype`] of the
    /// recorded method (`w8a16` when none is recorded) for the scale dtype of the quantized
    /// layers, which is the original weights' dtype: f32 for `w8a32`; for `w8a16` the scale dtype
    /// if it is f16 or bf16, else bf16.
    pub fn activation_dtype(&self) -> DType {
        let scale_dtype = self.quantized_layers().first().and_then(|p| self.info(&format!("{p}.weight_scale")));
        // Without a float scale there is no 16-bit dtype to keep: as for an f32 checkpoint.
        let weight_dtype = scale_dtype.and_then(TensorInfo::float_dtype).unwrap_or(DType::F32);
        self.method().unwrap_or_default().activation_dtype(weight_dtype)
    }

    /// Loads quantized layer `name` (with `name.bias` when present) as a GPU layer, with the
    /// activation dtype of [`Checkpoint::activation_dtype`].
    pub fn linear(&self, gpu: &Gpu, name: &str) -> Result<QuantizedLinear> {
        self.linear_with(gpu, name, self.activation_dtype())
    }

    /// Like [`Checkpoint::linear`] with a chosen activation dtype.
    ///
    /// `pack-quantized` words are uploaded as they are in the file: the kernels read the
    /// offset-binary bytes (`q ^ 0x80`) directly ([`GpuQuantizedTensor::from_packed`]).
    pub fn linear_with(&self, gpu: &Gpu, name: &str, activation: DType) -> Result<QuantizedLinear> {
        let build = || -> Result<QuantizedLinear> {
            let info = self.layer_info(name)?;
            let bias_name = format!("{name}.bias");
            let bias = match self.info(&bias_name) {
                Some(_) => Some(self.tensor_f32(&bias_name)?),
                None => None,
            };
            match info.format {
                PackFormat::PackQuantized => {
                    // Mapped only while uploaded (read in place): no host copy outlives it.
                    let data = self.tensor_data(&format!("{name}.weight_packed"))?;
                    let words = as_slice_of::<u32>(&data);
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
                    QuantizedLinear::from_gpu(w, bias.as_deref(), activation)
                }
                PackFormat::IntQuantized => {
                    QuantizedLinear::from_quantized(gpu, &self.rebuild(name)?, bias.as_deref(), activation)
                }
            }
        };
        build().map_err(|e| e.in_tensor(name))
    }
}
