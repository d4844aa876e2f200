//! A layer's plan for one row count, made from a [`Choice`]: the activation quantizer for int8
//! activations (an optional pre-pass), then the matmul's dispatches with their parameters
//! uploaded; bound to buffers, it records into a compute pass.

use std::sync::Arc;

use crate::Result;
use crate::gpu::act_quant::ActQuantPlan;
use crate::gpu::bindings::slot;
use crate::gpu::cache::{Bindable, FamilyObjects};
use crate::gpu::linear::choose::Choice;
use crate::gpu::linear::table::workgroups;
use crate::gpu::params::LinearParams;
use crate::gpu::{Gpu, GpuQuantizedTensor};

/// One dispatch of a linear plan: its row block, parameter buffer and workgroup grid.
type Dispatch = (usize, wgpu::Buffer, (u32, u32));

/// Everything about a forward of some number of rows that does not depend on which buffers it
/// reads and writes, made once per (layer, rows) and reused.
pub(crate) struct LinearPlan {
    /// The activation quantizer (int8 activations only), with its results' buffers.
    act: Option<ActQuantPlan>,
    family: Arc<FamilyObjects>,
    pipeline: Arc<wgpu::ComputePipeline>,
    /// In recording order.
    dispatches: Vec<Dispatch>,
}

impl LinearPlan {
    /// Plans `choice` for `m` rows of `w`.
    pub(crate) fn new(gpu: &Gpu, w: &GpuQuantizedTensor, m: usize, choice: &Choice, has_bias: bool) -> Result<Self> {
        let dispatches = dispatch_params(w, m, choice.pass, has_bias)
            .iter()
            .map(|(i, p)| {
                let params = gpu.storage_buffer("int8-wgpu linear params", bytemuck::bytes_of(p))?;
                let grid = gpu.grid(workgroups(choice.entry, choice.variant.rpt, w.blocks[*i].rows, p.m as usize));
                Ok((*i, params, grid))
            })
            .collect::<Result<Vec<_>>>()?;
        let act = match choice.act {
            Some(act) => Some(ActQuantPlan::new(gpu, m, w.shape()[1], choice.variant.in_dt, act)?),
            None => None,
        };
        Ok(LinearPlan {
            act,
            family: gpu.family(choice.entry.family(choice.variant))?,
            pipeline: gpu.pipeline(choice.entry, choice.variant)?,
            dispatches,
        })
    }

    /// Binds the plan to `x`, `bias` and `y`.
    pub(crate) fn bind(
        self: &Arc<Self>,
        gpu: &Gpu,
        w: &GpuQuantizedTensor,
        x: &dyn Bindable,
        bias: &dyn Bindable,
        y: &dyn Bindable,
    ) -> Bound {
        let groups = self
            .dispatches
            .iter()
            .map(|(i, params, grid)| {
                let base: [(u32, &dyn Bindable); 5] = [
                    (slot::PARAMS, params),
                    (slot::OUT, y),
                    (slot::X, x),
                    (slot::WEIGHTS, &w.blocks[*i].buffer),
                    (slot::SCALES, &w.scales),
                ];
                let g = match &self.act {
                    Some(a) => gpu.bind_group(
                        &self.family,
                        &[&base[..], &[(slot::BIAS, bias), (slot::QX, &a.qx as &dyn Bindable), (slot::META, &a.act)]].concat(),
                    ),
                    None => gpu.bind_group(
                        &self.family,
                        &[&base[..], &[(slot::ZERO_POINTS, &w.zero_points as &dyn Bindable), (slot::BIAS, bias)]].concat(),
                    ),
                };
                (g, *grid)
            })
            .collect();
        let act_group = self.act.as_ref().map(|a| a.bind(gpu, x));
        Bound { plan: self.clone(), act_group, matmul: Prepared { pipeline: self.pipeline.clone(), groups } }
    }
}

/// A pipeline with its bind groups and workgroup grids, ready to record.
pub(crate) struct Prepared {
    pub(crate) pipeline: Arc<wgpu::ComputePipeline>,
    /// Per dispatch: its bind group and workgroup grid.
    pub(crate) groups: Vec<(wgpu::BindGroup, (u32, u32))>,
}

impl Prepared {
    pub(crate) fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        for (g, (gx, gy)) in &self.groups {
            pass.set_bind_group(0, g, &[]);
            pass.dispatch_workgroups(*gx, *gy, 1);
        }
    }
}

/// A [`LinearPlan`] bound to its input, bias and output buffers.
pub(crate) struct Bound {
    plan: Arc<LinearPlan>,
    /// The activation quantizer's bind group (int8 activations only).
    act_group: Option<wgpu::BindGroup>,
    matmul: Prepared,
}

impl Bound {
    /// Records the forward: the activation quantizer, if any, then the matmul (wgpu orders each
    /// dispatch after those writing what it reads).
    pub(crate) fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.record_act_quant(pass);
        self.record_matmul(pass);
    }

    /// Records the activation quantizer alone; nothing for float activations.
    pub(crate) fn record_act_quant(&self, pass: &mut wgpu::ComputePass<'_>) {
        if let (Some(act), Some(group)) = (&self.plan.act, &self.act_group) {
            act.record(pass, group);
        }
    }

    /// Records the matmul alone (with int8 activations, reading what the quantizer left).
    pub(crate) fn record_matmul(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.matmul.record(pass);
    }

    /// The int8 activations' outlier buffer this forward writes; `None` for float activations.
    pub(crate) fn act_buffer(&self) -> Option<&wgpu::Buffer> {
        self.plan.act.as_ref().map(|a| &a.act)
    }
}

/// The parameters of each dispatch of a linear over `m` activation rows of `w`, in passes of
/// at most `pass` rows (`LinearParams::m0` is a pass's first row), per row block within each
/// pass. The passes share the rows evenly (9 rows: 5 and 4, not 8 and 1): a GEMV's time grows
/// with its pass's rows, and a last pass of one row would run a kernel built for several.
pub(crate) fn dispatch_params(
    w: &GpuQuantizedTensor,
    m: usize,
    pass: usize,
    has_bias: bool,
) -> Vec<(usize, LinearParams)> {
    let (n, k) = (w.shape()[0], w.shape()[1]);
    let l = w.layout();
    // Each generic-GEMV thread takes chunks of k; a multiple of 4 keeps chunks word-aligned.
    let chunk = k.div_ceil(crate::gpu::params::GEMV_WG).next_multiple_of(4).max(4);
    let mut dispatches = Vec::new();
    let passes = m.div_ceil(pass.max(1));
    for j in 0..passes {
        let (m0, m1) = (j * m / passes, (j + 1) * m / passes);
        for (i, b) in w.blocks.iter().enumerate() {
            let params = LinearParams {
                m: (m1 - m0) as u32,
                n: n as u32,
                k: k as u32,
                words_per_row: k.div_ceil(4) as u32,
                row0: b.row0 as u32,
                rows: b.rows as u32,
                inner: l.inner as u32,
                channels: l.channels as u32,
                chunk: chunk as u32,
                has_bias: u32::from(has_bias),
                xor_mask: w.xor_mask(),
                m0: m0 as u32,
            };
            dispatches.push((i, params));
        }
    }
    dispatches
}
