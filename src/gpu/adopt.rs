//! Adopting an application's own device: what it should be opened with, the options that
//! apply to it, and what stays the application's (its instance, its error handler).

use crate::gpu::Gpu;
use crate::gpu::options::{GpuOptions, Polling, Tuning};
use crate::{Error, Result};

impl Gpu {
    /// Adopts an application's own device and queue with the default options
    /// ([`Gpu::from_device_with_options`]).
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        let info = device.adapter_info();
        Self::build(device, queue, Some(info), false, Tuning::default(), Polling::Thread, None)
    }

    /// Adopts an application's own device and queue, so that its kernels and this crate's
    /// layers share buffers and command encoders.
    ///
    /// # Features and limits to request
    ///
    /// None is required; for full speed open the device with what the adapter offers of:
    /// - `Features::SUBGROUP`: the GEMV kernels reduce with subgroup operations (without it,
    ///   through workgroup memory: same results, slower on GPUs);
    /// - `Features::TIMESTAMP_QUERY`: [`Gpu::tune`] times kernels on the GPU (without it, by
    ///   wall clock around each submission, less exact);
    /// - `Limits::max_storage_buffer_binding_size` and `max_buffer_size` as the adapter's
    ///   limits allow: a weight larger than one binding is split into row blocks (one dispatch
    ///   each), and a tensor larger than one binding is an [`Error::TooLarge`];
    /// - the other limits at least `wgpu::Limits::default()` (WebGPU's defaults): the kernels bind
    ///   up to 8 storage buffers per stage and run up to 256 invocations per workgroup, beyond
    ///   `Limits::downlevel_defaults()` (4 storage buffers).
    ///
    /// `SHADER_F16` is not needed: 16-bit values travel packed in `u32` words (see
    /// [`GpuTensor`](crate::GpuTensor)). What the device has is detected
    /// ([`Gpu::capabilities`]); `INT8_WGPU_DISABLE` is not read (the application chose the
    /// features).
    ///
    /// # Options
    ///
    /// The kernel-choice overrides of [`GpuOptions`] apply as for [`Gpu::with_options`];
    /// `max_storage_buffer_binding_size` caps the bindings this crate makes below the device's
    /// limit; `backends` and `adapter_name` choose an adapter, which an adopted device has
    /// already, so setting them is an [`Error::InvalidOption`]. [`GpuOptions::polling`] says
    /// who polls the device: see [`Polling`] for what must then happen for readbacks to
    /// complete.
    ///
    /// # Errors and instances
    ///
    /// The device's uncaptured-error handler is left to the application (this crate's own
    /// calls catch what wgpu reports about them). The device lives in the application's
    /// `wgpu::Instance`: wgpu cannot tell its buffers and encoders from those of a device of
    /// another instance (such as a [`Gpu::new`] one), so the two must not be mixed.
    ///
    /// ```no_run
    /// # use int8_wgpu::{Gpu, GpuOptions, Polling};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    /// let adapter = pollster::block_on(instance.request_adapter(&Default::default()))?;
    /// let wanted = wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY;
    /// let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
    ///     required_features: adapter.features() & wanted,
    ///     required_limits: adapter.limits(),
    ///     ..Default::default()
    /// }))?;
    /// let options = GpuOptions { polling: Polling::Application, ..Default::default() };
    /// let gpu = Gpu::from_device_with_options(device, queue, options)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_device_with_options(device: wgpu::Device, queue: wgpu::Queue, options: GpuOptions) -> Result<Self> {
        if options.backends.is_some() || options.adapter_name.is_some() {
            return Err(Error::InvalidOption(
                "backends and adapter_name choose an adapter; an adopted device has one (leave them None)".into(),
            ));
        }
        let info = device.adapter_info();
        let tuning = Tuning::new(&options, true)?;
        let cap = options.max_storage_buffer_binding_size;
        Ok(Self::build(device, queue, Some(info), false, tuning, options.polling, cap))
    }
}
