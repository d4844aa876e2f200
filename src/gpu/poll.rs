//! The poll thread: map callbacks fire only while a device is polled, so with
//! [`Polling::Thread`] one thread per `Gpu` polls on request and async readbacks never block
//! their caller's executor. A browser has no threads and polls WebGPU from its event loop: no
//! thread there, whatever the option says.

use std::sync::{Mutex, mpsc};

use crate::gpu::options::Polling;

/// Where a readback asks the poll thread to drive the device.
pub(crate) type PollRequests = Mutex<mpsc::Sender<()>>;

/// Starts the poll thread of `device` where `polling` asks for one (never on wasm32).
pub(crate) fn poll_thread(device: &wgpu::Device, polling: Polling) -> Option<PollRequests> {
    if polling != Polling::Thread || cfg!(target_arch = "wasm32") {
        return None;
    }
    let (tx, rx) = mpsc::channel::<()>();
    let device = device.clone();
    std::thread::Builder::new()
        .name("int8-wgpu-poll".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                let _ = device.poll(wgpu::PollType::wait_indefinitely());
            }
        })
        .expect("spawning the poll thread");
    Some(Mutex::new(tx))
}
