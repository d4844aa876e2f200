//! Checkpoints changed while they are read (the truncation tests, library and CLI): a model of
//! square F32 layers, and truncating or rewriting its file in place.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;

use safetensors::Dtype;
use safetensors::tensor::TensorView;

use super::rand_vec;

/// Writes F32 layers `l{i}.weight` of `[n, n]` and an F32 `embed.weight` of `[n, n]` into
/// `dir/model.safetensors`, with a `config.json`; returns the tensors' bytes by name.
pub fn write_layers_and_embed(dir: &Path, layers: usize, n: usize) -> Vec<(String, Vec<u8>)> {
    let mut tensors: Vec<(String, Vec<u8>)> = (0..layers)
        .map(|i| (format!("l{i}.weight"), bytemuck::cast_slice(&rand_vec(n * n, 7 + i as u64)).to_vec()))
        .collect();
    tensors.push(("embed.weight".into(), bytemuck::cast_slice(&rand_vec(n * n, 3)).to_vec()));
    let views = tensors.iter().map(|(name, d)| (name.as_str(), TensorView::new(Dtype::F32, vec![n, n], d).unwrap()));
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    fs::write(dir.join("config.json"), r#"{"model_type": "toy"}"#).unwrap();
    tensors
}

pub fn truncate(file: &Path, len: u64) {
    fs::OpenOptions::new().write(true).open(file).unwrap().set_len(len).unwrap();
}

/// Writes `bytes` back over `file` in place (extending it again after a truncation).
pub fn write_back(file: &Path, bytes: &[u8]) {
    fs::OpenOptions::new().write(true).open(file).unwrap().write_all_at(bytes, 0).unwrap();
}
