//! Models of square F32 layers `l{i}.weight` (the output-safety tests, library and CLI), and the
//! temporary folders a run leaves.

use std::fs;
use std::path::Path;
use std::sync::Mutex;

use int8_wgpu::quantizer::Quantizer;
use int8_wgpu::Result;
use int8_wgpu::quantizer::QuantReport;

use safetensors::Dtype;
use safetensors::tensor::TensorView;

use super::rand_vec;

/// Writes `layers` F32 linear layers `l{i}.weight` of `[n, n]` into `path`.
pub fn write_weights(path: &Path, layers: usize, n: usize) {
    let data: Vec<Vec<u8>> =
        (0..layers).map(|i| bytemuck::cast_slice(&rand_vec(n * n, 7 + i as u64)).to_vec()).collect();
    let views: Vec<(String, TensorView<'_>)> = data
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("l{i}.weight"), TensorView::new(Dtype::F32, vec![n, n], d).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// A model folder: `model.safetensors` with `layers` layers of `[n, n]`, `config.json`,
/// `tokenizer.json`.
pub fn write_model(dir: &Path, layers: usize, n: usize) {
    write_weights(&dir.join("model.safetensors"), layers, n);
    fs::write(dir.join("config.json"), r#"{"model_type": "toy"}"#).unwrap();
    fs::write(dir.join("tokenizer.json"), r#"{"version": "1.0"}"#).unwrap();
}

/// The names in `dir` that are a run's temporary folders (this version's or older ones').
pub fn temp_folders(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("int8-wgpu-tmp"))
        .collect();
    v.sort();
    v
}

/// Quantizes `inp` to `dest`; before the second layer, `meddle` runs (as another program would,
/// mid-run).
pub fn run_meddling(q: Quantizer, mut meddle: impl FnMut()) -> Result<QuantReport> {
    q.run_with_progress(|p| {
        if p.done == 1 && p.layer.is_some() {
            meddle();
        }
    })
}

/// In-process runs of a test binary are serialized:
/// [`remove_temp_folders`](int8_wgpu::quantizer::remove_temp_folders) removes the temporary
/// folders of every run in the process, so it must not meet another test's run.
static IN_PROCESS: Mutex<()> = Mutex::new(());

/// Holds the in-process runs of this test binary to one at a time while it lives.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    IN_PROCESS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A quantizer on the CPU reference with no error evaluation: the file-system tests' runs.
pub fn quantizer(input: &Path, output: &Path) -> Quantizer {
    Quantizer::new(input, output).cpu().eval_rows(0)
}
