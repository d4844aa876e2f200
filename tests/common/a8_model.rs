//! The float model of the int8-activation quantizer tests (library and CLI): two linear layers,
//! one of whose rows are not whole words, a norm and an `lm_head`.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use half::bf16;
use int8_wgpu::DType;
use int8_wgpu::checkpoint::TensorDtype;
use safetensors::tensor::TensorView;

use super::rand_vec;

/// Linear layers: name, [out, in]; `in` not a multiple of 4 for one (int-quantized rows are
/// not padded).
pub const LINEARS: &[(&str, [usize; 2])] = &[("model.layers.0.q_proj", [6, 10]), ("model.layers.0.up_proj", [12, 16])];

/// A float model folder in `dtype`: the linear weights, a norm, an `lm_head` (excluded by default).
pub fn write_model(dir: &Path, dtype: DType) -> Vec<Vec<f32>> {
    let bytes = |v: &[f32]| -> Vec<u8> {
        match dtype {
            DType::BF16 => v.iter().flat_map(|&x| bf16::from_f32(x).to_le_bytes()).collect(),
            _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    };
    let st = if dtype == DType::BF16 { TensorDtype::BF16 } else { TensorDtype::F32 };
    let mut weights = Vec::new();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (i, (name, [out, inn])) in LINEARS.iter().enumerate() {
        let w: Vec<f32> = rand_vec(out * inn, 40 + i as u64).iter().map(|&v| dtype.round(v)).collect();
        tensors.push((format!("{name}.weight"), vec![*out, *inn], bytes(&w)));
        weights.push(w);
    }
    tensors.push(("model.norm.weight".into(), vec![10], bytes(&[1.0; 10])));
    tensors.push(("lm_head.weight".into(), vec![4, 10], bytes(&rand_vec(40, 3))));
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let views = tensors.iter().map(|(n, s, b)| (n.as_str(), TensorView::new(st, s.clone(), b).unwrap()));
    safetensors::serialize_to_file(views, Some(meta), &dir.join("model.safetensors")).unwrap();
    fs::write(dir.join("config.json"), r#"{"model_type": "toy"}"#).unwrap();
    weights
}
