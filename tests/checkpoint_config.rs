//! What a checkpoint folder's JSON files may say: a `config.json` or shard index too big to be
//! one is refused before it is read, and a `quantization_config` that contradicts the tensors,
//! or asks for what this crate cannot run, is an error rather than ignored.

mod common;

use std::fs;
use std::path::Path;

use common::TempDir;
use int8_wgpu::checkpoint::Checkpoint;
use int8_wgpu::{ActivationQuant, DType, Error, Granularity, QuantScheme, reference};
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde_json::{Value, json};

const LAYER: &str = "model.layers.0.mlp.up_proj";

/// An int-quantized layer `LAYER` [64, 64] (I8 ints, F32 scales of `scale_shape`) and
/// `config.json` with `quantization_config`.
fn write_layer(dir: &Path, scale_shape: &[usize], quantization_config: Value) {
    common::write_int8_layer(dir, LAYER, [64, 64], scale_shape, quantization_config);
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

/// A compressed-tensors config with one group of these weight arguments targeting `Linear`.
fn ct_config(weights: Value) -> Value {
    json!({
        "quant_method": "compressed-tensors",
        "format": "int-quantized",
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights}},
        "ignore": ["lm_head"],
    })
}

fn group(size: Value) -> Value {
    json!({"num_bits": 8, "type": "int", "symmetric": true, "strategy": "group", "group_size": size})
}

/// Loads `LAYER` with `config` over [64, 4] scales (groups of 16 inputs): its granularity, or
/// the error.
fn load(d: &Path, scales: &[usize], config: Value) -> Result<Granularity, Error> {
    write_layer(d, scales, config);
    let ck = Checkpoint::open(d).unwrap();
    let info = ck.quantized_layer_info(LAYER);
    if let Err(e) = &info {
        assert_eq!(ck.quantized_tensor(LAYER).unwrap_err().to_string(), e.to_string());
    }
    // A message that does not name the layer comes wrapped in one that does.
    info.map(|i| i.scheme.granularity).map_err(|e| match e {
        Error::Tensor { name, source } if name == LAYER => *source,
        e => e,
    })
}

#[test]
fn a_group_size_that_is_not_a_positive_integer_is_corrupt() {
    let d = TempDir::new("cfg-size");
    assert_eq!(load(d.path(), &[64, 4], ct_config(group(json!(16)))).unwrap(), Granularity::PerGroup { size: 16 });
    for size in [json!(-1), json!("16"), json!(16.0), Value::Null, json!(1e20), json!(0)] {
        let e = load(d.path(), &[64, 4], ct_config(group(size.clone()))).unwrap_err();
        assert!(matches!(e, Error::Corrupt(_)), "{size}: {e:?}");
        assert_eq!(
            e.to_string(),
            format!(
                "checkpoint error: layer `{LAYER}`: config group `group_0`: weights.group_size is {size}; strategy \
                 `group` needs a positive integer group size, so the file was edited or is corrupt"
            )
        );
    }
    for (key, v, want) in [("num_bits", json!("4"), "an integer"), ("symmetric", json!("false"), "true or false")] {
        let mut w = group(json!(16));
        w[key] = v.clone();
        let e = load(d.path(), &[64, 4], ct_config(w)).unwrap_err();
        assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
        assert!(e.to_string().contains(&format!("weights.{key} is {v}, not {want}")), "{e}");
    }
    // A group size with a strategy that has none; -1, the old spelling of per channel, loads.
    let channel = |size: Value| json!({"num_bits": 8, "strategy": "channel", "group_size": size});
    let e = load(d.path(), &[64, 1], ct_config(channel(json!(16)))).unwrap_err();
    assert!(e.to_string().contains("weights.group_size is 16; strategy `channel` has no groups"), "{e}");
    let per_row = Granularity::PerChannel { axis: 0 };
    assert_eq!(load(d.path(), &[64, 1], ct_config(channel(json!(-1)))).unwrap(), per_row);
    assert!(load(d.path(), &[64, 4], ct_config(channel(json!(-1)))).unwrap_err().to_string().contains("disagree"));
}

#[test]
fn float_and_block_schemes_are_unsupported() {
    let d = TempDir::new("cfg-unsupported");
    let mut block = group(json!(16));
    block["strategy"] = json!("block");
    let mut float = group(json!(16));
    float["type"] = json!("float");
    let mut float_format = ct_config(group(json!(16)));
    float_format["format"] = json!("float-quantized");
    for (config, says) in [
        (
            ct_config(block),
            "config group `group_0`: weights.strategy is \"block\"; only `tensor`, `channel` and `group` int8 weights load here",
        ),
        (
            ct_config(float),
            "config group `group_0`: weights.type is \"float\"; only int weights load here (float, e.g. FP8, weights do not)",
        ),
        (
            float_format,
            "quantization_config format `float-quantized` stores float (e.g. FP8) weights; only int8 weights load here",
        ),
    ] {
        let e = load(d.path(), &[64, 4], config).unwrap_err();
        assert!(matches!(e, Error::Unsupported(_)), "{e:?}");
        assert_eq!(e.to_string(), format!("unsupported: {says}"));
    }
}

