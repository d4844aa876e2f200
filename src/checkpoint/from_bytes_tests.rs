//! A checkpoint read from bytes, without the `files` feature: a compressed-tensors
//! int-quantized layer and its config text read back exactly, and bad bytes refused (an error,
//! never a panic). The same checkpoints opened from files are compared in
//! tests/checkpoint_bytes.rs.

use std::collections::HashMap;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, serialize};

use super::Checkpoint;
use crate::{Error, Granularity, QuantScheme};

const LAYER: &str = "model.layers.0.mlp.up_proj";

/// An int-quantized `[4, 8]` layer (ints `values`, per-row scales) and a float bias, as the
/// bytes of a safetensors file; its config.json text.
fn int8_layer() -> (Vec<u8>, Vec<i8>, Vec<f32>, String) {
    let values: Vec<i8> = (0..32).map(|i| (i * 37 % 255) as u8 as i8).collect();
    let scales = [0.5f32, 0.25, 0.125, 2.0];
    let bias = [1.0f32, -2.0, 3.5, 0.0];
    let (ints, s, b): (Vec<u8>, Vec<u8>, Vec<u8>) = (
        bytemuck::cast_slice(&values).to_vec(),
        bytemuck::cast_slice(&scales).to_vec(),
        bytemuck::cast_slice(&bias).to_vec(),
    );
    let tensors = [
        (format!("{LAYER}.weight"), TensorView::new(Dtype::I8, vec![4, 8], &ints).unwrap()),
        (format!("{LAYER}.weight_scale"), TensorView::new(Dtype::F32, vec![4, 1], &s).unwrap()),
        (format!("{LAYER}.bias"), TensorView::new(Dtype::F32, vec![4], &b).unwrap()),
    ];
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let config = serde_json::json!({"model_type": "toy", "quantization_config": {
        "quant_method": "compressed-tensors",
        "format": "int-quantized",
        "config_groups": {"group_0": {"targets": ["Linear"], "weights":
            {"num_bits": 8, "type": "int", "symmetric": true, "strategy": "channel"}}},
    }});
    (serialize(tensors, Some(meta)).unwrap(), values, bias.to_vec(), config.to_string())
}

#[test]
fn an_int8_layer_reads_back_from_bytes() {
    let (bytes, values, bias, config) = int8_layer();
    let ck = Checkpoint::from_bytes(bytes.clone(), Some(&config)).unwrap();
    assert_eq!(ck.path().to_str(), Some("<bytes>"));
    assert_eq!((ck.folder(), ck.is_sharded(), ck.unlisted_files().len(), ck.files().len()), (None, false, 0, 1));
    assert_eq!(ck.metadata().unwrap()["format"], "pt");
    assert_eq!(ck.config().unwrap()["model_type"], "toy");
    assert_eq!(ck.quantized_layers(), [LAYER]);
    assert_eq!(ck.nbytes(), 32 + 16 + 16);
    assert_eq!(ck.tensor_f32(&format!("{LAYER}.bias")).unwrap(), bias);
    assert_eq!(ck.bytes(&format!("{LAYER}.weight")).unwrap(), bytemuck::cast_slice::<i8, u8>(&values));
    let q = ck.quantized_tensor(LAYER).unwrap();
    assert_eq!(q.values(), values);
    assert_eq!(q.scales(), [0.5, 0.25, 0.125, 2.0]);
    assert_eq!(q.scheme(), QuantScheme::symmetric(Granularity::PerChannel { axis: 0 }));
    // Without the config text the scheme is read off the scale shape, as for a folder without
    // config.json.
    let bare = Checkpoint::from_bytes(bytes, None).unwrap();
    assert!(bare.config().is_none());
    assert_eq!(bare.quantized_tensor(LAYER).unwrap(), q);
    let e = bare.tensor_f32("missing").unwrap_err();
    assert!(matches!(e, Error::NotFound(_)) && e.to_string().contains("`<bytes>` has no tensor `missing`"), "{e}");
}

#[test]
fn config_text_is_checked_as_config_json_is() {
    let (bytes, ..) = int8_layer();
    for (text, says) in [("[1, 2]", "is not a JSON object (it holds an array)"), ("{\"a\": ", "is not valid JSON")] {
        let e = Checkpoint::from_bytes(bytes.clone(), Some(text)).unwrap_err();
        assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
        assert!(e.to_string().contains(&format!("`<config.json text>` {says}")), "{e}");
    }
}

/// Every prefix of a good file, and the file with each header byte changed, is refused or
/// read, never a panic; every prefix is an [`Error::Corrupt`].
#[test]
fn bad_bytes_are_errors_never_panics() {
    let (bytes, ..) = int8_layer();
    for len in 0..bytes.len() {
        let e = Checkpoint::from_bytes(bytes[..len].to_vec(), None).unwrap_err();
        assert!(matches!(e, Error::Corrupt(_)), "{len} bytes: {e:?}");
    }
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    for i in 0..header_end {
        for v in [0u8, b'9', b'"', b'}', 0xff] {
            let mut b = bytes.clone();
            b[i] = v;
            if let Ok(ck) = Checkpoint::from_bytes(b, None) {
                // What opens reads within its bytes.
                for name in ck.names().map(str::to_string).collect::<Vec<_>>() {
                    ck.bytes(&name).unwrap();
                }
            }
        }
    }
    let mut longer = bytes.clone();
    longer.push(0);
    let e = Checkpoint::from_bytes(longer, None).unwrap_err();
    assert!(e.to_string().contains("`<bytes>` has 1 bytes after its last tensor"), "{e}");
    let mut huge = bytes;
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = Checkpoint::from_bytes(huge, None).unwrap_err();
    assert!(e.to_string().contains("`<bytes>` is not a safetensors file (header length"), "{e}");
}
