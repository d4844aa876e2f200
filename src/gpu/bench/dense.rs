//! The "no quantization" yardstick: a dense f32 linear layer run by the same GEMV/GEMM kernels
//! as the int8 layer, so `int8 vs dense` isolates what the int8 weight costs or saves.

use bytemuck::Zeroable;

use crate::gpu::bench::{Timing, time_passes};
use crate::gpu::linear::{DeviceFacts, Prepared, gemm_min_rows, gemv_rows_per_group, workgroups};
use crate::gpu::params::{GEMV_MAX_ROWS, LinearParams};
use crate::gpu::quantized_tensor::{RowBlock, row_blocks};
use crate::gpu::shaders::{Kernel, Variant};
use crate::gpu::{Gpu, GpuTensor};
use crate::{DType, Error, Result};

/// A plain f32 linear layer `y = x · Wᵀ` run by the same GEMV/GEMM kernels with f32 weights.
#[derive(Debug)]
pub struct DenseLinear {
    gpu: Gpu,
    n: usize,
    k: usize,
    blocks: Vec<RowBlock>,
    placeholder: wgpu::Buffer,
}

impl DenseLinear {
    /// Uploads an f32 weight `[out, in]`; `in` must be a multiple of 16.
    pub fn new(gpu: &Gpu, weight: &[f32], [n, k]: [usize; 2]) -> Result<Self> {
        if n == 0 || k == 0 || !k.is_multiple_of(16) || weight.len() != n * k {
            return Err(Error::Shape(format!("dense weight [{n}, {k}] with {} values (in % 16 == 0)", weight.len())));
        }
        let mut blocks = Vec::new();
        for (row0, rows) in row_blocks(gpu, n, 4 * k, "the dense weight")? {
            let data = &weight[row0 * k..(row0 + rows) * k];
            blocks.push(RowBlock {
                row0,
                rows,
                buffer: gpu.storage_buffer("int8-wgpu dense", bytemuck::cast_slice(data))?,
            });
        }
        Ok(Self { gpu: gpu.clone(), n, k, blocks, placeholder: gpu.zeroed_buffer("int8-wgpu placeholder", 16)? })
    }

    fn prepare(&self, x: &GpuTensor, y: &GpuTensor) -> Result<Prepared> {
        x.same_gpu(&self.gpu, "input")?;
        if x.dtype() != DType::F32 || !x.numel().is_multiple_of(self.k) || y.numel() != x.numel() / self.k * self.n {
            return Err(Error::Shape("dense linear takes f32 [m, in] and writes f32 [m, out]".into()));
        }
        let m = x.numel() / self.k;
        // The same kernel choice as the int8 layer: GEMV passes of 8 rows below the GEMM.
        let kernel = if m < gemm_min_rows(&DeviceFacts::of(&self.gpu), self.k, false) {
            Kernel::GemvDense
        } else {
            Kernel::GemmDense
        };
        let mut v = Variant::new(DType::F32, DType::F32);
        if kernel == Kernel::GemvDense {
            v.subgroups = self.gpu.uses_subgroup_reductions();
            v.rpt = gemv_rows_per_group(&self.gpu, self.n);
        }
        let fam = self.gpu.family(kernel.family(v))?;
        let pipeline = self.gpu.pipeline(kernel, v)?;
        let pass = if kernel == Kernel::GemmDense { m } else { GEMV_MAX_ROWS };
        let mut groups = Vec::new();
        for m0 in (0..m).step_by(pass) {
            let rows = (m - m0).min(pass);
            for b in &self.blocks {
                let params = LinearParams {
                    m: rows as u32,
                    n: self.n as u32,
                    k: self.k as u32,
                    words_per_row: self.k as u32,
                    row0: b.row0 as u32,
                    rows: b.rows as u32,
                    inner: 1,
                    channels: 1,
                    m0: m0 as u32,
                    ..LinearParams::zeroed()
                };
                let u = self.gpu.storage_buffer("int8-wgpu dense params", bytemuck::bytes_of(&params))?;
                let ph = &self.placeholder;
                let g = self.gpu.bind_group(
                    &fam,
                    &[(0, &u), (1, y.buffer()), (2, x.buffer()), (3, &b.buffer), (4, ph), (5, ph), (6, ph)],
                );
                groups.push((g, self.gpu.grid(workgroups(kernel, v.rpt, b.rows, rows))));
            }
        }
        Ok(Prepared { pipeline, groups })
    }

    /// Runs the layer on `x` (`[m, in]` f32) into a new `[m, out]` tensor.
    pub fn forward(&self, x: &GpuTensor) -> Result<GpuTensor> {
        let y = GpuTensor::zeros(&self.gpu, &[x.numel() / self.k, self.n], DType::F32)?;
        let prepared = self.prepare(x, &y)?;
        let mut enc = self.gpu.device().create_command_encoder(&Default::default());
        prepared.record(&mut enc.begin_compute_pass(&Default::default()));
        self.gpu.queue().submit([enc.finish()]);
        Ok(y)
    }

    /// Times `iters` forwards recorded into one pass.
    pub fn time_forward(&self, x: &GpuTensor, iters: u32) -> Result<Timing> {
        let y = GpuTensor::zeros(&self.gpu, &[x.numel() / self.k, self.n], DType::F32)?;
        let prepared = self.prepare(x, &y)?;
        time_passes(&self.gpu, iters, |_| {}, |pass| prepared.record(pass))
    }
}