#[test]
fn a_layer_ignored_untargeted_or_targeted_twice_differently_is_corrupt() {
    let d = TempDir::new("cfg-targets");
    let base = ct_config(group(json!(16)));
    let mut conv = base.clone();
    conv["config_groups"]["group_0"]["targets"] = json!(["Conv2d"]);
    let mut ignored = base.clone();
    ignored["ignore"] = json!(["lm_head", LAYER]);
    let mut ignored_re = base.clone();
    ignored_re["ignore"] = json!(["re:.*up_proj$"]);
    let mut twice = base.clone();
    twice["config_groups"]["group_1"] = json!({"targets": ["re:.*mlp\\..*"], "weights": group(json!(32))});
    let pre = format!("checkpoint error: layer `{LAYER}`: config.json's quantization_config");
    for (config, says) in [
        (
            conv,
            format!(
                "{pre} has no config group whose targets name it, but it carries quantized tensors; the file was edited or is corrupt"
            ),
        ),
        (
            ignored,
            format!(
                "{pre} lists it in `ignore` (`{LAYER}`), but it carries quantized tensors; the config and the tensors disagree, so the file was edited or is corrupt"
            ),
        ),
        (
            ignored_re,
            format!(
                "{pre} lists it in `ignore` (`re:.*up_proj$`), but it carries quantized tensors; the config and the tensors disagree, so the file was edited or is corrupt"
            ),
        ),
        (
            twice,
            format!(
                "{pre} targets it from groups `group_0` and `group_1`, whose weights differ; a layer is quantized by one group"
            ),
        ),
    ] {
        let e = load(d.path(), &[64, 4], config).unwrap_err();
        assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
        assert_eq!(e.to_string(), says);
    }
    // Targeted by name or regex, by two groups that agree, or one that targets other layers: loads.
    let want = Granularity::PerGroup { size: 16 };
    let mut by_name = base.clone();
    by_name["config_groups"]["group_0"]["targets"] = json!([LAYER]);
    let mut by_re = base.clone();
    by_re["config_groups"]["group_0"]["targets"] = json!(["re:model\\.layers\\.\\d+\\.mlp"]);
    let mut agree = base.clone();
    agree["config_groups"]["group_1"] = json!({"targets": ["re:.*mlp.*"], "weights": group(json!(16))});
    let mut other = base.clone();
    other["config_groups"]["group_1"] = json!({"targets": ["re:.*self_attn.*"], "weights": group(json!(32))});
    for config in [by_name, by_re, agree, other] {
        assert_eq!(load(d.path(), &[64, 4], config.clone()).unwrap(), want, "{config}");
    }
}

/// A tensor to write: name, dtype, shape, bytes.
type Tensor = (String, Dtype, Vec<usize>, Vec<u8>);

