//! GPU-resident quantized tensors: packed int8 row blocks, scales and zero points; uploads
//! (from host ints or compressed-tensors words), readback and dequantize (`dequantize.wgsl`).

use crate::gpu::bindings::slot;
use crate::gpu::family::Family;
use crate::gpu::params::{self, DequantizeParams};
use crate::gpu::shaders::{Kernel, Variant};
use crate::gpu::tensor::check_numel;
use crate::gpu::{Gpu, GpuTensor};
use crate::quantized::{check_params, pack_rows, unpack_rows};
use crate::scheme::ParamLayout;
use crate::{DType, Error, QuantScheme, QuantizedTensor, Result};

/// A quantized tensor on the GPU: packed int8 rows (four per `u32`, each row zero-padded to a
/// multiple of four), f32 scales and i32 zero points.
///
/// Rows are split into blocks of separate buffers when the packed weight exceeds the device's
/// `max_storage_buffer_binding_size`; kernels run once per block.
///
/// Cloning is cheap: it clones handles of the device buffers (reference counted by wgpu), and
/// nothing is copied or quantized again, so
/// one weight serves several layers, e.g. an f32 and a bf16 view of one model:
///
/// ```
/// # use int8_wgpu::{DType, Gpu, QuantScheme, QuantizedLinear};
/// # fn main() -> Result<(), int8_wgpu::Error> {
/// # let Ok(gpu) = Gpu::new() else { return Ok(()) };
/// let w = gpu.quantize(&[0.5f32, -1.0, 0.25, 2.0], &[2, 2], QuantScheme::default())?;
/// let f32_layer = QuantizedLinear::from_gpu(w.clone(), None::<&[f32]>, DType::F32)?;
/// let bf16_layer = QuantizedLinear::from_gpu(w, None::<&[f32]>, DType::BF16)?;
/// assert_eq!(f32_layer.weight().nbytes(), bf16_layer.weight().nbytes());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct GpuQuantizedTensor {
    pub(crate) gpu: Gpu,
    pub(crate) shape: Vec<usize>,
    pub(crate) scheme: QuantScheme,
    pub(crate) layout: ParamLayout,
    pub(crate) blocks: Vec<RowBlock>,
    pub(crate) scales: wgpu::Buffer,
    pub(crate) zero_points: wgpu::Buffer,
    /// Bytes hold `q + 128` (compressed-tensors' layout); kernels XOR them back.
    pub(crate) offset_binary: bool,
}

/// Rows `row0 .. row0 + rows` of a 2-D view, in their own buffer.
#[derive(Clone, Debug)]
pub(crate) struct RowBlock {
    pub(crate) row0: usize,
    pub(crate) rows: usize,
    pub(crate) buffer: wgpu::Buffer,
}

const WG: u32 = params::WG as u32;

/// `(rows, cols)` of the 2-D view whose rows are the last axis.
pub(crate) fn rows_cols(shape: &[usize]) -> (usize, usize) {
    let cols = *shape.last().expect("checked shape");
    (shape.iter().product::<usize>() / cols, cols)
}

/// Splits `rows` rows of `row_bytes` each into blocks that each fit in one binding.
pub(crate) fn row_blocks(gpu: &Gpu, rows: usize, row_bytes: usize, what: &str) -> Result<Vec<(usize, usize)>> {
    let limit = gpu.max_binding_size() as usize;
    let per = (limit / row_bytes.div_ceil(4).max(1) / 4).min(rows);
    if per == 0 {
        return Err(Error::TooLarge {
            what: format!("one row of {what}"),
            size: row_bytes as u64,
            limit: limit as u64,
        });
    }
    Ok((0..rows).step_by(per).map(|r| (r, per.min(rows - r))).collect())
}

impl GpuQuantizedTensor {
    /// Uploads a host quantized tensor (e.g. int8 weights and scales from a checkpoint).
    pub fn from_host(gpu: &Gpu, q: &QuantizedTensor) -> Result<Self> {
        check_numel(q.shape(), "quantized tensor")?;
        let (rows, cols) = q.rows_cols();
        let wpr = cols.div_ceil(4);
        let mut blocks = Vec::new();
        for (row0, n) in row_blocks(gpu, rows, wpr * 4, "the packed weight")? {
            let words = pack_rows(&q.values()[row0 * cols..(row0 + n) * cols], n, cols);
            blocks.push(RowBlock {
                row0,
                rows: n,
                buffer: gpu.storage_buffer("int8-wgpu packed weight", bytemuck::cast_slice(&words))?,
            });
        }
        let zps: Vec<i32> = (0..q.layout().num_params()).map(|p| i32::from(q.zero_point(p))).collect();
        Ok(Self {
            gpu: gpu.clone(),
            shape: q.shape().to_vec(),
            scheme: q.scheme(),
            layout: q.layout(),
            blocks,
            scales: gpu.storage_buffer("int8-wgpu scales", bytemuck::cast_slice(q.scales()))?,
            zero_points: gpu.storage_buffer("int8-wgpu zero points", bytemuck::cast_slice(&zps))?,
            offset_binary: false,
        })
    }

