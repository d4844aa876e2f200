//! Readback without a new buffer per call: into an application's slice through a staging
//! buffer the device keeps, or as a copy into an application's buffer on its encoder.

use crate::gpu::buffers::check_copy_src;
use crate::gpu::{Gpu, GpuTensor};
use crate::{Element, Error, Result};

impl GpuTensor {
    /// Reads the tensor into `out` (`T` its dtype, `out.len()` its element count), through a
    /// staging buffer the device keeps for the next `read_into`: a loop that reads a result
    /// each step allocates nothing after its first read ([`Gpu::resource_counts`]). The staging
    /// buffer grows to the largest tensor read this way and lives as long as the device; one
    /// read at a time uses it (a concurrent one makes its own).
    ///
    /// Same checks as [`GpuTensor::read`]: the dtype ([`Error::DType`]), the buffer's `COPY_SRC`
    /// usage ([`Error::BufferUsage`]); and `out`'s length ([`Error::Shape`]).
    ///
    /// ```
    /// # use int8_wgpu::{Gpu, GpuTensor};
    /// # fn main() -> Result<(), int8_wgpu::Error> {
    /// # let Ok(gpu) = Gpu::new() else { return Ok(()) };
    /// let t = GpuTensor::from_host(&gpu, &[1.0f32, 2.0, 3.0], &[3])?;
    /// let mut out = [0.0f32; 3];
    /// t.read_into(&mut out)?;
    /// assert_eq!(out, [1.0, 2.0, 3.0]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn read_into<T: Element>(&self, out: &mut [T]) -> Result<()> {
        self.gpu().block_on(self.read_into_async(out))
    }

    /// Async form of [`GpuTensor::read_into`].
    pub async fn read_into_async<T: Element>(&self, out: &mut [T]) -> Result<()> {
        if T::DTYPE != self.dtype() {
            return Err(Error::DType { what: "readback".into(), expected: self.dtype(), found: T::DTYPE });
        }
        if out.len() != self.numel() {
            return Err(Error::Shape(format!(
                "reading a tensor of shape {:?} ({} elements) into {} elements",
                self.shape(),
                self.numel(),
                out.len()
            )));
        }
        check_copy_src(self.buffer())?;
        let gpu = self.gpu();
        let staging = gpu.take_staging(self.size())?;
        let read = gpu.read_through(&staging, self.buffer(), self.offset(), bytemuck::cast_slice_mut(out)).await;
        gpu.keep_staging(staging);
        read
    }

    /// Records a copy of the tensor's range ([`GpuTensor::binding`]: its bytes rounded up to
    /// a multiple of 4) into `buffer` at `offset`, on the application's encoder: the
    /// application maps or binds `buffer` itself after submitting. Nothing is submitted.
    ///
    /// Checked before recording, each an `Error` rather than a wgpu validation error at the
    /// application's submission: the tensor's buffer has usage `COPY_SRC` and `buffer` usage
    /// `COPY_DST` ([`Error::BufferUsage`]), `offset` is a multiple of 4 ([`Error::Alignment`]),
    /// the copy fits in `buffer` ([`Error::Shape`]), and `buffer` is not the tensor's own
    /// ([`Error::Aliasing`]: wgpu copies between two buffers only). `encoder` and `buffer` must
    /// belong to the tensor's device.
    pub fn copy_to(&self, encoder: &mut wgpu::CommandEncoder, buffer: &wgpu::Buffer, offset: u64) -> Result<()> {
        check_copy_src(self.buffer())?;
        if !buffer.usage().contains(wgpu::BufferUsages::COPY_DST) {
            return Err(Error::BufferUsage(format!(
                "copying a tensor into a buffer needs usage COPY_DST; this one has {:?}",
                buffer.usage()
            )));
        }
        if !offset.is_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT) {
            return Err(Error::Alignment(format!("the copy's offset {offset} is not a multiple of 4 bytes")));
        }
        let size = self.size();
        if offset.checked_add(size).is_none_or(|end| end > buffer.size()) {
            return Err(Error::Shape(format!(
                "the buffer holds {} bytes; copying the tensor's {size} bytes to offset {offset} needs {}",
                buffer.size(),
                offset.saturating_add(size)
            )));
        }
        if buffer == self.buffer() {
            return Err(Error::Aliasing(
                "copying a tensor into its own buffer (wgpu copies between two buffers)".into(),
            ));
        }
        encoder.copy_buffer_to_buffer(self.buffer(), self.offset(), buffer, offset, size);
        Ok(())
    }
}

impl Gpu {
    /// The kept staging buffer if it holds `size` bytes, else a new one.
    fn take_staging(&self, size: u64) -> Result<wgpu::Buffer> {
        let kept = self.staging().lock().unwrap_or_else(|p| p.into_inner()).take();
        match kept {
            Some(b) if b.size() >= size => Ok(b),
            _ => self.create_buffer(
                "int8-wgpu reused readback",
                size,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                None,
            ),
        }
    }

    /// Keeps `staging` for the next read, unless a larger one is kept already.
    fn keep_staging(&self, staging: wgpu::Buffer) {
        let mut kept = self.staging().lock().unwrap_or_else(|p| p.into_inner());
        if kept.as_ref().is_none_or(|k| k.size() < staging.size()) {
            *kept = Some(staging);
        }
    }
}
