//! The process's wgpu instance and adapters: every `Gpu::new` opens its device on one instance,
//! and every `Gpu` on one physical adapter shares its `wgpu::Adapter`.
//!
//! wgpu names a buffer, pipeline or bind group by an id that is unique only within its instance:
//! with an instance per `Gpu`, a buffer of one device passed to another was looked up among that
//! device's own objects (an unrelated buffer, or a panic in wgpu-core). Within one instance, wgpu
//! checks that the objects of a call belong to one device and reports a validation error; so the
//! instance has every backend, and the backends a `Gpu` asks for only filter its adapters. On GL,
//! an adapter wraps the instance's one EGL context behind its own lock: a second adapter context
//! made it current on two threads at once (EGL `BadAccess`, an abort), so a GL adapter is opened
//! once and GL is never enumerated again while it is open. Keeping the instance also keeps the
//! driver loaded: Mesa's lavapipe leaves an exit handler that crashed short runs when the last
//! instance was destroyed. In a browser (WebGPU) an adapter serves one device only, so there
//! every `Gpu` gets a fresh adapter.

use futures::lock::Mutex;

use crate::{Error, Result};

/// The instance and the adapters opened on it.
struct Shared {
    instance: wgpu::Instance,
    /// wgpu's choice for each backend set asked for without a name.
    defaults: Vec<(wgpu::Backends, wgpu::Adapter)>,
    /// Every adapter opened.
    adapters: Vec<wgpu::Adapter>,
}

/// Held across the enumeration, so that two threads never open adapter contexts at once.
static SHARED: Mutex<Option<Shared>> = Mutex::new(None);

/// The backends of `set` as `WGPU_BACKEND` names them (`vulkan, gl`).
fn backend_names(set: wgpu::Backends) -> String {
    let names = [
        (wgpu::Backends::VULKAN, "vulkan"),
        (wgpu::Backends::METAL, "metal"),
        (wgpu::Backends::DX12, "dx12"),
        (wgpu::Backends::GL, "gl"),
        (wgpu::Backends::BROWSER_WEBGPU, "webgpu"),
    ];
    let named: Vec<&str> = names.iter().filter(|(b, _)| set.contains(*b)).map(|(_, n)| *n).collect();
    if named.is_empty() { "none".into() } else { named.join(", ") }
}

fn matches(adapter: &wgpu::Adapter, name: &str) -> bool {
    adapter.get_info().name.to_lowercase().contains(&name.to_lowercase())
}

/// wgpu's order of preference for a device type (`wgpu-core`'s `request_adapter`): hardware
/// first, the integrated GPU first for low power, CPU adapters last.
fn preference(t: wgpu::DeviceType, low_power: bool) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu if low_power => 2,
        wgpu::DeviceType::IntegratedGpu if low_power => 1,
        wgpu::DeviceType::DiscreteGpu => 1,
        wgpu::DeviceType::IntegratedGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::VirtualGpu => 4,
        wgpu::DeviceType::Cpu => 5,
    }
}

/// The adapter of `backends` named like `name` (case-insensitive substring), else the one
/// wgpu would choose for the power preference in `WGPU_POWER_PREF` (high performance by
/// default); an adapter already opened is reused.
pub(super) async fn shared_adapter(backends: wgpu::Backends, name: Option<&str>) -> Result<wgpu::Adapter> {
    let mut guard = SHARED.lock().await;
    let s = guard.get_or_insert_with(|| {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        desc.backends = wgpu::Backends::all();
        Shared { instance: wgpu::Instance::new(desc), defaults: Vec::new(), adapters: Vec::new() }
    });
    let open = |a: &&wgpu::Adapter| backends.contains(wgpu::Backends::from(a.get_info().backend));
    let known = match name {
        Some(name) => s.adapters.iter().filter(open).find(|a| matches(a, name)).cloned(),
        None => s.defaults.iter().find(|(b, _)| *b == backends).map(|(_, a)| a.clone()),
    };
    if let Some(adapter) = known {
        return Ok(adapter);
    }
    let gl_open = s.adapters.iter().any(|a| a.get_info().backend == wgpu::Backend::Gl);
    let search = if gl_open { backends - wgpu::Backends::GL } else { backends };
    let mut candidates = s.instance.enumerate_adapters(search).await;
    // The same physical adapter as one already open: that one.
    for c in &mut candidates {
        let info = c.get_info();
        if let Some(a) = s.adapters.iter().find(|a| a.get_info() == info) {
            *c = a.clone();
        }
    }
    if gl_open {
        candidates
            .extend(s.adapters.iter().filter(open).filter(|a| a.get_info().backend == wgpu::Backend::Gl).cloned());
    }
    let adapter = match name {
        Some(name) => candidates.iter().find(|a| matches(a, name)).cloned().ok_or_else(|| Error::NoAdapter {
            backends: backend_names(backends),
            detail: format!(
                "none is named like `{name}`; found {:?}",
                candidates.iter().map(|a| a.get_info().name).collect::<Vec<_>>()
            ),
        })?,
        None => {
            let low_power = wgpu::PowerPreference::from_env() == Some(wgpu::PowerPreference::LowPower);
            // A stable sort: among equals, the backend order wgpu enumerates in.
            candidates.sort_by_key(|a| preference(a.get_info().device_type, low_power));
            candidates.into_iter().next().ok_or_else(|| Error::NoAdapter {
                backends: backend_names(backends),
                detail: "wgpu found no adapter of these backends".into(),
            })?
        }
    };
    // WebGPU consumes an adapter with its first device (a second `requestDevice` on it fails):
    // in a browser every `Gpu` asks for a fresh one.
    if cfg!(target_arch = "wasm32") {
        return Ok(adapter);
    }
    if !s.adapters.contains(&adapter) {
        s.adapters.push(adapter.clone());
    }
    if name.is_none() {
        s.defaults.push((backends, adapter.clone()));
    }
    Ok(adapter)
}