/// Writes `tensors` and a config.json holding `quantization_config`, replacing what was there.
fn write_folder(dir: &Path, tensors: &[Tensor], quantization_config: &Value) {
    let views = tensors.iter().map(|(n, d, s, b)| (n.as_str(), TensorView::new(*d, s.clone(), b).unwrap()));
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    let config = json!({"model_type": "llama", "quantization_config": quantization_config});
    fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// llmcompressor's W8A8: symmetric per-row int-quantized weights, dynamic per-token activations.
fn w8a8_config() -> Value {
    let mut c = ct_config(json!({"num_bits": 8, "type": "int", "symmetric": true, "strategy": "channel"}));
    c["config_groups"]["group_0"]["input_activations"] =
        json!({"num_bits": 8, "type": "int", "symmetric": true, "strategy": "token", "dynamic": true});
    c
}

/// Old compressed-tensors (before its PR #59) saved all-zero zero points for symmetric schemes:
/// under a symmetric config such a layer is symmetric, and runs W8A8 exactly as without them.
#[test]
fn all_zero_zero_points_under_a_symmetric_w8a8_config_load_as_symmetric() {
    let d = TempDir::new("cfg-zp-w8a8");
    let (out, inn) = (8, 16);
    let q = reference::quantize(&common::rand_vec(out * inn, 3), &[out, inn], QuantScheme::default()).unwrap();
    let weight = (format!("{LAYER}.weight"), Dtype::I8, vec![out, inn], bytemuck::cast_slice(q.values()).to_vec());
    let scale = (format!("{LAYER}.weight_scale"), Dtype::F32, vec![out, 1], f32_bytes(q.scales()));
    let zps = (format!("{LAYER}.weight_zero_point"), Dtype::I8, vec![out, 1], vec![0u8; out]);
    let x = common::rand_vec(3 * inn, 4);
    let mut runs = vec![];
    for tensors in [vec![weight.clone(), scale.clone()], vec![weight, scale, zps]] {
        write_folder(d.path(), &tensors, &w8a8_config());
        let ck = Checkpoint::open(d.path()).unwrap();
        assert_eq!(ck.quantized_layer_info(LAYER).unwrap().scheme, QuantScheme::default(), "{}", tensors.len());
        assert_eq!(ck.quantized_tensor(LAYER).unwrap(), q);
        if let Some(gpu) = common::gpu() {
            let layer = ck.linear_with(&gpu, LAYER, DType::F32).unwrap();
            assert_eq!(layer.weight().to_host().unwrap(), q);
            runs.push(layer.forward_host(&x, &[3, inn]).unwrap());
        }
    }
    if let [without, with] = runs.as_slice() {
        assert_eq!(with, without, "bit for bit");
        assert_eq!(with, &reference::linear_a8(&x, &q, None, ActivationQuant::per_token()).unwrap());
    }
}

/// The same for W8A16 pack-quantized in groups of 16, with zero points packed along dim 0 (`zp ^ 0x80`).
#[test]
fn all_zero_packed_zero_points_of_groups_under_a_symmetric_config_load_as_symmetric() {
    let d = TempDir::new("cfg-zp-w8a16");
    let scheme = QuantScheme::symmetric(Granularity::PerGroup { size: 16 });
    let (out, inn) = (8, 64);
    let q = reference::quantize(&common::rand_vec(out * inn, 5), &[out, inn], scheme).unwrap();
    let packed: Vec<u8> = q.values().iter().map(|&v| v as u8 ^ 0x80).collect();
    let shape: Vec<u8> = [out as i64, inn as i64].iter().flat_map(|v| v.to_le_bytes()).collect();
    let weights = json!({"num_bits": 8, "type": "int", "symmetric": true, "strategy": "group", "group_size": 16});
    let mut config = ct_config(weights);
    config["format"] = json!("pack-quantized");
    let tensors = [
        (format!("{LAYER}.weight_packed"), Dtype::I32, vec![out, inn / 4], packed),
        (format!("{LAYER}.weight_shape"), Dtype::I64, vec![2], shape),
        (format!("{LAYER}.weight_scale"), Dtype::F32, vec![out, 4], f32_bytes(q.scales())),
        (format!("{LAYER}.weight_zero_point"), Dtype::I32, vec![out / 4, 4], vec![0x80; out / 4 * 4 * 4]),
    ];
    write_folder(d.path(), &tensors, &config);
    let ck = Checkpoint::open(d.path()).unwrap();
    assert_eq!(ck.quantized_layer_info(LAYER).unwrap().scheme, scheme);
    assert_eq!(ck.quantized_tensor(LAYER).unwrap(), q);
    if let Some(gpu) = common::gpu() {
        assert_eq!(ck.linear_with(&gpu, LAYER, DType::F32).unwrap().weight().to_host().unwrap(), q);
    }
    // Under `symmetric: false` they are the layer's zero points, as before.
    config["config_groups"]["group_0"]["weights"]["symmetric"] = json!(false);
    write_folder(d.path(), &tensors, &config);
    let scheme = Checkpoint::open(d.path()).unwrap().quantized_layer_info(LAYER).unwrap().scheme;
    assert_eq!(scheme, QuantScheme::asymmetric(Granularity::PerGroup { size: 16 }));
}

#[test]
fn a_nonzero_zero_point_under_a_symmetric_config_is_corrupt() {
    let d = TempDir::new("cfg-zp-nonzero");
    let ints: Vec<u8> = (0..8 * 64).map(|i| (i * 37 % 255) as u8).collect();
    let mut zps = vec![0u8; 8 * 4];
    zps[3 * 4 + 2] = -2i8 as u8;
    let tensors = [
        (format!("{LAYER}.weight"), Dtype::I8, vec![8, 64], ints),
        (format!("{LAYER}.weight_scale"), Dtype::F32, vec![8, 4], f32_bytes(&[0.01; 32])),
        (format!("{LAYER}.weight_zero_point"), Dtype::I8, vec![8, 4], zps),
    ];
    write_folder(d.path(), &tensors, &ct_config(group(json!(16))));
    let ck = Checkpoint::open(d.path()).unwrap();
    let want = format!(
        "checkpoint error: layer `{LAYER}`: config group `group_0` says symmetric but `{LAYER}.weight_zero_point` \
         holds the nonzero zero point -2 at [3, 2]; a symmetric layer's zero points are all zero, so the config and \
         the tensors disagree: the file was edited or is corrupt"
    );
    let e = ck.quantized_layer_info(LAYER).unwrap_err();
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    assert_eq!(e.to_string(), want);
    assert_eq!(ck.quantized_tensor(LAYER).unwrap_err().to_string(), want);
    if let Some(gpu) = common::gpu() {
        assert_eq!(ck.linear_with(&gpu, LAYER, DType::F32).unwrap_err().to_string(), want);
    }
}
