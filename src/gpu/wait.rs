//! The blocking calls' wait for a readback: on the poll thread's polling, or, where the
//! application polls (`Polling::Application`), polling the device here until the readback is
//! done, so that no blocking call waits forever for a poll that nobody makes.

use std::future::Future;
#[cfg(not(target_arch = "wasm32"))]
use std::sync::Arc;
#[cfg(not(target_arch = "wasm32"))]
use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(not(target_arch = "wasm32"))]
use std::task::{Context, Poll, Wake, Waker};

use crate::gpu::Gpu;
use crate::{Error, Result};

/// Polls of an idle device (no submission in flight) after which a readback still pending is
/// an error: its map callback fires at the first poll after its copy is done.
#[cfg(not(target_arch = "wasm32"))]
const IDLE_POLLS: u32 = 4;

/// Whether the blocked-on future was woken since the last poll of the device.
#[cfg(not(target_arch = "wasm32"))]
struct Woken(AtomicBool);

#[cfg(not(target_arch = "wasm32"))]
impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Gpu {
    /// On wasm32 (a browser: no thread, no blocking wait) a blocking readback is
    /// [`Error::Unsupported`], naming the async form to use, instead of a hang.
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn block_on<T>(&self, readback: impl Future<Output = Result<T>>) -> Result<T> {
        drop(readback);
        Err(Error::Unsupported(
            "blocking readbacks cannot run in a browser: use the `_async` form (read_async, to_host_async, ...)".into(),
        ))
    }

    /// Runs `readback` (a future of this crate waiting on map callbacks) to completion.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn block_on<T>(&self, readback: impl Future<Output = Result<T>>) -> Result<T> {
        if self.has_poll_thread() {
            return pollster::block_on(readback);
        }
        let mut readback = std::pin::pin!(readback);
        let woken = Arc::new(Woken(AtomicBool::new(false)));
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let mut idle = 0;
        loop {
            if let Poll::Ready(r) = readback.as_mut().poll(&mut cx) {
                return r;
            }
            let status = self
                .device()
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| Error::Gpu(format!("waiting for a readback: {e}")))?;
            // A future of several readbacks (tuning) counts idle polls per readback: a woken
            // future has progressed.
            let progressed = woken.0.swap(false, Ordering::SeqCst);
            idle = if status.is_queue_empty() && !progressed { idle + 1 } else { 0 };
            if idle > IDLE_POLLS {
                return Err(Error::Gpu("a readback is still pending although the device is idle".into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GpuOptions, Polling};

    /// A wait the device cannot complete is an error once the device is idle, not a hang.
    #[test]
    fn a_readback_the_device_never_completes_is_an_error() {
        let Ok(gpu) = Gpu::with_options(GpuOptions { polling: Polling::Application, ..Default::default() }) else {
            return;
        };
        let e = gpu.block_on(std::future::pending::<Result<()>>()).unwrap_err();
        assert!(matches!(&e, Error::Gpu(m) if m.contains("idle")), "{e}");
    }

    /// A future of many readbacks in turn (as tuning awaits) completes: the idle polls are
    /// counted per readback, not over the whole future.
    #[test]
    fn a_future_of_many_readbacks_completes() {
        let Ok(gpu) = Gpu::with_options(GpuOptions { polling: Polling::Application, ..Default::default() }) else {
            return;
        };
        let buffer = gpu.zeroed_buffer("int8-wgpu test", 16).unwrap();
        let bytes = gpu.block_on(async {
            let mut all = Vec::new();
            for _ in 0..4 * IDLE_POLLS {
                all.extend(gpu.read_bytes(&buffer, 0, 16).await?);
            }
            Ok(all)
        });
        assert_eq!(bytes.unwrap(), vec![0; 16 * 4 * IDLE_POLLS as usize]);
    }
}
