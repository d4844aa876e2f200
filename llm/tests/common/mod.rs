//! Shared by the decoder's tests: the device, the model file, a fixed prompt.
#![allow(dead_code)]

use std::path::PathBuf;

use int8_wgpu::Gpu;
use int8_wgpu::gguf::Gguf;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The device and the SmolLM2 file, or `None` (the test reports itself skipped) when either
/// is missing outside CI; under `CI=true` a missing one fails the test.
pub fn setup() -> Option<(Gpu, Gguf, PathBuf)> {
    let path = int8_wgpu_llm::model::default_path();
    if !path.is_file() {
        assert!(!in_ci(), "CI=true and no {}: run scripts/fetch-smollm2.sh", path.display());
        eprintln!("SKIPPED: no {}", path.display());
        return None;
    }
    let gpu = match Gpu::new() {
        Ok(g) => g,
        Err(e) if in_ci() => panic!("CI=true and no GPU adapter: {e}"),
        Err(e) => {
            eprintln!("SKIPPED: no GPU adapter ({e})");
            return None;
        }
    };
    eprintln!("GPU tests run on: {}", gpu.describe());
    let gguf = Gguf::open(&path).unwrap();
    Some((gpu, gguf, path))
}

/// A fixed English prompt of 40 tokens: each word is one token of the vocabulary (looked up
/// as `Ġword`, GPT-2's byte-level space), so the ids need no tokenizer.
pub fn prompt_ids(gguf: &Gguf) -> Vec<u32> {
    const TEXT: &str = "The capital of France is Paris . It is a large city on the river , and many people \
        visit it every year to see the old buildings , the museums and the parks . The food is good";
    let tokens = gguf.tokenizer().unwrap().tokens;
    let id = |t: &str| tokens.iter().position(|&x| x == t).unwrap_or_else(|| panic!("no token {t:?}")) as u32;
    let mut ids = Vec::new();
    for (i, w) in TEXT.split_whitespace().enumerate() {
        ids.push(if i == 0 { id(w) } else { id(&format!("\u{120}{w}")) });
    }
    ids
}

/// Index of the largest value (the first of equal ones).
pub fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |best, (i, &x)| if x > v[best] { i } else { best })
}

/// The largest |a − b| over two sets of logits.
pub fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter().zip(b).flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs())).fold(0.0, f32::max)
}
