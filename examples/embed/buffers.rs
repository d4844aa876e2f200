//! The MiniLM app's storage buffers and readback: allocation with its out-of-memory scope, the
//! async readback a page awaits (native forms block on it), and settling deferred errors.

use int8_wgpu::Gpu;
use wgpu::util::DeviceExt;

use super::Result;

/// Creates an application storage buffer (`STORAGE | COPY_SRC | COPY_DST`) of `size` bytes,
/// zeroed, or holding `contents`; refuses sizes over the device's binding limit. Blocks on
/// [`storage_async`].
#[cfg(not(target_arch = "wasm32"))]
pub fn storage(gpu: &Gpu, label: &str, size: u64, contents: Option<&[u8]>) -> Result<wgpu::Buffer> {
    pollster::block_on(storage_async(gpu, label, size, contents))
}

/// Async form of [`storage`].
pub async fn storage_async(gpu: &Gpu, label: &str, size: u64, contents: Option<&[u8]>) -> Result<wgpu::Buffer> {
    let limit = gpu.max_binding_size();
    let size = size.div_ceil(4).max(1) * 4;
    if size > limit {
        return Err(format!("{label} needs {size} bytes in one binding; this device binds at most {limit}").into());
    }
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let device = gpu.device();
    let scope = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let buffer = match contents {
        Some(bytes) if bytes.len() as u64 == size => {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents: bytes, usage })
        }
        Some(bytes) => {
            let mut padded = bytes.to_vec();
            padded.resize(size as usize, 0);
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: &padded,
                usage,
            })
        }
        None => {
            device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage, mapped_at_creation: false })
        }
    };
    if let Some(e) = scope.pop().await {
        return Err(format!("allocating {size} bytes for {label}: {e}").into());
    }
    Ok(buffer)
}

/// Where errors are deferred (a browser: int8-wgpu keeps its popped error scopes until its next
/// awaited readback), makes such a readback, of one value, so that the library's first error
/// so far is returned here. Natively every call returned its error already: nothing to do.
pub async fn settle(gpu: &Gpu) -> Result<()> {
    #[cfg(target_arch = "wasm32")]
    int8_wgpu::GpuTensor::from_host(gpu, &[0.0f32], &[1])?.read_async::<f32>().await?;
    #[cfg(not(target_arch = "wasm32"))]
    let _ = gpu;
    Ok(())
}

/// Reads `size` bytes of a `MAP_READ` buffer after the work submitted so far; waits. Blocks
/// on [`read_mapped_async`].
#[cfg(not(target_arch = "wasm32"))]
pub fn read_mapped(gpu: &Gpu, staging: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
    pollster::block_on(read_mapped_async(gpu, staging, size))
}

/// Async form of [`read_mapped`]: natively it waits for the device here (as the blocking form
/// always did), in a browser the page's event loop completes the mapping.
pub async fn read_mapped_async(gpu: &Gpu, staging: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
    let (tx, rx) = futures::channel::oneshot::channel();
    staging.map_async(wgpu::MapMode::Read, ..size, move |r| {
        let _ = tx.send(r);
    });
    #[cfg(not(target_arch = "wasm32"))]
    gpu.synchronize()?;
    #[cfg(target_arch = "wasm32")]
    let _ = gpu;
    rx.await.map_err(|_| "the readback mapping was dropped (device lost?)")??;
    let bytes = staging.get_mapped_range(..size)?.to_vec();
    staging.unmap();
    Ok(bytes)
}
