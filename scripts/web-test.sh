#!/usr/bin/env bash
# The browser test suite (web/): the library on WebGPU in headless Chromium (SwiftShader), through
# wasm-bindgen-test-runner and chromedriver. Needs `chromium`, `chromium-driver` and
# `wasm-bindgen-cli` of the exact version of the wasm-bindgen crate in Cargo.lock (.ci/run installs
# them). Extra arguments go to `cargo test` (e.g. a test name filter after `--`).
set -euo pipefail
cd "$(dirname "$0")/.."
export CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
# The browser's flags (WebGPU on, SwiftShader's adapter, no sandbox as root).
export WASM_BINDGEN_TEST_WEBDRIVER_JSON="$PWD/web/webdriver.json"
# A test's wall-clock limit in the runner (seconds); SwiftShader is slow on 2 cores.
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-600}"
cargo test --release -p int8-wgpu-web --target wasm32-unknown-unknown "$@"
