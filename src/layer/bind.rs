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
type BindKey = (usize, wgpu::Buffer, u64, wgpu::Buffer, u64);

/// A kept binding: its key, the bound plan, and the device's count of registered parameters
/// when its output was last checked against them ([`Gpu::parameters_registered`]).
pub(super) type BoundEntry = (BindKey, Arc<Bound>, u64);

/// How many (rows, input, output) bindings a layer keeps. A model's forward reuses its buffers,
/// so a few suffice; each kept entry holds its buffers alive, so the bound is small.
const BIND_CACHE: usize = 4;

impl QuantizedLinear {
    /// The bound plan of `x` into `y` after [`QuantizedLinear::record`]'s checks of them.
    ///
    /// A kept binding was checked when it was made: the aliasing of its output with the input
    /// and bias is fixed by its key, so only a parameter registered since then (a new layer's
    /// bias) makes it check the registry again; recording stays O(1) in the number of layers.
    pub(super) fn checked(&self, x: &GpuTensor, y: &GpuTensor) -> Result<Arc<Bound>> {
        x.same_gpu(&self.gpu, "input")?;
        y.same_gpu(&self.gpu, "output")?;
        let (m, shape) = self.output_shape(x)?;
        let key: BindKey = (m, x.buffer().clone(), x.offset(), y.buffer().clone(), y.offset());
        let registered = self.gpu.parameters_registered();
        let kept = self.kept(&key);
        if kept.as_ref().is_none_or(|(_, checked)| *checked != registered) {
            self.check_output(y)?;
            y.check_writable_while_reading(x, "input")?;
            if let Some(bias) = &self.bias {
                y.check_writable_while_reading(bias, "layer's bias")?;
            }
        }
        if y.shape() != shape.as_slice() || y.dtype() != self.dtype {
            return Err(Error::Shape(format!(
                "output tensor is {:?} {}, expected {shape:?} {}",
                y.shape(),
                y.dtype(),
                self.dtype
            )));
        }
        let prepared = match kept {
            Some((prepared, _)) => prepared,
            None => {
                let bias: &dyn Bindable = match &self.bias {
                    Some(b) => b,
                    None => &self.placeholder,
                };
                Arc::new(self.rows_plan(m)?.bind(&self.gpu, &self.weight, x, bias, y))
            }
        };
        let mut bound = self.bound.lock().unwrap_or_else(|p| p.into_inner());
        bound.push_front((key, prepared.clone(), registered));
        bound.truncate(BIND_CACHE);
        Ok(prepared)
    }

    /// The kept binding of `key`, taken out of the cache, with the registry count it was checked at.
    fn kept(&self, key: &BindKey) -> Option<(Arc<Bound>, u64)> {
        let mut bound = self.bound.lock().unwrap_or_else(|p| p.into_inner());
        let i = bound.iter().position(|(k, ..)| k == key)?;
        bound.remove(i).map(|(_, prepared, checked)| (prepared, checked))
    }

    /// [`Error::Aliasing`] where `y` overlaps a layer parameter (any layer's bias).
    fn check_output(&self, y: &GpuTensor) -> Result<()> {
        if self.gpu.overlaps_parameter(y.buffer(), y.range()) {
            return Err(Error::Aliasing("the output tensor overlaps a layer's bias, which layers never write".into()));
        }
        Ok(())
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
}
