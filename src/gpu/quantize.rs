//! Host side of `quantize.wgsl` and `dequantize.wgsl`: GPU-resident quantized tensors.

use crate::gpu::kernels::{Family, Kernel, Variant};
use crate::gpu::params::{self, DequantizeParams, QuantizeParams, slot};
use crate::gpu::tensor::check_numel;
use crate::gpu::{Gpu, GpuTensor};
use crate::quantized::{check_params, pack_rows, unpack_rows};
use crate::reference::check_finite;
use crate::scheme::{ParamLayout, check_shape, unravel};
use crate::{DType, Element, Error, QuantScheme, QuantizedTensor, Result};

/// A quantized tensor on the GPU: packed int8 rows (four per `u32`, each row zero-padded to a
/// multiple of four), f32 scales and i32 zero points.
///
/// Rows are split into blocks of separate buffers when the packed weight exceeds the device's
/// `max_storage_buffer_binding_size`; kernels run once per block.
#[derive(Debug)]
pub struct GpuQuantizedTensor {
    gpu: Gpu,
    shape: Vec<usize>,
    scheme: QuantScheme,
    layout: ParamLayout,
    pub(crate) blocks: Vec<RowBlock>,
    pub(crate) scales: wgpu::Buffer,
    pub(crate) zero_points: wgpu::Buffer,
    /// Bytes hold `q + 128` (compressed-tensors' layout); kernels XOR them back.
    offset_binary: bool,
}

/// Rows `row0 .. row0 + rows` of a 2-D view, in their own buffer.
#[derive(Debug)]
pub(crate) struct RowBlock {
    pub(crate) row0: usize,
    pub(crate) rows: usize,
    pub(crate) buffer: wgpu::Buffer,
}

const WG: u32 = params::WG as u32;
const STATS_RUN: usize = 256;

