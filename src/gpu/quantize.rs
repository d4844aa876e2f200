//! Host side of `quantize.wgsl`: quantization on the GPU (statistics, scales, packing), with
//! the same ints and scale bits as the CPU reference.

use crate::check::check_finite;
use crate::gpu::bindings::slot;
use crate::gpu::cache::Bindable;
use crate::gpu::family::Family;
use crate::gpu::params::{self, QuantizeParams};
use crate::gpu::quantized_tensor::{RowBlock, row_blocks, rows_cols};
use crate::gpu::shaders::{Kernel, Variant};
use crate::gpu::tensor::check_numel;
use crate::gpu::{Gpu, GpuQuantizedTensor, GpuTensor};
use crate::scheme::{check_shape, unravel};
use crate::{DType, Element, Error, Mode, QuantScheme, Result};

const WG: u32 = params::WG as u32;
const STATS_RUN: usize = 256;
/// The longest scale group `quantize_runs_main` takes on a CPU adapter: one invocation loops
/// about 2.25 times this many times, well inside llvmpipe's 65535 loop iterations per
/// invocation (`linear/table.rs`).
const RUNS_MAX_INNER: usize = 16384;

/// Rows `row0 .. row0 + rows` of a float input to quantize, bound from `data`.
struct Input<'a> {
    row0: usize,
    rows: usize,
    data: &'a dyn Bindable,
}

/// Whether quantizing with `layout` over rows of `cols` on `gpu` takes `quantize_runs_main` (one
/// invocation per scale group, one dispatch) rather than the three passes.
///
/// It needs groups that are runs of whole words within a row: per output channel, or groups of
/// a multiple of 4 that tile the row. CPU adapters take it for groups up to [`RUNS_MAX_INNER`],
/// where the three passes' atomics run lane by lane (2.2-2.7x faster on lavapipe,
/// BENCHMARKS.md); GPUs keep the three passes, whose parallelism does not depend on the number
/// of groups. `GpuOptions::quantize_runs` decides where set.
fn uses_quantize_runs(gpu: &Gpu, layout: &crate::scheme::ParamLayout, cols: usize) -> bool {
    let (inner, epp) = (layout.inner, layout.elems_per_param());
    let runs = epp == inner && (inner == cols || (inner.is_multiple_of(4) && cols.is_multiple_of(inner)));
    runs && gpu.quantize_runs_option().unwrap_or(gpu.is_cpu_adapter() && inner <= RUNS_MAX_INNER)
}

impl Gpu {
    /// Quantizes a host tensor on the GPU. The input is streamed to the device in row blocks,
    /// so weights larger than one storage binding work. Ints and scales equal
    /// [`reference::quantize`](crate::reference::quantize) bit for bit.
    pub fn quantize<T: Element>(&self, x: &[T], shape: &[usize], scheme: QuantScheme) -> Result<GpuQuantizedTensor> {
        self.block_on(self.quantize_async(x, shape, scheme))
    }

    /// Async form of [`Gpu::quantize`].
    pub async fn quantize_async<T: Element>(
        &self,
        x: &[T],
        shape: &[usize],
        scheme: QuantScheme,
    ) -> Result<GpuQuantizedTensor> {
        // The same checks in the same order as the CPU path, so both give the same error kind;
        // the device's 32-bit indexing limit comes last.
        let numel = check_shape(shape, "weight")?;
        if x.len() != numel {
            return Err(Error::Shape(format!("weight has {} elements but shape {shape:?} needs {numel}", x.len())));
        }
        check_numel(shape, "weight")?;
        scheme.layout(shape)?;
        let (rows, cols) = rows_cols(shape);
        let mut blocks = Vec::new();
        for (row0, n) in row_blocks(self, rows, cols * T::DTYPE.size(), "the float weight")? {
            let data = &x[row0 * cols..(row0 + n) * cols];
            blocks.push(RowBlock {
                row0,
                rows: n,
                buffer: self.storage_buffer("int8-wgpu weight", bytemuck::cast_slice(data))?,
            });
        }
        let inputs: Vec<Input> = blocks.iter().map(|b| Input { row0: b.row0, rows: b.rows, data: &b.buffer }).collect();
        let result = self.quantize_blocks(&inputs, T::DTYPE, shape, scheme).await;
        match result {
            // The GPU found a non-finite value: name it, using the host copy for the value.
            Err(Error::NonFinite { index, .. }) => check_finite(x, shape, "weight").and(Err(Error::Gpu(format!(
                "the GPU flagged element {index} as non-finite but the host copy is finite"
            )))),
            other => other,
        }
    }

