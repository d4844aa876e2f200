//! GPU-resident float tensors: a buffer, a shape and a dtype.

use std::sync::Arc;

use crate::gpu::Gpu;
use crate::scheme::check_shape;
use crate::{DType, Element, Error, Result};

/// A float tensor in one GPU storage buffer (16-bit dtypes packed two per `u32`).
///
/// Layers take and return these, so a chain of layers never goes through the host.
/// Cloning is cheap and shares the buffer.
#[derive(Clone, Debug)]
pub struct GpuTensor {
    gpu: Gpu,
    buffer: Arc<wgpu::Buffer>,
    shape: Vec<usize>,
    dtype: DType,
    /// A layer's parameter (its bias): layers never write into it.
    parameter: bool,
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
        Ok(Self {
            gpu: gpu.clone(),
            buffer: Arc::new(buffer),
            shape: shape.to_vec(),
            dtype: T::DTYPE,
            parameter: false,
        })
    }

    /// Wraps an application's buffer as a tensor of `shape` and `dtype` (16-bit dtypes packed two
    /// per `u32`, row-major, starting at offset 0), so the application's kernels and this
    /// crate's layers share data without copies.
    ///
    /// The buffer must have been created on this `Gpu`'s device ([`Error::WrongDevice`] where
    /// wgpu sees it is not: any buffer of a device of the same `wgpu::Instance`, which every
    /// [`Gpu::new`] shares; a buffer of another instance, such as an application's adopted with
    /// [`Gpu::from_device`], cannot be told apart), with usage `STORAGE` ([`Error::BufferUsage`] otherwise;
    /// `COPY_SRC` too for [`GpuTensor::read`]), and hold at least the tensor's bytes rounded
    /// up to a multiple of 4. A layer may read and write tensors that share one buffer only as
    /// [`QuantizedLinear::record`](crate::QuantizedLinear::record) allows (its output never
    /// aliases its input or bias).
    pub fn from_buffer(gpu: &Gpu, buffer: wgpu::Buffer, shape: &[usize], dtype: DType) -> Result<Self> {
        let numel = check_numel(shape, "tensor")?;
        if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::BufferUsage(format!(
                "the buffer's usage {:?} lacks STORAGE; layers bind tensors as storage buffers",
                buffer.usage()
            )));
        }
        let need = (numel * dtype.size()).div_ceil(4) as u64 * 4;
        if buffer.size() < need {
            return Err(Error::Shape(format!(
                "the buffer holds {} bytes; a {dtype} tensor of shape {shape:?} needs {need}",
                buffer.size()
            )));
        }
        gpu.check_binding("tensor", buffer.size())?;
        gpu.check_own_buffer(&buffer)?;
        let parameter = gpu.is_parameter(&buffer);
        Ok(Self { gpu: gpu.clone(), buffer: Arc::new(buffer), shape: shape.to_vec(), dtype, parameter })
    }

    /// A zero-filled tensor.
    pub fn zeros(gpu: &Gpu, shape: &[usize], dtype: DType) -> Result<Self> {
        let numel = check_numel(shape, "tensor")?;
        let buffer = gpu.zeroed_buffer("int8-wgpu tensor", (numel * dtype.size()) as u64)?;
        Ok(Self { gpu: gpu.clone(), buffer: Arc::new(buffer), shape: shape.to_vec(), dtype, parameter: false })
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

    /// The underlying buffer: `STORAGE | COPY_SRC | COPY_DST` where this crate made it, the
    /// application's usages for [`GpuTensor::from_buffer`].
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
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
        let size = (self.nbytes() as u64).div_ceil(4) * 4;
        let bytes = self.gpu.read_bytes(&self.buffer, 0, size).await?;
        Ok(bytemuck::pod_collect_to_vec::<u8, T>(&bytes[..self.nbytes()]))
    }

    /// Blocking form of [`GpuTensor::read_async`].
    pub fn read<T: Element>(&self) -> Result<Vec<T>> {
        pollster::block_on(self.read_async())
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

    /// This tensor marked as a layer's parameter, which no layer writes.
    pub(crate) fn into_parameter(self) -> Self {
        self.gpu.register_parameter(&self.buffer);
        Self { parameter: true, ..self }
    }

    /// Whether this is a layer's parameter (see [`GpuTensor::into_parameter`]).
    pub(crate) fn is_parameter(&self) -> bool {
        self.parameter
    }
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