/// `(rows, cols)` of the 2-D view whose rows are the last axis.
fn rows_cols(shape: &[usize]) -> (usize, usize) {
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

impl Gpu {
    /// Quantizes a host tensor on the GPU. The input is streamed to the device in row blocks,
    /// so weights larger than one storage binding work. Ints and scales equal
    /// [`reference::quantize`](crate::reference::quantize) bit for bit.
    pub fn quantize<T: Element>(&self, x: &[T], shape: &[usize], scheme: QuantScheme) -> Result<GpuQuantizedTensor> {
        pollster::block_on(self.quantize_async(x, shape, scheme))
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
        let mut inputs = Vec::new();
        for (row0, n) in row_blocks(self, rows, cols * T::DTYPE.size(), "the float weight")? {
            let data = &x[row0 * cols..(row0 + n) * cols];
            inputs.push(RowBlock {
                row0,
                rows: n,
                buffer: self.storage_buffer("int8-wgpu weight", bytemuck::cast_slice(data))?,
            });
        }
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
        pollster::block_on(self.quantize_tensor_async(x, scheme))
    }

    /// Async form of [`Gpu::quantize_tensor`].
    pub async fn quantize_tensor_async(&self, x: &GpuTensor, scheme: QuantScheme) -> Result<GpuQuantizedTensor> {
        x.same_gpu(self)?;
        let (rows, _) = rows_cols(x.shape());
        // The block shares the tensor's buffer; wgpu buffers are reference counted.
        let input = RowBlock { row0: 0, rows, buffer: x.buffer().clone() };
        let result = self.quantize_blocks(std::slice::from_ref(&input), x.dtype(), x.shape(), scheme).await;
        match result {
            Err(Error::NonFinite { what, position, index, .. }) => {
                let word = (index * x.dtype().size() / 4 * 4) as u64;
                let bytes = self.read_bytes(x.buffer(), word, 4).await?;
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
        inputs: &[RowBlock],
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
            let uniform = self.uniform_buffer("int8-wgpu quantize params", bytemuck::bytes_of(&params))?;
            groups.push(self.bind_group(
                &fam,
                &[
                    (slot::PARAMS, &uniform),
                    (slot::OUT, &buffer),
                    (slot::Q_INPUT, &input.buffer),
                    (slot::Q_STATS, &stats),
                    (slot::Q_FLAGS, &flags),
                    (slot::Q_SCALES, &scales),
                    (slot::Q_ZERO_POINTS, &zero_points),
                ],
            ));
            blocks.push(RowBlock { row0: input.row0, rows: input.rows, buffer });
        }
        let stats_p = self.pipeline(Kernel::Stats, Variant::new(dtype, DType::F32))?;
        let fin_p = self.pipeline(Kernel::Finalize, Variant::new(dtype, DType::F32))?;
        let quant_p = self.pipeline(Kernel::Quantize, Variant::new(dtype, DType::F32))?;
        let mut enc = self.device().create_command_encoder(&Default::default());
        {
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
            return Err(Error::RangeOverflow { param: (!overflow) as usize });
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
        pollster::block_on(self.to_host_async())
    }

    /// Dequantizes on the GPU into a new tensor of `dtype` (f32 results equal the CPU's bits).
    pub fn dequantize(&self, dtype: DType) -> Result<GpuTensor> {
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
            let uniform = self.gpu.uniform_buffer("int8-wgpu dequantize params", bytemuck::bytes_of(&params))?;
            let g = self.gpu.bind_group(
                &fam,
                &[
                    (slot::PARAMS, &uniform),
                    (slot::OUT, out.buffer()),
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
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;

    /// The finalize kernel's scale bounds are `quantized::max_scale`, written as bits.
    #[test]
    fn shader_scale_bounds_are_max_scale() {
        let src = include_str!("../../shaders/quantize.wgsl");
        for mode in [crate::Mode::Symmetric, crate::Mode::Asymmetric] {
            let bits = format!("bitcast<f32>({:#x}u)", crate::quantized::max_scale(mode).to_bits());
            assert!(src.contains(&bits), "quantize.wgsl lacks {bits} ({mode:?})");
        }
    }

    /// The test device (as `tests/common`): under `CI=true` a missing adapter fails the test,
    /// elsewhere the test reports itself skipped.
    fn gpu_or_skip() -> Option<Gpu> {
        match Gpu::new() {
            Ok(g) => {
                eprintln!("GPU tests run on: {}", g.describe());
                Some(g)
            }
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
                panic!("CI=true and no GPU adapter: {e}")
            }
            Err(e) => {
                eprintln!("SKIPPED: no GPU adapter ({e})");
                None
            }
        }
    }

    /// Runs `div_check_main` on `(a, b, zp)` cases. Per case: the bits of `div_rn(a, b)`, then
    /// `quantize_value`, `quantize_with` from a quotient off by a few ULP, `quantize_exact`.
    fn div_check(gpu: &Gpu, cases: &[(f32, f32, i8)]) -> Vec<[u32; 4]> {
        const CHUNK: usize = 1 << 18;
        let fam = gpu.family(Family::DivCheck).unwrap();
        let pipeline = gpu.pipeline(Kernel::DivCheck, Variant::new(DType::F32, DType::F32)).unwrap();
        let unused: Vec<wgpu::Buffer> = (0..4).map(|_| gpu.zeroed_buffer("unused", 16).unwrap()).collect();
        let mut found = Vec::with_capacity(cases.len());
        for chunk in cases.chunks(CHUNK) {
            let words: Vec<u32> =
                chunk.iter().flat_map(|&(a, b, zp)| [a.to_bits(), b.to_bits(), i32::from(zp) as u32]).collect();
            let input = gpu.storage_buffer("div check cases", bytemuck::cast_slice(&words)).unwrap();
            let out = gpu.zeroed_buffer("div check results", 16 * chunk.len() as u64).unwrap();
            let params = QuantizeParams { elems: chunk.len() as u32, ..Default::default() };
            let uniform = gpu.uniform_buffer("div check params", bytemuck::bytes_of(&params)).unwrap();
            let group = gpu.bind_group(
                &fam,
                &[
                    (slot::PARAMS, &uniform),
                    (slot::OUT, &out),
                    (slot::Q_INPUT, &input),
                    (slot::Q_STATS, &unused[0]),
                    (slot::Q_FLAGS, &unused[1]),
                    (slot::Q_SCALES, &unused[2]),
                    (slot::Q_ZERO_POINTS, &unused[3]),
                ],
            );
            let mut enc = gpu.device().create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, &group, &[]);
                let (gx, gy) = gpu.grid((chunk.len() as u32).div_ceil(WG));
                pass.dispatch_workgroups(gx, gy, 1);
            }
            gpu.queue().submit([enc.finish()]);
            let bytes = pollster::block_on(gpu.read_bytes(&out, 0, out.size())).unwrap();
            found.extend(bytemuck::pod_collect_to_vec::<u8, [u32; 4]>(&bytes));
        }
        found
    }

    /// xorshift64, so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        /// Uniform in `lo ..= hi`.
        fn range(&mut self, lo: i64, hi: i64) -> i64 {
            lo + (self.next() % (hi - lo + 1) as u64) as i64
        }

        fn zp(&mut self) -> i8 {
            self.range(-128, 127) as i8
        }

        /// A normal f32 with biased exponent `e` and a random significand and sign (or positive).
        fn normal(&mut self, e: i64, signed: bool) -> f32 {
            let sign = if signed { (self.next() as u32) & 0x8000_0000 } else { 0 };
            f32::from_bits(sign | ((e as u32) << 23) | ((self.next() >> 41) as u32 & 0x7f_ffff))
        }
    }

    /// `f32` from an exactly representable `f64` (asserts it is).
    fn exact(v: f64) -> f32 {
        assert_eq!(f64::from(v as f32), v, "{v:e} is not an f32");
        v as f32
    }

    /// The cases: random pairs over the whole domain, edge cases, and near-tie quantization.
    fn cases() -> Vec<(f32, f32, i8)> {
        let mut rng = Rng(0x5DEE_CE66_D1CE_F00D);
        let mut c = Vec::new();
        // Random pairs: a third with any exponents, a third with normal quotients, a third whose
        // quotients straddle the subnormal range.
        for i in 0..(1 << 20) {
            let (ea, eb) = match i % 3 {
                0 => (rng.range(1, 254), rng.range(1, 254)),
                1 => {
                    let eb = rng.range(40, 214);
                    (eb + rng.range(-30, 30), eb)
                }
                _ => {
                    let ea = rng.range(1, 100);
                    (ea, ea + rng.range(100, 152))
                }
            };
            let (a, b) = (rng.normal(ea, true), rng.normal(eb, false));
            c.push((a, b, rng.zp()));
        }
        let bs =
            [1.0, 0.75, 3.0, 127.0, 255.0, 1e-30, 1e10, 1e30, f32::MIN_POSITIVE, f32::MAX, 1.0 - f32::EPSILON / 2.0];
        for &b in &bs {
            for a in [0.0, 1.0, b, 3e38, f32::MAX, f32::MIN_POSITIVE, f32::INFINITY, 1.5 * f32::MIN_POSITIVE] {
                for a in [a, -a] {
                    c.push((a, b, rng.zp()));
                }
            }
            // a = b * 2^k: exact powers of two, from overflow down through every subnormal
            // exponent to the tie 2^-150 (rounds to 0) and below.
            for k in -160..=130 {
                let a = f64::from(b) * 2f64.powi(k);
                if a >= f64::from(f32::MIN_POSITIVE) && a <= f64::from(f32::MAX) {
                    c.push((exact(a), b, rng.zp()));
                    c.push((-exact(a), b, rng.zp()));
                }
            }
        }
        // Around the smallest normal and at the bottom of the subnormals: 2^-126 * small / large.
        for m in 1..=8 {
            for b in [1.0, 1.5, 2.0, 3.0, 1e10, 1e30, f32::MAX] {
                let a = exact(f64::from(m) * 2f64.powi(-126));
                c.push((a, b, rng.zp()));
            }
        }
        // Exact ties in the subnormal range: quotient n * 2^-150 (n odd), for b = odd c * 2^k,
        // with neighbours of a on either side (just above or below the tie). n = 2^24 - 1 is
        // the tie that rounds up to the smallest normal.
        for i in 0..20_000 {
            let c_odd = if i == 0 { 1 } else { 2 * rng.range(0, 1023) + 1 };
            let n = if i == 0 { (1 << 24) - 1 } else { 2 * rng.range(0, ((1 << 24) / c_odd - 1) / 2) + 1 };
            let k = rng.range(24, 116) as i32;
            let b = exact(c_odd as f64 * 2f64.powi(k));
            let a = exact((c_odd * n) as f64 * 2f64.powi(k - 150));
            for d in -2i32..=2 {
                let a = f32::from_bits(a.to_bits().wrapping_add_signed(d));
                c.push((a, b, rng.zp()));
                c.push((-a, b, rng.zp()));
            }
        }
        // Near-tie quantization: x = (k + 0.5) * s and its neighbours within 3 ULP.
        for _ in 0..50_000 {
            let e = rng.range(127 - 40, 127 + 20);
            let s = rng.normal(e, false);
            let k = rng.range(-255, 255);
            let x = ((k as f64 + 0.5) * f64::from(s)) as f32;
            let zp = rng.zp();
            for d in -3i32..=3 {
                c.push((f32::from_bits(x.to_bits().wrapping_add_signed(d)), s, zp));
            }
        }
        c
    }

    /// `div_rn` and the quantize_value paths against the CPU's correctly rounded division, bit
    /// for bit. lavapipe and llvmpipe divide exactly, so the parity tests alone would not see a
    /// wrong `div_rn`; this probe checks it directly, and checks `quantize_value`'s fast path
    /// against a device quotient that is off by up to 3 ULP.
    #[test]
    fn div_rn_and_quantize_value_match_cpu_bit_for_bit() {
        let Some(gpu) = gpu_or_skip() else { return };
        let cases = cases();
        let found = div_check(&gpu, &cases);
        assert_eq!(found.len(), cases.len());
        let names = ["div_rn bits", "quantize_value", "quantize_value (quotient off by ULPs)", "quantize_exact"];
        let mut bad = vec![Vec::new(); 4];
        for (&(a, b, zp), got) in cases.iter().zip(&found) {
            let q = i32::from(reference::quantize_value(a, b, zp)) as u32;
            let want = [(a / b).to_bits(), q, q, q];
            for j in 0..4 {
                if got[j] != want[j] {
                    let show = |w: u32| {
                        if j == 0 { format!("{:e} ({w:#010x})", f32::from_bits(w)) } else { (w as i32).to_string() }
                    };
                    bad[j].push(format!(
                        "a {a:e} ({:#010x}) b {b:e} ({:#010x}) zp {zp}: gpu {} cpu {}",
                        a.to_bits(),
                        b.to_bits(),
                        show(got[j]),
                        show(want[j])
                    ));
                }
            }
        }
        let report: Vec<String> = (0..4)
            .filter(|&j| !bad[j].is_empty())
            .map(|j| {
                format!(
                    "{}: {} mismatches, e.g.\n  {}",
                    names[j],
                    bad[j].len(),
                    bad[j][..bad[j].len().min(8)].join("\n  ")
                )
            })
            .collect();
        assert!(report.is_empty(), "{} cases checked:\n{}", cases.len(), report.join("\n"));
        eprintln!("div_rn / quantize_value: {} cases checked, all equal to the CPU", cases.len());
    }
}
