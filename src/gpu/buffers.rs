//! Buffers: every allocation of the crate (out-of-memory as an error, not a panic) and readback.

use crate::gpu::Gpu;
use crate::{Error, Result};

/// Checked before any copy from `buffer`: wgpu reports a missing usage to the device's error
/// handler, which panics on an application's device.
pub(crate) fn check_copy_src(buffer: &wgpu::Buffer) -> Result<()> {
    if buffer.usage().contains(wgpu::BufferUsages::COPY_SRC) {
        return Ok(());
    }
    Err(Error::BufferUsage(format!(
        "reading back needs a buffer with usage COPY_SRC; this one has {:?}",
        buffer.usage()
    )))
}

/// Usage of every storage buffer the crate creates (tensors, weights, parameters).
const STORAGE_USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

impl Gpu {
    /// Copies `size` bytes at `offset` of `buffer` back to the host.
    pub(crate) async fn read_bytes(&self, buffer: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>> {
        check_copy_src(buffer)?;
        let staging = self.create_buffer(
            "int8-wgpu readback",
            size,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            None,
        )?;
        let mut bytes = vec![0; size as usize];
        self.read_through(&staging, buffer, offset, &mut bytes).await?;
        Ok(bytes)
    }

    /// Copies `out.len()` bytes at `offset` of `buffer` into `out` through `staging` (usage
    /// `MAP_READ | COPY_DST`, at least `out.len()` rounded up to 4 bytes), which it leaves
    /// unmapped for reuse.
    pub(crate) async fn read_through(
        &self,
        staging: &wgpu::Buffer,
        buffer: &wgpu::Buffer,
        offset: u64,
        out: &mut [u8],
    ) -> Result<()> {
        check_copy_src(buffer)?;
        let size = (out.len() as u64).div_ceil(4) * 4;
        let device = self.device();
        self.validated("reading back", || {
            let mut enc = device.create_command_encoder(&Default::default());
            enc.copy_buffer_to_buffer(buffer, offset, staging, 0, size);
            self.queue().submit([enc.finish()]);
            Ok(())
        })?;
        let (tx, rx) = futures::channel::oneshot::channel();
        staging.map_async(wgpu::MapMode::Read, ..size, move |r| {
            let _ = tx.send(r);
        });
        self.request_poll()?;
        rx.await
            .map_err(|_| Error::Gpu("the buffer mapping was dropped (device lost?)".into()))?
            .map_err(|e| Error::Gpu(format!("mapping a readback buffer: {e}")))?;
        let copied = staging.get_mapped_range(..size).map(|view| out.copy_from_slice(&view[..out.len()]));
        staging.unmap();
        #[cfg(target_arch = "wasm32")]
        self.scopes().take().await?;
        self.take_uncaptured()?;
        copied.map_err(|e| Error::Gpu(format!("reading a mapped buffer: {e}")))
    }

    /// Creates a buffer of `size` bytes, filled with `contents` when given (`size` must then be
    /// its length), else zeroed.
    ///
    /// Every allocation of the crate goes through here. Allocation failures are caught in an
    /// error scope and returned as [`Error::OutOfMemory`] from this call: `create_buffer_init`
    /// would panic inside wgpu ("Failed to get mapped range") and a plain `create_buffer` would
    /// leave the error to surface at some later, unrelated readback.
    pub(crate) fn create_buffer(
        &self,
        label: &str,
        size: u64,
        usage: wgpu::BufferUsages,
        contents: Option<&[u8]>,
    ) -> Result<wgpu::Buffer> {
        let device = self.device();
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: contents.is_some(),
        });
        // Scopes pop in reverse order of their pushes; out of memory is the error that counts.
        let what = label.to_string();
        let invalid =
            self.scopes().check(validation, move |e| Error::Gpu(format!("creating {what} ({size} bytes): {e}")));
        let what = label.to_string();
        self.scopes().check(oom, move |e| {
            log::warn!("int8-wgpu: allocating {size} bytes for {what}: {e}");
            Error::OutOfMemory { what, bytes: size }
        })?;
        invalid?;
        if let Some(bytes) = contents {
            let mut view = buffer.get_mapped_range_mut(..).map_err(|e| {
                // Some backends (wgpu's GL) report a failed allocation only here, as an
                // invalid buffer; it was just created, so nothing else can have made it so.
                log::warn!("int8-wgpu: mapping {size} bytes for {label} at creation: {e}");
                Error::OutOfMemory { what: label.to_string(), bytes: size }
            })?;
            view.copy_from_slice(bytes);
            drop(view);
            buffer.unmap();
        }
        self.count_created(false);
        Ok(buffer)
    }

    /// Creates a storage buffer holding `bytes` (padded to a multiple of 4).
    pub(crate) fn storage_buffer(&self, label: &str, bytes: &[u8]) -> Result<wgpu::Buffer> {
        self.check_binding(label, bytes.len() as u64)?;
        let mut padded;
        let contents = if bytes.len().is_multiple_of(4) && !bytes.is_empty() {
            bytes
        } else {
            padded = bytes.to_vec();
            padded.resize(bytes.len().div_ceil(4).max(1) * 4, 0);
            &padded
        };
        self.create_buffer(label, contents.len() as u64, STORAGE_USAGE, Some(contents))
    }

    /// Creates a zeroed storage buffer of at least `size` bytes.
    pub(crate) fn zeroed_buffer(&self, label: &str, size: u64) -> Result<wgpu::Buffer> {
        self.check_binding(label, size)?;
        self.create_buffer(label, size.div_ceil(4).max(1) * 4, STORAGE_USAGE, None)
    }

    pub(crate) fn check_binding(&self, what: &str, size: u64) -> Result<()> {
        let limit = self.max_binding_size();
        if size > limit {
            return Err(Error::TooLarge { what: format!("{what} ({size} bytes, one storage binding)"), size, limit });
        }
        Ok(())
    }

    /// Checks that an application's `buffer` belongs to this device, by binding it on this
    /// device: wgpu refuses a buffer of another device of the same instance with a validation
    /// error, caught here. (wgpu cannot check a buffer made through another `wgpu::Instance`:
    /// every `Gpu::new` shares one, see `device.rs`.)
    pub(crate) fn check_own_buffer(&self, buffer: &wgpu::Buffer) -> Result<()> {
        let device = self.device();
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let probe = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("int8-wgpu buffer probe"),
                entries: &[wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: true },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                }],
            });
            let _probe = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("int8-wgpu buffer probe"),
                layout: &layout,
                entries: &[wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer,
                        offset: 0,
                        size: wgpu::BufferSize::new(4),
                    }),
                }],
            });
        }));
        // wgpu-core says "doesn't match"; Dawn (in a browser) "cannot be used with".
        let bound = self.scopes().check(scope, |e| {
            let message = e.to_string();
            if message.contains("doesn't match") || message.contains("cannot be used with") {
                Error::WrongDevice(format!("the buffer belongs to another device: {e}"))
            } else {
                Error::Gpu(format!("the buffer cannot be bound on this device: {e}"))
            }
        });
        match probe {
            Ok(()) => bound,
            Err(_) => Err(Error::WrongDevice(
                "the buffer belongs to another device (wgpu does not know it on this one)".into(),
            )),
        }
    }

    /// Runs `f` (which creates bind groups, records and submits this crate's work) inside a
    /// validation error scope, so that wgpu's complaints about it (a destroyed or foreign buffer)
    /// are an [`Error::Gpu`] from this call rather than a report to the device's error handler,
    /// which panics on an application's device unless the application set one.
    pub(crate) fn validated<T>(&self, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let scope = self.device().push_error_scope(wgpu::ErrorFilter::Validation);
        let r = f();
        let context = what.to_string();
        let checked = self.scopes().check(scope, move |e| Error::Gpu(format!("{context}: {e}")));
        let value = r?;
        checked.map(|()| value)
    }
}
