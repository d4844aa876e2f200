//! The token embedding table on the GPU: f32, or a Q8_0 table kept as int8 and scales, read
//! one row per token by the `embed` kernels of `ops.wgsl`.

use half::f16;
use int8_wgpu::Gpu;
use int8_wgpu::gguf::{GgmlType, Gguf};

use crate::Result;
use crate::ops::{self, Dispatch, Kernel, Kernels, Params, Variant, slot};

/// Values per Q8_0 block, each block an f16 `d` then 32 int8 `q`.
const QK: usize = 32;

/// The token embedding table `[vocab, hidden]`, as the `embed` kernels read it.
pub enum Embedding {
    /// f32 values (the GGUF's dequantized).
    F32(wgpu::Buffer),
    /// A Q8_0 table as stored: the ints packed four per `u32` (element `4i + j` of the flat
    /// table in byte `j` of word `i`) and each block's f16 `d` widened to f32, one per 32
    /// values, sign and zero kept, so `f32(q) · d` is the f32 table's value bit for bit.
    Q8_0 {
        /// The packed ints.
        ints: wgpu::Buffer,
        /// The blocks' scales.
        scales: wgpu::Buffer,
    },
}

impl Embedding {
    /// Bytes on the GPU.
    pub fn nbytes(&self) -> u64 {
        match self {
            Embedding::F32(b) => b.size(),
            Embedding::Q8_0 { ints, scales } => ints.size() + scales.size(),
        }
    }

    /// The lookup of `params.m` token ids into `out` (`[m, params.n]` f32).
    pub fn dispatch(
        &self,
        kernels: &Kernels,
        params: Params,
        ids: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> Result<Dispatch> {
        let [i0, i1, i2, ..] = slot::IN;
        let o0 = slot::OUT[0];
        match self {
            Embedding::F32(table) => {
                kernels.dispatch(Kernel::Embed, Variant::default(), params, &[(i0, ids), (i1, table), (o0, out)])
            }
            Embedding::Q8_0 { ints, scales } => {
                let binds = [(i0, ids), (i1, ints), (i2, scales), (o0, out)];
                kernels.dispatch(Kernel::EmbedQ8, Variant::default(), params, &binds)
            }
        }
    }
}

/// Uploads the Q8_0 tensor `name` of `shape` as stored. Its blocks are read from the file's
/// bytes rather than [`Gguf::tensor_q8_0`], which rewrites a block with `d <= 0` as positive
/// scales (the same values up to the sign of a zero); the kernel's `f32(q) · d` is then the
/// product [`Gguf::tensor_f32`] computes, zeros included.
pub fn q8_0(gpu: &Gpu, gguf: &Gguf, name: &str, shape: [usize; 2]) -> Result<Embedding> {
    let info = gguf.tensor(name)?;
    if info.shape() != shape || info.ggml_type() != GgmlType::Q8_0 || !shape[1].is_multiple_of(QK) {
        return Err(format!(
            "GGUF tensor `{name}` is {} of shape {:?}; the model needs Q8_0 rows of {shape:?}",
            info.ggml_type(),
            info.shape()
        )
        .into());
    }
    let data = gguf.tensor_bytes(name)?;
    let blocks = shape[0] * shape[1] / QK;
    if data.len() != blocks * (2 + QK) {
        return Err(format!("GGUF tensor `{name}` holds {} bytes, not {blocks} Q8_0 blocks", data.len()).into());
    }
    let mut scales = Vec::with_capacity(blocks);
    let mut ints = Vec::with_capacity(blocks * QK / 4);
    for (i, b) in data.chunks_exact(2 + QK).enumerate() {
        let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
        // An infinite or NaN d makes every value of the block non-finite (0 · inf is NaN),
        // which the f32 table refuses too.
        if !d.is_finite() {
            return Err(format!("GGUF tensor `{name}`: block {i} has scale d = {d}").into());
        }
        scales.push(d);
        ints.extend(b[2..].chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])));
    }
    Ok(Embedding::Q8_0 {
        ints: ops::storage(gpu, name, 4 * ints.len() as u64, Some(bytemuck::cast_slice(&ints)))?,
        scales: ops::storage(gpu, &format!("{name} scales"), 4 * blocks as u64, Some(bytemuck::cast_slice(&scales)))?,
    })
}
