//! The process's wgpu instances and adapters: every `Gpu::new` of one backend set shares an
//! instance, and every `Gpu` on one physical adapter shares its `wgpu::Adapter`.
//!
//! wgpu names a buffer, pipeline or bind group by an id that is unique only within its instance:
//! with an instance per `Gpu`, a buffer of one device passed to another was looked up among that
//! device's own objects (an unrelated buffer, or a panic in wgpu-core). Within one instance, wgpu
//! checks that the objects of a call belong to one device and reports a validation error. On GL,
//! an adapter wraps the instance's one EGL context behind its own lock: two adapters of one
//! instance made it current on two threads at once (EGL `BadAccess`, an abort), so devices on one
//! physical adapter share the adapter, and with it the lock. Keeping the instance also keeps the
//! driver loaded: Mesa's lavapipe leaves an exit handler that crashed short runs when the last
//! instance was destroyed.

use std::sync::Mutex;

use crate::{Error, Result};

/// An instance and the adapters opened on it.
struct Shared {
    backends: wgpu::Backends,
    instance: wgpu::Instance,
    /// wgpu's choice, once asked for.
    default: Option<wgpu::Adapter>,
    /// Every adapter opened, the default too.
    adapters: Vec<wgpu::Adapter>,
}

static SHARED: Mutex<Vec<Shared>> = Mutex::new(Vec::new());

fn matches(adapter: &wgpu::Adapter, name: &str) -> bool {
    adapter.get_info().name.to_lowercase().contains(&name.to_lowercase())
}

/// The adapter named like `name` (case-insensitive substring), else wgpu's choice for the
/// power preference in `WGPU_POWER_PREF` (high performance by default), on the shared instance
/// of `desc.backends`; an adapter already opened is reused. wgpu is asked again only for one it
/// has not opened, and never once a GL adapter is open: asking makes the instance's EGL context
/// current on this thread, which fails (an abort) while a device's thread has it current.
pub(super) async fn shared_adapter(desc: wgpu::InstanceDescriptor, name: Option<&str>) -> Result<wgpu::Adapter> {
    let backends = desc.backends;
    let not_found = |names: Vec<String>, name: &str| Error::NoAdapter {
        backends: format!("{backends:?}"),
        detail: format!("none is named like `{name}`; found {names:?}"),
    };
    let instance = {
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        let s = match shared.iter().position(|s| s.backends == backends) {
            Some(i) => &mut shared[i],
            None => {
                let instance = wgpu::Instance::new(desc);
                shared.push(Shared { backends, instance, default: None, adapters: Vec::new() });
                shared.last_mut().expect("just pushed")
            }
        };
        let known = match name {
            Some(name) => s.adapters.iter().find(|a| matches(a, name)).cloned(),
            None => s.default.clone(),
        };
        if let Some(adapter) = known {
            return Ok(adapter);
        }
        // Asking wgpu again would open a new GL adapter context on the EGL context in use.
        if s.adapters.iter().any(|a| a.get_info().backend == wgpu::Backend::Gl) {
            return match name {
                Some(name) => Err(not_found(s.adapters.iter().map(|a| a.get_info().name).collect(), name)),
                None => {
                    let first = s.adapters[0].clone();
                    s.default = Some(first.clone());
                    Ok(first)
                }
            };
        }
        s.instance.clone()
    };
    let adapter = match name {
        Some(name) => {
            let adapters = instance.enumerate_adapters(backends).await;
            let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
            adapters.into_iter().find(|a| matches(a, name)).ok_or_else(|| not_found(names, name))?
        }
        None => instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::from_env().unwrap_or(wgpu::PowerPreference::HighPerformance),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::NoAdapter { backends: format!("{backends:?}"), detail: e.to_string() })?,
    };
    let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    let s = shared.iter_mut().find(|s| s.backends == backends).expect("made above, never removed");
    let info = adapter.get_info();
    let adapter = match s.adapters.iter().find(|a| a.get_info() == info) {
        Some(known) => known.clone(),
        None => {
            s.adapters.push(adapter.clone());
            adapter
        }
    };
    if name.is_none() {
        s.default = Some(adapter.clone());
    }
    Ok(adapter)
}