    /// Quantizes a tensor already on the GPU (it must fit in one binding).
    pub fn quantize_tensor(&self, x: &GpuTensor, scheme: QuantScheme) -> Result<GpuQuantizedTensor> {
        self.block_on(self.quantize_tensor_async(x, scheme))
    }

    /// Async form of [`Gpu::quantize_tensor`].
    pub async fn quantize_tensor_async(&self, x: &GpuTensor, scheme: QuantScheme) -> Result<GpuQuantizedTensor> {
        x.same_gpu(self, "input")?;
        let (rows, _) = rows_cols(x.shape());
        // One block: the tensor's range, bound in place.
        let input = Input { row0: 0, rows, data: x };
        let result = self.quantize_blocks(std::slice::from_ref(&input), x.dtype(), x.shape(), scheme).await;
        match result {
            Err(Error::NonFinite { what, position, index, .. }) => {
                let word = (index * x.dtype().size() / 4 * 4) as u64;
                let bytes = self.read_bytes(x.buffer(), x.offset() + word, 4).await?;
                let w = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                let value = match x.dtype() {
                    DType::F32 => f32::from_bits(w),
                    DType::F16 => half::f16::from_bits((w >> (16 * (index % 2))) as u16).to_f32(),
                    DType::BF16 => half::bf16::from_bits((w >> (16 * (index % 2))) as u16).to_f32(),
                };
                Err(Error::NonFinite { what, position, index, value })
            }
            other => other,
        }
    }

