//! The synthetic checkpoint of the checkpoint tests (library and CLI): a small model with
//! linear layers of awkward shapes, written as one file or as shards.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use int8_wgpu::checkpoint::TensorDtype;
use int8_wgpu::quantizer::Quantizer;
use int8_wgpu::{DType, QuantScheme, QuantizedTensor, reference};
use safetensors::tensor::TensorView;
use serde_json::json;

use super::rand_vec;

pub struct T {
    pub dtype: TensorDtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

/// `values` as the little-endian bytes of `dtype`, rounded to nearest even.
pub fn floats(values: &[f32], dtype: DType) -> Vec<u8> {
    let bytes = |v: f32| -> Vec<u8> {
        match dtype {
            DType::F32 => v.to_le_bytes().into(),
            DType::F16 => f16::from_f32(v).to_le_bytes().into(),
            DType::BF16 => bf16::from_f32(v).to_le_bytes().into(),
        }
    };
    values.iter().flat_map(|&v| bytes(v)).collect()
}

/// The safetensors dtype of a float [`DType`].
pub fn tensor_dtype(dtype: DType) -> TensorDtype {
    match dtype {
        DType::F32 => TensorDtype::F32,
        DType::F16 => TensorDtype::F16,
        DType::BF16 => TensorDtype::BF16,
    }
}

pub fn float_t(shape: &[usize], seed: u64, dtype: DType) -> T {
    let n = shape.iter().product();
    // Rows of different magnitudes, so scales differ per row.
    let v: Vec<f32> = rand_vec(n, seed)
        .iter()
        .enumerate()
        .map(|(i, x)| x * (1.0 + (i / shape[shape.len() - 1]) as f32 * 0.37))
        .collect();
    T { dtype: tensor_dtype(dtype), shape: shape.to_vec(), data: floats(&v, dtype) }
}

/// Linear layers of the synthetic model: name, [out, in]. `in` is not a multiple of 4 for some
/// (row padding) and a multiple of 5 for all (group size 5); out = 5 tests zero-point padding.
pub const LINEARS: &[(&str, [usize; 2])] = &[
    ("model.layers.0.attn.q_proj", [6, 10]),
    ("model.layers.0.mlp.gate_proj", [5, 10]),
    ("model.layers.0.mlp.up_proj", [12, 10]),
    ("model.layers.0.mlp.down_proj", [10, 15]),
];

pub fn model(dtype: DType) -> Vec<(String, T)> {
    let mut v: Vec<(String, T)> = Vec::new();
    for (i, (name, shape)) in LINEARS.iter().enumerate() {
        v.push((format!("{name}.weight"), float_t(shape, 100 + i as u64, dtype)));
    }
    v.push(("model.layers.0.mlp.up_proj.bias".into(), float_t(&[12], 7, dtype)));
    v.push(("model.embed_tokens.weight".into(), float_t(&[16, 10], 8, dtype)));
    v.push(("model.norm.weight".into(), float_t(&[10], 9, dtype)));
    v.push(("lm_head.weight".into(), float_t(&[16, 10], 10, dtype)));
    let ids: Vec<u8> = (0..7i64).flat_map(|i| i.to_le_bytes()).collect();
    v.push(("model.position_ids".into(), T { dtype: TensorDtype::I64, shape: vec![1, 7], data: ids }));
    v
}

pub fn write_file(path: &Path, tensors: &[(String, T)]) {
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let views = tensors.iter().map(|(n, t)| (n.as_str(), TensorView::new(t.dtype, t.shape.clone(), &t.data).unwrap()));
    safetensors::serialize_to_file(views, Some(meta), path).unwrap();
}

/// A model folder: model.safetensors, config.json, tokenizer files, a sub-folder.
pub fn write_model(dir: &Path, dtype: DType) -> Vec<(String, T)> {
    let m = model(dtype);
    write_file(&dir.join("model.safetensors"), &m);
    fs::write(dir.join("config.json"), r#"{"model_type": "toy", "hidden_size": 10}"#).unwrap();
    fs::write(dir.join("tokenizer.json"), r#"{"version": "1.0"}"#).unwrap();
    fs::write(dir.join("vocab.txt"), "[PAD]\n[UNK]\n").unwrap();
    fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    fs::write(dir.join("1_Pooling/config.json"), "{}").unwrap();
    m
}

/// Every file under `dir` with its bytes, relative paths sorted.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push((p.strip_prefix(root).unwrap().to_path_buf(), fs::read(&p).unwrap()));
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

pub fn quantizer(input: &Path, output: &Path, scheme: QuantScheme) -> Quantizer {
    Quantizer::new(input, output).scheme(scheme).cpu().eval_rows(2)
}

/// The in-memory quantization of a float tensor of the model.
pub fn in_memory(t: &T, scheme: QuantScheme) -> QuantizedTensor {
    match t.dtype {
        TensorDtype::F32 => reference::quantize::<f32>(&bytemuck::pod_collect_to_vec(&t.data), &t.shape, scheme),
        TensorDtype::F16 => reference::quantize::<f16>(&bytemuck::pod_collect_to_vec(&t.data), &t.shape, scheme),
        TensorDtype::BF16 => reference::quantize::<bf16>(&bytemuck::pod_collect_to_vec(&t.data), &t.shape, scheme),
        d => panic!("not float: {d}"),
    }
    .unwrap()
}

pub fn i32s(b: &[u8]) -> Vec<i32> {
    bytemuck::pod_collect_to_vec(b)
}

/// A sharded copy of `model(dtype)` in `dir`: two shards and their index.
pub fn write_sharded(dir: &Path, dtype: DType) {
    let (a, b): (Vec<_>, Vec<_>) = model(dtype).into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let mut map = serde_json::Map::new();
    for (file, part) in [("model-00001-of-00002.safetensors", a), ("model-00002-of-00002.safetensors", b)] {
        let part: Vec<(String, T)> = part.into_iter().map(|(_, t)| t).collect();
        for (n, _) in &part {
            map.insert(n.clone(), json!(file));
        }
        write_file(&dir.join(file), &part);
    }
    let index = json!({"metadata": {"total_size": 0}, "weight_map": map});
    fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

#[cfg(unix)]
pub fn mkfifo(path: &Path) {
    let _ = fs::remove_file(path);
    let s = std::process::Command::new("mkfifo").arg(path).status().expect("mkfifo runs");
    assert!(s.success(), "mkfifo {}", path.display());
}

/// The synthetic model with three zero-size weights beside its layers (`model.extra.*`), one of
/// 2^62 rows: a zero-size dimension makes any other dimension's size free of any data.
pub fn write_zero_size_model(dir: &Path) {
    let mut m = write_model(dir, DType::F32);
    m.push(("model.extra.rows.weight".into(), T { dtype: TensorDtype::F32, shape: vec![0, 10], data: vec![] }));
    m.push(("model.extra.cols.weight".into(), T { dtype: TensorDtype::BF16, shape: vec![4, 0], data: vec![] }));
    m.push(("model.extra.huge.weight".into(), T { dtype: TensorDtype::F32, shape: vec![1 << 62, 0], data: vec![] }));
    write_file(&dir.join("model.safetensors"), &m);
}

/// A sharded model with two safetensors files its index does not list: a third shard and a
/// `model.safetensors` (the index wins over it, so it is not read either). Returns their tensor.
pub fn write_sharded_with_unlisted_files(dir: &Path) -> [(String, T); 1] {
    write_sharded(dir, DType::F32);
    let stray = [("extra".to_string(), float_t(&[4, 8], 1, DType::F32))];
    write_file(&dir.join("model-00003-of-00003.safetensors"), &stray);
    write_file(&dir.join("model.safetensors"), &stray);
    stray
}

/// The bytes of a safetensors file whose header is `header` (no padding) followed by `data`.
pub fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}
