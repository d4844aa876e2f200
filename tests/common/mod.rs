//! Shared by the GPU test files: opening the device, and assertions with tolerances.
#![allow(dead_code)]

use std::sync::OnceLock;

pub mod a8_model;
pub mod model;
pub mod square;
#[cfg(unix)]
pub mod truncation;

mod oracle;
#[allow(unused_imports)] // each test binary uses a part
pub use oracle::*;

use int8_wgpu::Gpu;

/// The test device, opened once per test binary. Honours `WGPU_BACKEND` / `WGPU_ADAPTER_NAME`.
///
/// No adapter: under `CI=true` the test fails (CI must prove the GPU path); elsewhere it
/// reports itself skipped and returns `None`.
pub fn gpu() -> Option<Gpu> {
    static GPU: OnceLock<Result<Gpu, String>> = OnceLock::new();
    let r = GPU.get_or_init(|| {
        let _ = env_logger::builder().is_test(true).try_init();
        let g = Gpu::new().map_err(|e| e.to_string());
        if let Ok(g) = &g {
            eprintln!("GPU tests run on: {}", g.describe());
        }
        g
    });
    match r {
        Ok(g) => Some(g.clone()),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
            panic!("CI=true and no GPU adapter: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: no GPU adapter ({e})");
            None
        }
    }
}

/// Opens the device or returns from the test (skipped) when there is none outside CI.
#[macro_export]
macro_rules! gpu_or_skip {
    () => {
        match common::gpu() {
            Some(g) => g,
            None => return,
        }
    };
}

/// Deterministic pseudo-random values in [-1, 1) (the quantizer's xorshift), so failures
/// reproduce.
pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    int8_wgpu::quantizer::random_activations(n, seed.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// A fresh, empty folder under the system temp dir; removed on drop.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let p = std::env::temp_dir().join(format!("int8-wgpu-test-{name}-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The real all-MiniLM-L6-v2 checkpoint fetched by `scripts/fetch-minilm.sh`
/// (`$INT8_WGPU_CACHE` or `~/.cache/int8-wgpu`). Missing: under `CI=true` the test fails, elsewhere
/// it reports itself skipped and gets `None`.
pub fn minilm_dir() -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    let cache = std::env::var_os("INT8_WGPU_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/int8-wgpu"));
    let dir = cache.join("all-MiniLM-L6-v2");
    if dir.join("model.safetensors").is_file() && dir.join("tokenizer.json").is_file() {
        return Some(dir);
    }
    let msg =
        format!("the all-MiniLM-L6-v2 checkpoint is not in {}; run `bash scripts/fetch-minilm.sh`", dir.display());
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("CI=true: {msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

/// An int-quantized layer `layer` of `shape` (I8 ints, F32 scales of `scale_shape`) in
/// `dir/model.safetensors`, and `config.json` with `quantization_config`.
pub fn write_int8_layer(
    dir: &std::path::Path,
    layer: &str,
    shape: [usize; 2],
    scale_shape: &[usize],
    quantization_config: serde_json::Value,
) {
    use safetensors::{Dtype, tensor::TensorView};
    let ints: Vec<u8> = (0..shape[0] * shape[1]).map(|i| (i * 37 % 255) as u8).collect();
    let n: usize = scale_shape.iter().product();
    let scales: Vec<u8> = (0..n).flat_map(|i| (0.01 + i as f32 * 1e-3).to_le_bytes()).collect();
    let tensors = [
        (format!("{layer}.weight"), TensorView::new(Dtype::I8, shape.to_vec(), &ints).unwrap()),
        (format!("{layer}.weight_scale"), TensorView::new(Dtype::F32, scale_shape.to_vec(), &scales).unwrap()),
    ];
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(tensors, Some(meta), &dir.join("model.safetensors")).unwrap();
    let config = serde_json::json!({"model_type": "toy", "quantization_config": quantization_config});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}
