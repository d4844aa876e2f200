//! What a wgpu error scope caught, without blocking where nothing may block.
//!
//! Natively a scope's pop is awaited at once (`pollster`), so an allocation or a shader that
//! fails is an error from the call that made it. On wasm32 (WebGPU in a browser) a blocking wait
//! would never return: the pop's promise resolves on the browser's event loop. There the popped
//! scope's future is kept, and the next awaited readback of the device awaits it and returns
//! what it caught, in the words the blocking path would have used.

use crate::{Error, Result};

/// The scope pops whose errors a later readback reports (wasm32 only; empty natively).
#[derive(Default)]
pub(crate) struct ErrorScopes {
    #[cfg(target_arch = "wasm32")]
    pending: std::sync::Mutex<Vec<Pending>>,
}

/// A popped scope's future and the error its catch becomes.
#[cfg(target_arch = "wasm32")]
type Pending = (
    std::pin::Pin<Box<dyn std::future::Future<Output = Option<wgpu::Error>> + Send>>,
    Box<dyn FnOnce(wgpu::Error) -> Error + Send>,
);

impl ErrorScopes {
    /// Pops `scope` (scopes pop in reverse order of their pushes): natively what it caught,
    /// turned into an error by `context`; on wasm32 `Ok`, and [`ErrorScopes::take`] returns
    /// that error at the next readback instead.
    pub(crate) fn check(
        &self,
        scope: wgpu::ErrorScopeGuard,
        context: impl FnOnce(wgpu::Error) -> Error + Send + 'static,
    ) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        return pollster::block_on(scope.pop()).map_or(Ok(()), |e| Err(context(e)));
        #[cfg(target_arch = "wasm32")]
        {
            let pending: Pending = (Box::pin(scope.pop()), Box::new(context));
            self.pending.lock().unwrap_or_else(|p| p.into_inner()).push(pending);
            Ok(())
        }
    }

    /// Awaits the scopes popped since the last call; the first catch is the error.
    #[cfg(target_arch = "wasm32")]
    pub(crate) async fn take(&self) -> Result<()> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        let mut first = None;
        for (popped, context) in pending {
            if let Some(e) = popped.await
                && first.is_none()
            {
                first = Some(context(e));
            }
        }
        first.map_or(Ok(()), Err)
    }
}
