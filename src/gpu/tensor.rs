//! GPU-resident float tensors: a buffer, or a range of an application's, a shape and a dtype;
//! which tensors a layer may write while it reads others.

use std::ops::Range;
use std::sync::Arc;

use crate::gpu::Gpu;
use crate::gpu::cache::Bindable;
use crate::scheme::check_shape;
use crate::{DType, Element, Error, Result};

/// A float tensor in a GPU storage buffer: a whole buffer this crate made, or a range of an
/// application's buffer ([`GpuTensor::from_buffer_range`]).
///
/// Layers take and return these, so a chain of layers never goes through the host.
/// Cloning is cheap and shares the buffer.
///
/// # Memory layout
///
/// Row-major, from [`GpuTensor::offset`] on. f32 elements take a 32-bit word each; f16 and
/// bf16 elements are packed two per `u32` word, element `2i` in the low half of word `i` and
/// element `2i + 1` in the high half (the little-endian byte order of a `&[half::bf16]`, so
/// `bytemuck::cast_slice` of a host slice is the buffer's contents). A tensor with an odd
/// number of 16-bit elements owns the whole last word: its range, and what kernels bind, is
/// the data rounded up to a multiple of 4 bytes ([`GpuTensor::binding`]). An application's
/// WGSL reads element `j` of a 16-bit tensor bound as `array<u32>` with
/// `unpack2x16float(t[j / 2u])[j % 2u]` (f16) or `bitcast<f32>(((t[j / 2u] >> (16u * (j % 2u))) & 0xffffu) << 16u)` (bf16).
#[derive(Clone, Debug)]
pub struct GpuTensor {
    gpu: Gpu,
    buffer: Arc<wgpu::Buffer>,
    /// Where the tensor starts in `buffer`, in bytes.
    offset: u64,
    shape: Vec<usize>,
    dtype: DType,
}

impl GpuTensor {
    /// Uploads a host slice (row-major, `shape`).
    pub fn from_host<T: Element>(gpu: &Gpu, data: &[T], shape: &[usize]) -> Result<Self> {
        let numel = check_shape(shape, "tensor")?;
        if data.len() != numel {
            return Err(Error::Shape(format!("{} elements given for shape {shape:?} ({numel})", data.len())));
        }
        check_numel(shape, "tensor")?;
        let buffer = gpu.storage_buffer("int8-wgpu tensor", bytemuck::cast_slice(data))?;
        Ok(Self { gpu: gpu.clone(), buffer: Arc::new(buffer), offset: 0, shape: shape.to_vec(), dtype: T::DTYPE })
    }

    /// Wraps an application's buffer as a tensor of `shape` and `dtype` starting at offset 0:
    /// [`GpuTensor::from_buffer_range`] at offset 0.
    pub fn from_buffer(gpu: &Gpu, buffer: wgpu::Buffer, shape: &[usize], dtype: DType) -> Result<Self> {
        Self::from_buffer_range(gpu, buffer, 0, shape, dtype)
    }

