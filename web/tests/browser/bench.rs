//! The browser's round of the bench `scripts/web-bench.sh`: the same cases as the native
//! `web_bench` example (one source, included), timed in Chromium. Ignored: the script runs it
//! with `--include-ignored --nocapture` and reads its console lines; it is a measurement, not a
//! test of speed.

use std::time::Duration;

use int8_wgpu::GpuOptions;
use wasm_bindgen_test::{console_log, wasm_bindgen_test};

use crate::common;

// The shapes and layers it lists are the native table's.
#[allow(dead_code)]
#[path = "../../../bench/examples/web_bench/round.rs"]
mod round;

/// The native example's sample length (bench/examples/web_bench/main.rs).
const MIN: Duration = Duration::from_millis(100);

#[wasm_bindgen_test]
#[ignore = "a bench round: scripts/web-bench.sh runs it"]
async fn web_bench_round() {
    let gpu = common::open(GpuOptions::default()).await;
    console_log!("WEBADAPTER browser {} {:?}", gpu.describe(), gpu.capabilities());
    let t0 = wasm_bindgen_test::Instant::now();
    let now = move || t0.elapsed().as_secs_f64() * 1e3;
    round::round(&gpu, MIN, &now, &mut |s| console_log!("{}", s.line("browser"))).await.unwrap();
}
