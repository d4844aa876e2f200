//! How a layer binds tensors: the checks a forward's input and output pass, the plan per row
//! count (made on first use), and the bind groups per (rows, input, output), kept for reuse so
//! that recording creates no GPU object after the first call.

use std::sync::Arc;

use super::QuantizedLinear;
use crate::gpu::GpuTensor;
use crate::gpu::cache::Bindable;
use crate::gpu::linear::{Bound, LinearPlan, prepare};
use crate::{Error, Result};

/// Rows and the input and output buffers, with the tensors' offsets in them, a set of bind
/// groups was made for (rows and dtype fix the ranges' sizes).
pub(super) type BindKey = (usize, wgpu::Buffer, u64, wgpu::Buffer, u64);

/// How many (rows, input, output) bindings a layer keeps. A model's forward reuses its buffers,
/// so a few suffice; each kept entry holds its buffers alive, so the bound is small.
const BIND_CACHE: usize = 4;

impl QuantizedLinear {
    /// The bound plan of `x` into `y` after [`QuantizedLinear::record`]'s checks of them.
    pub(super) fn checked(&self, x: &GpuTensor, y: &GpuTensor) -> Result<Arc<Bound>> {
        x.same_gpu(&self.gpu, "input")?;
        y.same_gpu(&self.gpu, "output")?;
        let (m, shape) = self.output_shape(x)?;
        if self.gpu.overlaps_parameter(y.buffer(), y.range()) {
            return Err(Error::Aliasing("the output tensor overlaps a layer's bias, which layers never write".into()));
        }
        y.check_writable_while_reading(x, "input")?;
        if let Some(bias) = &self.bias {
            y.check_writable_while_reading(bias, "layer's bias")?;
        }
        if y.shape() != shape.as_slice() || y.dtype() != self.dtype {
            return Err(Error::Shape(format!(
                "output tensor is {:?} {}, expected {shape:?} {}",
                y.shape(),
                y.dtype(),
                self.dtype
            )));
        }
        self.prepared(m, x, y)
    }

    /// The plan for `m` rows, made on first use.
    pub(super) fn rows_plan(&self, m: usize) -> Result<Arc<LinearPlan>> {
        if let Some(p) = self.plans.lock().unwrap_or_else(|p| p.into_inner()).get(&m) {
            return Ok(p.clone());
        }
        // Built outside the lock: it compiles pipelines and allocates. A concurrent first call
        // with the same rows may build it twice; both are equal and one is kept.
        let plan = Arc::new(prepare(&self.gpu, &self.weight, m, self.dtype, self.bias.is_some(), self.act)?);
        Ok(self.plans.lock().unwrap_or_else(|p| p.into_inner()).entry(m).or_insert(plan).clone())
    }

    /// The bind groups for `m` rows of `x` into `y`, from the cache or made now.
    fn prepared(&self, m: usize, x: &GpuTensor, y: &GpuTensor) -> Result<Arc<Bound>> {
        let key: BindKey = (m, x.buffer().clone(), x.offset(), y.buffer().clone(), y.offset());
        {
            let mut bound = self.bound.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = bound.iter().position(|(k, _)| *k == key) {
                let entry = bound.remove(i).expect("found");
                let prepared = entry.1.clone();
                bound.push_front(entry);
                return Ok(prepared);
            }
        }
        let bias: &dyn Bindable = match &self.bias {
            Some(b) => b,
            None => &self.placeholder,
        };
        let prepared = Arc::new(self.rows_plan(m)?.bind(&self.gpu, &self.weight, x, bias, y));
        let mut bound = self.bound.lock().unwrap_or_else(|p| p.into_inner());
        bound.push_front((key, prepared.clone()));
        bound.truncate(BIND_CACHE);
        Ok(prepared)
    }
}
