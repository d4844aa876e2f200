//! int8-wgpu's test suite in a browser (`tests/browser/`): the library on WebGPU in headless
//! Chromium, through `wasm-bindgen-test`. The package has no code of its own; run the tests
//! with `bash scripts/web-test.sh` (docs/backends.md, "Browser (WebGPU)").
