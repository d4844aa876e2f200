//! What a [`QuantizedLinear`](crate::QuantizedLinear) keeps per row count and per bound buffers:
//! the weight-only plan (matmul.rs) or the int8-activation one (matmul_a8.rs), behind one type.

use std::sync::Arc;

use crate::gpu::matmul::{Prepared, RowsPlan, prepare_rows};
use crate::gpu::matmul_a8::{A8Prepared, A8RowsPlan, prepare_a8};
use crate::gpu::{Gpu, GpuQuantizedTensor};
use crate::{ActivationQuant, DType, Result};

/// A layer's plan for one row count, built once and kept.
pub(crate) enum LayerPlan {
    /// W8A32 / W8A16: float activations, the fused int8-dequant kernels.
    Weight(RowsPlan),
    /// W8A8 / LLM.int8(): the activation quantizer, then the integer matmul.
    Int8(Arc<A8RowsPlan>),
}

impl LayerPlan {
    /// Plans `m` rows of `dtype` activations through `w`; `act` selects int8 activations.
    pub(crate) fn new(
        gpu: &Gpu,
        w: &GpuQuantizedTensor,
        m: usize,
        dtype: DType,
        has_bias: bool,
        act: Option<ActivationQuant>,
    ) -> Result<Self> {
        Ok(match act {
            None => Self::Weight(prepare_rows(gpu, w, m, dtype, has_bias)?),
            Some(a) => Self::Int8(Arc::new(prepare_a8(gpu, w, m, dtype, has_bias, a)?)),
        })
    }

    /// Binds the plan to its input, bias and output buffers.
    pub(crate) fn bind(
        &self,
        gpu: &Gpu,
        w: &GpuQuantizedTensor,
        x: &wgpu::Buffer,
        bias: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Bound {
        match self {
            Self::Weight(p) => Bound::Weight(p.bind(gpu, w, x, bias, y)),
            Self::Int8(p) => Bound::Int8(p.bind(gpu, w, x, bias, y)),
        }
    }
}

/// A [`LayerPlan`] with its bind groups made, ready to record.
pub(crate) enum Bound {
    /// See [`LayerPlan::Weight`].
    Weight(Prepared),
    /// See [`LayerPlan::Int8`].
    Int8(A8Prepared),
}

impl Bound {
    /// Records every dispatch of the forward into `pass`.
    pub(crate) fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        match self {
            Self::Weight(p) => p.record(pass),
            Self::Int8(p) => p.record(pass),
        }
    }

    /// Records the integer matmul of an int8-activation forward without its activation
    /// quantizer (profiling: the activations of an earlier forward stay in the plan's buffers);
    /// the whole forward for weight-only layers.
    pub(crate) fn record_matmul(&self, pass: &mut wgpu::ComputePass<'_>) {
        match self {
            Self::Weight(p) => p.record(pass),
            Self::Int8(p) => p.record_matmul(pass),
        }
    }

    /// Records the activation quantizer of an int8-activation forward alone (profiling);
    /// nothing for weight-only layers.
    pub(crate) fn record_act_quant(&self, pass: &mut wgpu::ComputePass<'_>) {
        if let Self::Int8(p) = self {
            p.record_act_quant(pass);
        }
    }

    /// The int8 activations' outlier buffer this forward writes; `None` for weight-only layers.
    pub(crate) fn act_buffer(&self) -> Option<&wgpu::Buffer> {
        match self {
            Self::Weight(_) => None,
            Self::Int8(p) => Some(p.act_buffer()),
        }
    }
}
