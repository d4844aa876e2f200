//! Host side of `gemv.wgsl` and `gemm.wgsl`: kernel choice and dispatch of the fused linear.

use bytemuck::{Pod, Zeroable};

use crate::gpu::kernels::{Family, Kernel};
use crate::gpu::{Gpu, GpuQuantizedTensor};
use crate::{DType, Result};

/// Activation rows up to which the GEMV kernel (one pass over the weights) is used.
pub const GEMV_MAX_ROWS: usize = 8;
const GEMV_WG: usize = 64;
const GEMV_ROWS: usize = 2;
const GEMM_TILE: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct LinearParams {
    m: u32,
    n: u32,
    k: u32,
    words_per_row: u32,
    row0: u32,
    rows: u32,
    inner: u32,
    channels: u32,
    chunk: u32,
    has_bias: u32,
    _pad: [u32; 2],
}

/// Which kernel serves `m` activation rows.
pub(crate) fn kernel_for(m: usize) -> Kernel {
    if m <= GEMV_MAX_ROWS { Kernel::Gemv } else { Kernel::Gemm }
}

/// The uniform parameters of each row block for `m` activation rows.
pub(crate) fn block_params(w: &GpuQuantizedTensor, m: usize, has_bias: bool) -> Vec<LinearParams> {
    let (n, k) = (w.shape()[0], w.shape()[1]);
    let l = w.layout();
    // Each GEMV thread takes chunks of k; a multiple of 4 keeps chunks word-aligned.
    let chunk = k.div_ceil(GEMV_WG).next_multiple_of(4).max(4);
    w.blocks
        .iter()
        .map(|b| LinearParams {
            m: m as u32,
            n: n as u32,
            k: k as u32,
            words_per_row: k.div_ceil(4) as u32,
            row0: b.row0 as u32,
            rows: b.rows as u32,
            inner: l.inner as u32,
            channels: l.channels as u32,
            chunk: chunk as u32,
            has_bias: u32::from(has_bias),
            _pad: [0; 2],
        })
        .collect()
}

/// Records the fused linear `y = x · dequant(w)ᵀ + bias` for `m` rows into `enc`.
///
/// `uniforms[i]` must already hold `block_params(..)[i]`. 16-bit outputs are OR-ed into `y`,
/// so `y` is cleared first.
#[allow(clippy::too_many_arguments)]
pub(crate) fn encode_linear(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    w: &GpuQuantizedTensor,
    uniforms: &[wgpu::Buffer],
    dtype: DType,
    m: usize,
    x: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<()> {
    let kernel = kernel_for(m);
    let fam = gpu.family(kernel.family())?;
    debug_assert!(matches!(kernel.family(), Family::Gemv | Family::Gemm));
    let pipeline = gpu.pipeline(kernel, dtype, dtype)?;
    let groups: Vec<(wgpu::BindGroup, u32)> = w
        .blocks
        .iter()
        .zip(uniforms)
        .map(|(b, u)| {
            let g = gpu.bind_group(
                &fam,
                &[(0, u), (1, y), (2, x), (3, &b.buffer), (4, &w.scales), (5, &w.zero_points), (6, bias)],
            );
            let n = match kernel {
                Kernel::Gemv => b.rows.div_ceil(GEMV_ROWS),
                _ => b.rows.div_ceil(GEMM_TILE) * m.div_ceil(GEMM_TILE),
            };
            (g, n as u32)
        })
        .collect();
    if dtype != DType::F32 {
        enc.clear_buffer(y, 0, None);
    }
    let mut pass = enc.begin_compute_pass(&Default::default());
    pass.set_pipeline(&pipeline);
    for (g, n) in &groups {
        pass.set_bind_group(0, g, &[]);
        let (gx, gy) = gpu.grid(*n);
        pass.dispatch_workgroups(gx, gy, 1);
    }
    Ok(())
}