    async fn quantize_blocks(
        &self,
        inputs: &[Input<'_>],
        dtype: DType,
        shape: &[usize],
        scheme: QuantScheme,
    ) -> Result<GpuQuantizedTensor> {
        let layout = scheme.layout(shape)?;
        let (_, cols) = rows_cols(shape);
        let wpr = cols.div_ceil(4);
        let np = layout.num_params();
        let stats = self.zeroed_buffer("int8-wgpu stats", 8 * np as u64)?;
        let flags = self.zeroed_buffer("int8-wgpu flags", 8)?;
        let scales = self.zeroed_buffer("int8-wgpu scales", 4 * np as u64)?;
        let zero_points = self.zeroed_buffer("int8-wgpu zero points", 4 * np as u64)?;
        let fam = self.family(Family::Quantize)?;
        let epp = layout.elems_per_param();
        let run = STATS_RUN.min(epp);
        let runs_per_param = epp.div_ceil(run);
        if np.checked_mul(runs_per_param).is_none_or(|t| t >= u32::MAX as usize) {
            return Err(Error::TooLarge {
                what: "quantization work items".into(),
                size: (np * runs_per_param) as u64,
                limit: u64::from(u32::MAX),
            });
        }
        let mut blocks = Vec::with_capacity(inputs.len());
        let mut groups = Vec::with_capacity(inputs.len());
        for input in inputs {
            let buffer = self.zeroed_buffer("int8-wgpu packed weight", (input.rows * wpr * 4) as u64)?;
            let params = QuantizeParams {
                channels: layout.channels as u32,
                inner: layout.inner as u32,
                elems_per_param: epp as u32,
                num_params: np as u32,
                cols: cols as u32,
                words_per_row: wpr as u32,
                row0: input.row0 as u32,
                rows: input.rows as u32,
                elem0: (input.row0 * cols) as u32,
                elems: (input.rows * cols) as u32,
                run: run as u32,
                runs_per_param: runs_per_param as u32,
                asym: u32::from(scheme.has_zero_point()),
                ..Default::default()
            };
            let params = self.storage_buffer("int8-wgpu quantize params", bytemuck::bytes_of(&params))?;
            groups.push(self.bind_group(
                &fam,
                &[
                    (slot::PARAMS, &params),
                    (slot::OUT, &buffer),
                    (slot::Q_INPUT, input.data),
                    (slot::Q_STATS, &stats),
                    (slot::Q_FLAGS, &flags),
                    (slot::Q_SCALES, &scales),
                    (slot::Q_ZERO_POINTS, &zero_points),
                ],
            ));
            blocks.push(RowBlock { row0: input.row0, rows: input.rows, buffer });
        }
        let mut enc = self.device().create_command_encoder(&Default::default());
        if uses_quantize_runs(self, &layout, cols) {
            let runs_p = self.pipeline(Kernel::QuantizeRuns, Variant::new(dtype, DType::F32))?;
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&runs_p);
            for (g, b) in groups.iter().zip(&blocks) {
                pass.set_bind_group(0, g, &[]);
                let (gx, gy) = self.grid(((b.rows * cols / layout.inner) as u32).div_ceil(WG));
                pass.dispatch_workgroups(gx, gy, 1);
            }
        } else {
            let stats_p = self.pipeline(Kernel::Stats, Variant::new(dtype, DType::F32))?;
            let fin_p = self.pipeline(Kernel::Finalize, Variant::new(dtype, DType::F32))?;
            let quant_p = self.pipeline(Kernel::Quantize, Variant::new(dtype, DType::F32))?;
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&stats_p);
            for g in &groups {
                pass.set_bind_group(0, g, &[]);
                let (gx, gy) = self.grid(((np * runs_per_param) as u32).div_ceil(WG));
                pass.dispatch_workgroups(gx, gy, 1);
            }
            pass.set_pipeline(&fin_p);
            pass.set_bind_group(0, &groups[0], &[]);
            let (gx, gy) = self.grid((np as u32).div_ceil(WG));
            pass.dispatch_workgroups(gx, gy, 1);
            pass.set_pipeline(&quant_p);
            for (g, b) in groups.iter().zip(&blocks) {
                pass.set_bind_group(0, g, &[]);
                let (gx, gy) = self.grid(((b.rows * wpr) as u32).div_ceil(WG));
                pass.dispatch_workgroups(gx, gy, 1);
            }
        }
        self.queue().submit([enc.finish()]);
        let f = self.read_bytes(&flags, 0, 8).await?;
        let bad = u32::from_le_bytes([f[0], f[1], f[2], f[3]]);
        let overflow = u32::from_le_bytes([f[4], f[5], f[6], f[7]]);
        if bad != 0 {
            let index = (!bad) as usize;
            return Err(Error::NonFinite {
                what: "weight".into(),
                position: unravel(index, shape),
                index,
                value: f32::NAN,
            });
        }
        if overflow != 0 {
            let symmetric = scheme.mode == Mode::Symmetric;
            return Err(Error::RangeOverflow { param: (!overflow) as usize, symmetric });
        }
        Ok(GpuQuantizedTensor {
            gpu: self.clone(),
            shape: shape.to_vec(),
            scheme,
            layout,
            blocks,
            scales,
            zero_points,
            offset_binary: false,
        })
    }
}

#[cfg(test)]
mod tests {
    /// The finalize kernel's scale bounds are `quantized::max_scale`, written as bits.
    #[test]
    fn shader_scale_bounds_are_max_scale() {
        let src = include_str!("../../shaders/quantize.wgsl");
        for mode in [crate::Mode::Symmetric, crate::Mode::Asymmetric] {
            let bits = format!("bitcast<f32>({:#x}u)", crate::quantized::max_scale(mode).to_bits());
            assert!(src.contains(&bits), "quantize.wgsl lacks {bits} ({mode:?})");
        }
    }
}