    /// Wraps the bytes from `offset` on of an application's buffer (an arena holding several
    /// tensors, say) as a tensor of `shape` and `dtype` (see the memory layout above), so the
    /// application's kernels and this crate's layers share data without copies. The tensor's
    /// range is `offset .. offset + nbytes` rounded up to a multiple of 4; layers bind only it.
    ///
    /// Checked, each an `Error` rather than a panic or a wgpu validation error later:
    /// - `offset` is a multiple of the device's `min_storage_buffer_offset_alignment` ([`Gpu::limits`];
    ///   at most 256, WebGPU's default) ([`Error::Alignment`]);
    /// - the range lies within the buffer ([`Error::Shape`]) and fits one storage binding
    ///   ([`Error::TooLarge`]);
    /// - the buffer has usage `STORAGE` ([`Error::BufferUsage`]; `COPY_SRC` too for reading
    ///   back, [`GpuTensor::read`]);
    /// - the buffer was created on this `Gpu`'s device ([`Error::WrongDevice`] where wgpu sees it
    ///   is not: any buffer of a device of the same `wgpu::Instance`, which every [`Gpu::new`]
    ///   shares; a buffer of another instance, such as an application's adopted with
    ///   [`Gpu::from_device`], cannot be told apart).
    ///
    /// A layer's output may share a buffer with other tensors, but not with the layer's input
    /// or bias (wgpu binds a buffer either read-only or writable within one dispatch), and its
    /// range may not overlap any layer's bias ([`Error::Aliasing`], see
    /// [`QuantizedLinear::record`](crate::QuantizedLinear::record)).
    ///
    /// ```
    /// # use int8_wgpu::{DType, Gpu, GpuTensor};
    /// # fn main() -> Result<(), int8_wgpu::Error> {
    /// # let Ok(gpu) = Gpu::new() else { return Ok(()) };
    /// let align = u64::from(gpu.limits().min_storage_buffer_offset_alignment);
    /// let arena = gpu.device().create_buffer(&wgpu::BufferDescriptor {
    ///     label: Some("app arena"),
    ///     size: 2 * align,
    ///     usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
    ///     mapped_at_creation: false,
    /// });
    /// gpu.queue().write_buffer(&arena, align, bytemuck::cast_slice(&[1.0f32, 2.0, 3.0]));
    /// let t = GpuTensor::from_buffer_range(&gpu, arena, align, &[3], DType::F32)?;
    /// assert_eq!(t.read::<f32>()?, [1.0, 2.0, 3.0]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_buffer_range(
        gpu: &Gpu,
        buffer: wgpu::Buffer,
        offset: u64,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Self> {
        let numel = check_numel(shape, "tensor")?;
        let align = u64::from(gpu.limits().min_storage_buffer_offset_alignment).max(4);
        if !offset.is_multiple_of(align) {
            return Err(Error::Alignment(format!(
                "the tensor's offset {offset} is not a multiple of the device's \
                 min_storage_buffer_offset_alignment ({align})"
            )));
        }
        if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::BufferUsage(format!(
                "the buffer's usage {:?} lacks STORAGE; layers bind tensors as storage buffers",
                buffer.usage()
            )));
        }
        let need = padded(numel * dtype.size());
        if offset.checked_add(need).is_none_or(|end| end > buffer.size()) {
            let at = if offset == 0 { String::new() } else { format!(" from offset {offset}") };
            return Err(Error::Shape(format!(
                "the buffer holds {} bytes; a {dtype} tensor of shape {shape:?} needs {need}{at}",
                buffer.size()
            )));
        }
        gpu.check_binding("tensor", need)?;
        gpu.check_own_buffer(&buffer)?;
        Ok(Self { gpu: gpu.clone(), buffer: Arc::new(buffer), offset, shape: shape.to_vec(), dtype })
    }

    /// A zero-filled tensor.
    pub fn zeros(gpu: &Gpu, shape: &[usize], dtype: DType) -> Result<Self> {
        let numel = check_numel(shape, "tensor")?;
        let buffer = gpu.zeroed_buffer("int8-wgpu tensor", (numel * dtype.size()) as u64)?;
        Ok(Self { gpu: gpu.clone(), buffer: Arc::new(buffer), offset: 0, shape: shape.to_vec(), dtype })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes of data (without padding).
    pub fn nbytes(&self) -> usize {
        self.numel() * self.dtype.size()
    }

    /// The underlying buffer, all of it (the tensor is [`GpuTensor::binding`]'s range of it):
    /// `STORAGE | COPY_SRC | COPY_DST` where this crate made it, the application's usages for
    /// [`GpuTensor::from_buffer_range`].
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// Where the tensor starts in [`GpuTensor::buffer`], in bytes (0 unless made with
    /// [`GpuTensor::from_buffer_range`]).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The tensor's range of its buffer, for an application's bind group: from
    /// [`GpuTensor::offset`], [`GpuTensor::nbytes`] rounded up to a multiple of 4 (what this
    /// crate's kernels bind).
    pub fn binding(&self) -> wgpu::BufferBinding<'_> {
        wgpu::BufferBinding { buffer: &self.buffer, offset: self.offset, size: wgpu::BufferSize::new(self.size()) }
    }

    /// Bytes of the tensor's range: [`GpuTensor::nbytes`] rounded up to a multiple of 4.
    pub(crate) fn size(&self) -> u64 {
        padded(self.nbytes())
    }

    /// The tensor's byte range of its buffer.
    pub(crate) fn range(&self) -> Range<u64> {
        self.offset..self.offset + self.size()
    }

    /// An [`Error::Aliasing`] where this tensor cannot be written in a dispatch that reads
    /// `input` (`what`): they overlap, or share a buffer, which wgpu binds either read-only or
    /// writable within one dispatch.
    pub(crate) fn check_writable_while_reading(&self, input: &GpuTensor, what: &str) -> Result<()> {
        if self.overlaps(input) {
            return Err(Error::Aliasing(format!("the output tensor overlaps the {what}")));
        }
        if *self.buffer == *input.buffer {
            return Err(Error::Aliasing(format!(
                "the output tensor shares its buffer with the {what} (bytes {:?} and {:?}): wgpu binds a \
                 buffer either read-only or writable within one dispatch; put the output in another buffer",
                self.range(),
                input.range()
            )));
        }
        Ok(())
    }

    /// Whether the two tensors' ranges share a byte of one buffer.
    pub(crate) fn overlaps(&self, other: &GpuTensor) -> bool {
        let (a, b) = (self.range(), other.range());
        *self.buffer == *other.buffer && a.start < b.end && b.start < a.end
    }

    /// The device this tensor lives on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The same data under another shape with the same number of elements.
    pub fn reshape(&self, shape: &[usize]) -> Result<Self> {
        let numel = check_numel(shape, "reshape target")?;
        if numel != self.numel() {
            return Err(Error::Shape(format!("cannot reshape {:?} into {shape:?}", self.shape)));
        }
        Ok(Self { shape: shape.to_vec(), ..self.clone() })
    }

    /// Reads the tensor back; `T` must match its dtype.
    pub async fn read_async<T: Element>(&self) -> Result<Vec<T>> {
        if T::DTYPE != self.dtype {
            return Err(Error::DType { what: "readback".into(), expected: self.dtype, found: T::DTYPE });
        }
        let bytes = self.gpu.read_bytes(&self.buffer, self.offset, self.size()).await?;
        Ok(bytemuck::pod_collect_to_vec::<u8, T>(&bytes[..self.nbytes()]))
    }

    /// Blocking form of [`GpuTensor::read_async`].
    pub fn read<T: Element>(&self) -> Result<Vec<T>> {
        self.gpu.block_on(self.read_async())
    }

    /// Reads the tensor back widened to f32, whatever its dtype.
    pub fn read_f32(&self) -> Result<Vec<f32>> {
        Ok(match self.dtype {
            DType::F32 => self.read::<f32>()?,
            DType::F16 => self.read::<half::f16>()?.into_iter().map(half::f16::to_f32).collect(),
            DType::BF16 => self.read::<half::bf16>()?.into_iter().map(half::bf16::to_f32).collect(),
        })
    }

    pub(crate) fn same_gpu(&self, gpu: &Gpu, what: &str) -> Result<()> {
        if self.gpu.same_device(gpu) {
            Ok(())
        } else {
            Err(Error::WrongDevice(format!("the {what} tensor belongs to another device")))
        }
    }

    /// This tensor marked as a layer's parameter, which no layer writes (`Gpu::overlaps_parameter`).
    pub(crate) fn into_parameter(self) -> Self {
        self.gpu.register_parameter(&self.buffer, self.range());
        self
    }
}

impl Bindable for GpuTensor {
    fn bind(&self) -> wgpu::BufferBinding<'_> {
        self.binding()
    }
}

/// `bytes` rounded up to whole 32-bit words (at least one).
fn padded(bytes: usize) -> u64 {
    bytes.div_ceil(4).max(1) as u64 * 4
}

/// Checks a shape and that its element count fits the kernels' 32-bit indexing.
pub(crate) fn check_numel(shape: &[usize], what: &str) -> Result<usize> {
    let numel = check_shape(shape, what)?;
    if numel >= u32::MAX as usize {
        return Err(Error::TooLarge {
            what: format!("{what} of shape {shape:?} (elements)"),
            size: numel as u64,
            limit: u64::from(u32::MAX) - 1,
        });
    }
    Ok(numel)
}
