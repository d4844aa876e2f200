//! Loading a BERT checkpoint's weights onto the GPU: embedding tables, LayerNorms and linear
//! layers (int8-wgpu's [`QuantizedLinear`], or dense f32 buffers for the baseline).

use std::sync::Arc;

use int8_wgpu::checkpoint::Checkpoint;
use int8_wgpu::{ActivationQuant, Gpu, QuantScheme, QuantizedLinear};

use super::config::{Config, Precision};
use super::ops::{self, Result};

/// One linear layer of the model.
pub enum Linear {
    Int8(Arc<QuantizedLinear>),
    /// The baseline: `[out, in]` f32 weight and `[out]` bias for the example's `dense` kernel.
    Dense {
        weight: wgpu::Buffer,
        bias: wgpu::Buffer,
        out: usize,
        inp: usize,
    },
}

/// LayerNorm weight and bias.
pub struct Norm {
    pub gamma: wgpu::Buffer,
    pub beta: wgpu::Buffer,
}

/// One encoder layer's weights.
pub struct Layer {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub attn_out: Linear,
    pub attn_norm: Norm,
    pub inter: Linear,
    pub out: Linear,
    pub out_norm: Norm,
}

impl Layer {
    /// The linear layers, named as in the checkpoint (after `encoder.layer.N.`).
    pub fn linears(&self) -> [(&'static str, &Linear); 6] {
        [
            ("attention.self.query", &self.query),
            ("attention.self.key", &self.key),
            ("attention.self.value", &self.value),
            ("attention.output.dense", &self.attn_out),
            ("intermediate.dense", &self.inter),
            ("output.dense", &self.out),
        ]
    }

    /// How the int8 layers quantize their activations (`None`: float activations). A
    /// checkpoint's own W8A8 or LLM.int8() shows here, whatever [`Precision`] loaded it.
    pub fn activation_quant(&self) -> Option<ActivationQuant> {
        self.linears().iter().find_map(|(_, l)| match l {
            Linear::Int8(q) => q.activation_quant(),
            Linear::Dense { .. } => None,
        })
    }
}

/// Loads the float tensors and linear layers of one checkpoint, counting the bytes placed on
/// the GPU.
pub struct Loader<'a> {
    pub gpu: &'a Gpu,
    pub ckpt: &'a Checkpoint,
    pub prefix: &'static str,
    pub quantized: bool,
    pub precision: Precision,
    /// How a float checkpoint's linear weights are quantized at load.
    pub scheme: QuantScheme,
    pub bytes: u64,
}

impl Loader<'_> {
    pub fn floats(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let full = format!("{}{name}", self.prefix);
        let info = self.ckpt.info(&full).ok_or_else(|| format!("the checkpoint has no tensor `{full}`"))?;
        if info.shape != shape {
            return Err(format!("`{full}` has shape {:?}; this config needs {shape:?}", info.shape).into());
        }
        let v = self.ckpt.tensor_f32(&full)?;
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(format!("`{full}` holds a non-finite value at flat index {i}").into());
        }
        Ok(v)
    }

    pub async fn upload(&mut self, name: &str, shape: &[usize]) -> Result<wgpu::Buffer> {
        let v = self.floats(name, shape)?;
        self.bytes += 4 * v.len() as u64;
        ops::storage_async(self.gpu, name, 4 * v.len() as u64, Some(bytemuck::cast_slice(&v))).await
    }

    pub async fn norm(&mut self, name: &str, n: usize) -> Result<Norm> {
        Ok(Norm {
            gamma: self.upload(&format!("{name}.weight"), &[n]).await?,
            beta: self.upload(&format!("{name}.bias"), &[n]).await?,
        })
    }

    pub async fn linear(&mut self, name: &str, out: usize, inp: usize) -> Result<Linear> {
        let act = match self.precision {
            Precision::F32 => {
                let weight = self.upload(&format!("{name}.weight"), &[out, inp]).await?;
                let bias = self.upload(&format!("{name}.bias"), &[out]).await?;
                return Ok(Linear::Dense { weight, bias, out, inp });
            }
            p => p.activation(),
        };
        let full = format!("{}{name}", self.prefix);
        let layer = if self.quantized {
            // Any 8-bit checkpoint the library reads (compressed-tensors, bitsandbytes): the
            // stored ints and scales, the bias converted to the activation dtype.
            self.ckpt.linear_with(self.gpu, &full, act)?
        } else {
            // A float checkpoint: quantized on the GPU now, with the loader's scheme.
            let w = self.floats(&format!("{name}.weight"), &[out, inp])?;
            let b = self.floats(&format!("{name}.bias"), &[out])?;
            QuantizedLinear::from_float(self.gpu, &w, [out, inp], Some(&b), self.scheme, act)?
        };
        // A checkpoint that records W8A8 or LLM.int8() loads that way; the precision asked for
        // here overrides it only when it names one.
        let layer = match self.precision.activation_quant() {
            Some(a) => layer.with_activation_quant(a)?,
            None => layer,
        };
        if (layer.out_features(), layer.in_features()) != (out, inp) {
            return Err(format!(
                "`{full}` is [{}, {}]; this config needs [{out}, {inp}]",
                layer.out_features(),
                layer.in_features()
            )
            .into());
        }
        self.bytes += layer.weight().nbytes() + layer.bias().map_or(0, |b| b.buffer().size());
        Ok(Linear::Int8(Arc::new(layer)))
    }

    /// Encoder layer `n`.
    pub async fn layer(&mut self, n: usize, c: &Config) -> Result<Layer> {
        let (h, i, p) = (c.hidden, c.intermediate, format!("encoder.layer.{n}"));
        Ok(Layer {
            query: self.linear(&format!("{p}.attention.self.query"), h, h).await?,
            key: self.linear(&format!("{p}.attention.self.key"), h, h).await?,
            value: self.linear(&format!("{p}.attention.self.value"), h, h).await?,
            attn_out: self.linear(&format!("{p}.attention.output.dense"), h, h).await?,
            attn_norm: self.norm(&format!("{p}.attention.output.LayerNorm"), h).await?,
            inter: self.linear(&format!("{p}.intermediate.dense"), i, h).await?,
            out: self.linear(&format!("{p}.output.dense"), h, i).await?,
            out_norm: self.norm(&format!("{p}.output.LayerNorm"), h).await?,
        })
    }
}
