//! What a checkpoint folder's JSON files may say: a `config.json` or shard index too big to be
//! one is refused before it is read, and a `quantization_config` that contradicts the tensors,
//! or asks for what this crate cannot run, is an error rather than ignored.

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use common::TempDir;
use int8_wgpu::Error;
use int8_wgpu::checkpoint::Checkpoint;
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde_json::{Value, json};

const LAYER: &str = "model.layers.0.mlp.up_proj";

/// An int-quantized layer `LAYER` [64, 16] (I8 ints, F32 scales of `scale_shape`) and
/// `config.json` with `quantization_config`.
fn write_layer(dir: &Path, scale_shape: &[usize], quantization_config: Value) {
    let ints: Vec<u8> = (0..64 * 16).map(|i| (i * 37 % 255) as u8).collect();
    let n: usize = scale_shape.iter().product();
    let scales: Vec<u8> = (0..n).flat_map(|i| (0.01 + i as f32 * 1e-3).to_le_bytes()).collect();
    let tensors = [
        (format!("{LAYER}.weight"), TensorView::new(Dtype::I8, vec![64, 16], &ints).unwrap()),
        (format!("{LAYER}.weight_scale"), TensorView::new(Dtype::F32, scale_shape.to_vec(), &scales).unwrap()),
    ];
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(tensors, Some(meta), &dir.join("model.safetensors")).unwrap();
    let config = json!({"model_type": "toy", "quantization_config": quantization_config});
    fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

#[test]
fn a_sparse_huge_config_or_index_is_refused_without_reading_it() {
    let d = TempDir::new("cfg-huge");
    write_layer(d.path(), &[64, 1], json!({}));
    let config = d.path().join("config.json");
    fs::File::options().write(true).open(&config).unwrap().set_len(1 << 40).unwrap();
    let Err(e) = Checkpoint::open(d.path()) else { panic!("a 1 TiB config.json opened") };
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "checkpoint error: `{}` is 1099511627776 bytes, over the 67108864-byte limit for a JSON file of a \
             checkpoint; a model config or shard index is a few megabytes at most",
            config.display()
        )
    );

    // Just over the limit is refused too; the index likewise.
    fs::File::options().write(true).open(&config).unwrap().set_len((64 << 20) + 1).unwrap();
    let Err(e) = Checkpoint::open(d.path()) else { panic!("config.json over the limit opened") };
    assert!(e.to_string().contains("is 67108865 bytes, over the 67108864-byte limit"), "{e}");
    fs::write(&config, "{}").unwrap();
    let index = d.path().join("model.safetensors.index.json");
    fs::write(&index, "").unwrap();
    fs::File::options().write(true).open(&index).unwrap().set_len(1 << 40).unwrap();
    let Err(e) = Checkpoint::open(d.path()) else { panic!("a 1 TiB index opened") };
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    assert!(e.to_string().contains(&format!("`{}` is 1099511627776 bytes", index.display())), "{e}");
}