    /// Adopts int8 rows already packed four per `u32` — `[rows, ceil(cols / 4)]` words, row
    /// `r`'s element `4i + j` in byte `j` of word `i`, rows zero-padded — without repacking.
    ///
    /// With `offset_binary`, each byte holds `q + 128` (`q ^ 0x80`), as compressed-tensors'
    /// `pack-quantized` format stores it (its `weight_packed` I32 tensor, read little-endian);
    /// the kernels flip the bits as they load. `scales` and `zero_points` are per parameter of
    /// `scheme` on `shape` (zero points only for asymmetric schemes).
    pub fn from_packed(
        gpu: &Gpu,
        shape: &[usize],
        scheme: QuantScheme,
        words: &[u32],
        offset_binary: bool,
        scales: &[f32],
        zero_points: Option<&[i8]>,
    ) -> Result<Self> {
        check_numel(shape, "quantized tensor")?;
        let (rows, cols) = rows_cols(shape);
        let wpr = cols.div_ceil(4);
        if words.len() != rows * wpr {
            return Err(Error::Shape(format!(
                "{} packed words given; shape {shape:?} needs {rows} rows of {wpr}",
                words.len()
            )));
        }
        let layout = scheme.layout(shape)?;
        check_params(scheme, shape, layout, scales, zero_points)?;
        let mut blocks = Vec::new();
        for (row0, n) in row_blocks(gpu, rows, wpr * 4, "the packed weight")? {
            let data = &words[row0 * wpr..(row0 + n) * wpr];
            blocks.push(RowBlock {
                row0,
                rows: n,
                buffer: gpu.storage_buffer("int8-wgpu packed weight", bytemuck::cast_slice(data))?,
            });
        }
        let zps: Vec<i32> = match zero_points {
            Some(z) => z.iter().map(|&v| i32::from(v)).collect(),
            None => vec![0; layout.num_params()],
        };
        Ok(Self {
            gpu: gpu.clone(),
            shape: shape.to_vec(),
            scheme,
            layout,
            blocks,
            scales: gpu.storage_buffer("int8-wgpu scales", bytemuck::cast_slice(scales))?,
            zero_points: gpu.storage_buffer("int8-wgpu zero points", bytemuck::cast_slice(&zps))?,
            offset_binary,
        })
    }

    /// The mask the kernels XOR each loaded word with.
    pub(crate) fn xor_mask(&self) -> u32 {
        if self.offset_binary { 0x8080_8080 } else { 0 }
    }

    /// The logical shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The scheme.
    pub fn scheme(&self) -> QuantScheme {
        self.scheme
    }

    /// Which elements share each scale.
    pub fn layout(&self) -> ParamLayout {
        self.layout
    }

    /// How many row blocks (separate buffers) hold the packed weight.
    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// The device it lives on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Bytes on the device: packed int8 rows, f32 scales and i32 zero points.
    pub fn nbytes(&self) -> u64 {
        self.blocks.iter().map(|b| b.buffer.size()).sum::<u64>() + self.scales.size() + self.zero_points.size()
    }

    /// Reads the ints, scales and zero points back into a host [`QuantizedTensor`].
    pub async fn to_host_async(&self) -> Result<QuantizedTensor> {
        let (_, cols) = rows_cols(&self.shape);
        let mut values = Vec::with_capacity(self.shape.iter().product());
        for b in &self.blocks {
            let bytes = self.gpu.read_bytes(&b.buffer, 0, b.buffer.size()).await?;
            let words: Vec<u32> =
                bytemuck::pod_collect_to_vec::<u8, u32>(&bytes).into_iter().map(|w| w ^ self.xor_mask()).collect();
            values.extend(unpack_rows(&words, b.rows, cols));
        }
        let np = self.layout.num_params() as u64;
        let scales = self.gpu.read_bytes(&self.scales, 0, 4 * np).await?;
        let zps: Vec<i32> = bytemuck::pod_collect_to_vec(&self.gpu.read_bytes(&self.zero_points, 0, 4 * np).await?);
        let zps = self.scheme.has_zero_point().then(|| zps.into_iter().map(|z| z as i8).collect());
        QuantizedTensor::new(&self.shape, self.scheme, values, bytemuck::pod_collect_to_vec(&scales), zps)
    }

