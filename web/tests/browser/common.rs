//! Shared by the browser tests: the device, deterministic inputs, assertions with the native
//! suite's bounds (tests/common/mod.rs).

use std::cell::RefCell;

use int8_wgpu::{Gpu, GpuOptions};

// The oracle's verdicts, one definition with the native suite's (bit-identical quantization,
// outputs within the project's bound of the f64 oracle).
#[allow(dead_code)]
#[path = "../../../tests/common/oracle.rs"]
mod oracle;
pub use oracle::*;

thread_local! {
    static GPU: RefCell<Option<Gpu>> = const { RefCell::new(None) };
}

/// The browser's WebGPU device, opened once per test module. No adapter fails the test: the
/// suite runs only where it is meant to (Chromium with `--enable-unsafe-webgpu`,
/// `scripts/web-test.sh`), so a missing adapter is a broken setup, not a skip.
pub async fn gpu() -> Gpu {
    if let Some(g) = GPU.with(|g| g.borrow().clone()) {
        return g;
    }
    let g = open(GpuOptions::default()).await;
    wasm_bindgen_test::console_log!("browser tests run on: {} {:?}", g.describe(), g.capabilities());
    GPU.with(|c| *c.borrow_mut() = Some(g.clone()));
    g
}

/// A device of its own with `options` (forcing a kernel path).
pub async fn open(options: GpuOptions) -> Gpu {
    match Gpu::with_options_async(options).await {
        Ok(g) => g,
        Err(e) => panic!("no WebGPU device in this browser: {e} (Chromium needs --enable-unsafe-webgpu)"),
    }
}

/// Deterministic values in [-1, 1) (xorshift), so failures reproduce.
pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}