    /// Blocking form of [`GpuQuantizedTensor::to_host_async`].
    pub fn to_host(&self) -> Result<QuantizedTensor> {
        self.gpu.block_on(self.to_host_async())
    }

    /// Dequantizes on the GPU into a new tensor of `dtype` (f32 results equal the CPU's bits);
    /// a value beyond a 16-bit `dtype`'s range is an [`Error::Overflow`].
    pub fn dequantize(&self, dtype: DType) -> Result<GpuTensor> {
        self.gpu.block_on(self.dequantize_async(dtype))
    }

    /// Async form of [`GpuQuantizedTensor::dequantize`] (16-bit outputs may read the scales back).
    pub async fn dequantize_async(&self, dtype: DType) -> Result<GpuTensor> {
        let out = GpuTensor::zeros(&self.gpu, &self.shape, dtype)?;
        let (_, cols) = rows_cols(&self.shape);
        let fam = self.gpu.family(Family::Dequantize)?;
        let pipeline = self.gpu.pipeline(Kernel::Dequantize, Variant::new(DType::F32, dtype))?;
        let mut enc = self.gpu.device().create_command_encoder(&Default::default());
        let mut groups = Vec::new();
        for b in &self.blocks {
            let params = DequantizeParams {
                channels: self.layout.channels as u32,
                inner: self.layout.inner as u32,
                cols: cols as u32,
                words_per_row: cols.div_ceil(4) as u32,
                row0: b.row0 as u32,
                rows: b.rows as u32,
                xor_mask: self.xor_mask(),
                ..Default::default()
            };
            let params = self.gpu.storage_buffer("int8-wgpu dequantize params", bytemuck::bytes_of(&params))?;
            let g = self.gpu.bind_group(
                &fam,
                &[
                    (slot::PARAMS, &params),
                    (slot::OUT, &out),
                    (slot::DQ_WEIGHTS, &b.buffer),
                    (slot::DQ_SCALES, &self.scales),
                    (slot::DQ_ZERO_POINTS, &self.zero_points),
                ],
            );
            groups.push((g, (b.rows * cols) as u32));
        }
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            for (g, n) in &groups {
                pass.set_bind_group(0, g, &[]);
                let (gx, gy) = self.gpu.grid(n.div_ceil(WG));
                pass.dispatch_workgroups(gx, gy, 1);
            }
        }
        self.gpu.queue().submit([enc.finish()]);
        self.check_dequantized(&out).await?;
        Ok(out)
    }

    /// An [`Error::Overflow`] where a dequantized value is beyond `out`'s 16-bit dtype. Read
    /// back only where the scales allow one (|q - zero point| ≤ 255 times the largest scale
    /// reaches the dtype's range); f32 results are finite by the scales' own check.
    async fn check_dequantized(&self, out: &GpuTensor) -> Result<()> {
        let max = match out.dtype() {
            DType::F32 => return Ok(()),
            DType::F16 => f32::from(half::f16::MAX),
            DType::BF16 => f32::from(half::bf16::MAX),
        };
        let np = self.layout.num_params();
        let scales: Vec<f32> =
            bytemuck::pod_collect_to_vec(&self.gpu.read_bytes(&self.scales, 0, 4 * np as u64).await?);
        if scales.iter().all(|s| 255.0 * f64::from(*s) < f64::from(max)) {
            return Ok(());
        }
        let y: Vec<f32> = match out.dtype() {
            DType::F16 => out.read_async::<half::f16>().await?.into_iter().map(f32::from).collect(),
            _ => out.read_async::<half::bf16>().await?.into_iter().map(f32::from).collect(),
        };
        match crate::check::find_non_finite(&y) {
            None => Ok(()),
            Some((index, value)) => Err(Error::Overflow {
                what: format!("the dequantized weight ({})", out.dtype()),
                dtype: out.dtype(),
                position: crate::scheme::unravel(index, &self.shape),
                index,
                value,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clone shares the weight's device buffers: layers built from clones hold one weight.
    #[test]
    fn clones_share_the_device_buffers() {
        let Ok(gpu) = Gpu::new() else { return };
        let w =
            gpu.quantize(&[0.5f32, -1.0, 2.0, 0.25, 1.5, -0.75, 0.0, 1.0], &[2, 4], QuantScheme::default()).unwrap();
        let c = w.clone();
        assert_eq!(w.blocks.len(), c.blocks.len());
        assert!(w.blocks.iter().zip(&c.blocks).all(|(a, b)| a.buffer == b.buffer));
        assert!(w.scales == c.scales && w.zero_points == c.zero_points);
    }
}
