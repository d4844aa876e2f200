//! What a checkpoint that is wrong, or asked for wrongly, is told: a config whose group size
//! disagrees with the scales, a layer name with a typo, a missing prefix or another layer index,
//! a float layer asked for as quantized, a config field that is not an object or is missing, a
//! bitsandbytes threshold f32 cannot hold, a weight_shape or zero points that contradict the
//! packed tensors, a header key given twice, and a tensor name said once.

mod common;

use std::fs;
use std::path::Path;

use common::TempDir;
use int8_wgpu::checkpoint::Checkpoint;
use int8_wgpu::{Error, Granularity};
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde_json::{Value, json};

const LAYER: &str = "model.layers.0.mlp.up_proj";

/// An int-quantized layer `LAYER` [8, 16] (I8 ints, F32 scales of `scale_shape`) and
/// `config.json` with `quantization_config`.
fn write_layer(dir: &Path, scale_shape: &[usize], quantization_config: Value) {
    common::write_int8_layer(dir, LAYER, [8, 16], scale_shape, quantization_config);
}

/// A compressed-tensors int-quantized config with these weight arguments.
fn ct_config(weights: Value) -> Value {
    json!({
        "quant_method": "compressed-tensors",
        "format": "int-quantized",
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights}},
    })
}

fn group(size: Value) -> Value {
    json!({"num_bits": 8, "type": "int", "symmetric": true, "strategy": "group", "group_size": size})
}

#[test]
fn a_group_size_that_disagrees_with_the_scale_shape_is_an_error() {
    let d = TempDir::new("msg-group");
    write_layer(d.path(), &[8, 1], ct_config(group(json!(4))));
    let ck = Checkpoint::open(d.path()).unwrap();
    let e = ck.quantized_layer_info(LAYER).unwrap_err();
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "checkpoint error: layer `{LAYER}` [8, 16]: config.json's quantization_config group `group_0` says groups \
             of 4 inputs, but `{LAYER}.weight_scale` has shape [8, 1] (one scale per output row); the config and the \
             scales disagree, so the file was edited or is corrupt"
        )
    );
    assert_eq!(ck.quantized_tensor(LAYER).unwrap_err().to_string(), e.to_string());
    if let Some(gpu) = common::gpu() {
        assert_eq!(ck.linear(&gpu, LAYER).unwrap_err().to_string(), e.to_string());
    }

    // Channel scales under a per-tensor config; one scale under a per-channel config.
    let tensor = json!({"num_bits": 8, "symmetric": true, "strategy": "tensor"});
    let channel = json!({"num_bits": 8, "symmetric": true, "strategy": "channel"});
    for (scales, weights, says) in [
        (&[8usize, 1][..], tensor.clone(), "one scale per tensor"),
        (&[1][..], channel.clone(), "one scale per output row"),
        (&[8, 4][..], group(json!(8)), "groups of 8 inputs"),
    ] {
        write_layer(d.path(), scales, ct_config(weights));
        let e = Checkpoint::open(d.path()).unwrap().quantized_layer_info(LAYER).unwrap_err();
        assert!(e.to_string().contains(&format!("group `group_0` says {says}, but")), "{e}");
    }

    // What agrees loads: groups of 4 as [8, 4]; a group of the whole row is one scale per row.
    for (scales, weights, want) in [
        (&[8usize, 4][..], group(json!(4)), Granularity::PerGroup { size: 4 }),
        (&[8, 1][..], group(json!(16)), Granularity::PerChannel { axis: 0 }),
        (&[8, 1][..], channel, Granularity::PerChannel { axis: 0 }),
        (&[1][..], tensor, Granularity::PerTensor),
    ] {
        write_layer(d.path(), scales, ct_config(weights));
        let info = Checkpoint::open(d.path()).unwrap().quantized_layer_info(LAYER).unwrap();
        assert_eq!(info.scheme.granularity, want);
    }
}

#[test]
fn a_layer_name_with_a_stray_suffix_or_a_typo_gets_a_hint() {
    let d = TempDir::new("msg-typo");
    write_layer(d.path(), &[8, 1], ct_config(json!({"num_bits": 8, "strategy": "channel"})));
    let ck = Checkpoint::open(d.path()).unwrap();
    let not_found = |p: &str, hint: &str| {
        format!("checkpoint error: no quantized layer `{p}` (no `{p}.weight_packed` nor I8 `{p}.weight`){hint}")
    };
    let hint = format!("; did you mean `{LAYER}`?");
    for typo in [format!("{LAYER}.weight"), format!("{LAYER}.weight_scale"), "model.layers.0.mlp.up_prj".into()] {
        let e = ck.quantized_layer_info(&typo).unwrap_err();
        // Said once: the message names the layer, so no "tensor `…`:" in front of it.
        assert!(matches!(e, Error::NotFound(_)), "{e:?}");
        assert_eq!(e.to_string(), not_found(&typo, &hint));
        assert_eq!(ck.quantized_tensor(&typo).unwrap_err().to_string(), not_found(&typo, &hint));
    }
    // Nothing close: no hint; another layer index: how many layers there are.
    assert_eq!(ck.quantized_layer_info("lm_head").unwrap_err().to_string(), not_found("lm_head", ""));
    let far = "model.layers.1.attn.q_proj";
    let count = "; the model has 1 layer (`layers.0`)";
    assert_eq!(ck.quantized_layer_info(far).unwrap_err().to_string(), not_found(far, count));
    if let Some(gpu) = common::gpu() {
        let typo = format!("{LAYER}.weight");
        assert_eq!(ck.linear(&gpu, &typo).unwrap_err().to_string(), not_found(&typo, &hint));
    }
}

#[test]
fn input_activations_that_are_not_an_object_name_the_field() {
    let d = TempDir::new("msg-act");
    let mut config = ct_config(json!({"num_bits": 8, "strategy": "channel"}));
    config["config_groups"]["group_0"]["input_activations"] = json!("yes");
    write_layer(d.path(), &[8, 1], config);
    let e = Checkpoint::open(d.path()).unwrap().activation_quant().unwrap_err();
    assert_eq!(
        e.to_string(),
        "unsupported: config group `group_0`: input_activations is \"yes\"; the quantization arguments must be an \
         object (only dynamic per-token symmetric int8 activations, llmcompressor's W8A8, are supported)"
    );
    // A key below it is named with its path.
    let mut config = ct_config(json!({"num_bits": 8, "strategy": "channel"}));
    config["config_groups"]["group_0"]["input_activations"] = json!({"num_bits": 4, "dynamic": true});
    write_layer(d.path(), &[8, 1], config);
    let e = Checkpoint::open(d.path()).unwrap().activation_quant().unwrap_err();
    assert!(e.to_string().starts_with("unsupported: config group `group_0`: input_activations.num_bits is 4;"), "{e}");
}

#[test]
fn a_bitsandbytes_threshold_f32_cannot_hold_is_named_not_read_as_inf_or_zero() {
    let d = TempDir::new("msg-bnb");
    for (t, want) in [
        ("1e300", "llm_int8_threshold 1e+300, beyond f32's range (max 3.4028235e38)"),
        ("1e-50", "llm_int8_threshold 1e-50, below f32's smallest positive value (1e-45); 0 means no outlier columns"),
    ] {
        let config = format!(r#"{{"quant_method": "bitsandbytes", "load_in_8bit": true, "llm_int8_threshold": {t}}}"#);
        write_layer(d.path(), &[8, 1], serde_json::from_str(&config).unwrap());
        let e = Checkpoint::open(d.path()).unwrap().activation_quant().unwrap_err();
        assert!(matches!(e, Error::Unsupported(_)), "{e:?}");
        assert_eq!(e.to_string(), format!("unsupported: the bitsandbytes quantization_config has {want}"));
    }
}

#[test]
fn input_activations_without_dynamic_or_strategy_say_they_are_missing() {
    let d = TempDir::new("msg-act-missing");
    let mut config = ct_config(json!({"num_bits": 8, "strategy": "channel"}));
    config["config_groups"]["group_0"]["input_activations"] = json!({});
    write_layer(d.path(), &[8, 1], config.clone());
    let e = Checkpoint::open(d.path()).unwrap().activation_quant().unwrap_err();
    assert_eq!(
        e.to_string(),
        "unsupported: config group `group_0`: input_activations.dynamic is missing (compressed-tensors' default is \
         false); static (calibrated) activation scales are not supported (only dynamic per-token symmetric int8 \
         activations, llmcompressor's W8A8, are supported)"
    );
    config["config_groups"]["group_0"]["input_activations"] = json!({"dynamic": true});
    write_layer(d.path(), &[8, 1], config);
    let e = Checkpoint::open(d.path()).unwrap().activation_quant().unwrap_err();
    assert!(
        e.to_string().contains("input_activations.strategy is missing (compressed-tensors' default is \"tensor\")")
    );
}

#[test]
fn an_asymmetric_layer_without_zero_points_is_corrupt() {
    let d = TempDir::new("msg-zp");
    write_layer(d.path(), &[8, 1], ct_config(json!({"num_bits": 8, "symmetric": false, "strategy": "channel"})));
    let e = Checkpoint::open(d.path()).unwrap().quantized_layer_info(LAYER).unwrap_err();
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    assert!(e.to_string().contains(&format!("config.json says asymmetric but `{LAYER}.weight_zero_point` is missing")));
}

/// A pack-quantized layer `LAYER`: I32 `[8, 4]` words (each row's ints and padding as given),
/// `weight_shape` I64 `shape`, F32 scales [8, 1]; no config.
fn write_packed(dir: &Path, words: &[u32], shape: [i64; 2]) {
    let words: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let shape: Vec<u8> = shape.iter().flat_map(|v| v.to_le_bytes()).collect();
    let scales: Vec<u8> = (0..8).flat_map(|i| (0.5 + i as f32).to_le_bytes()).collect();
    let tensors = [
        (format!("{LAYER}.weight_packed"), TensorView::new(Dtype::I32, vec![8, 4], &words).unwrap()),
        (format!("{LAYER}.weight_shape"), TensorView::new(Dtype::I64, vec![2], &shape).unwrap()),
        (format!("{LAYER}.weight_scale"), TensorView::new(Dtype::F32, vec![8, 1], &scales).unwrap()),
    ];
    safetensors::serialize_to_file(tensors, None, &dir.join("model.safetensors")).unwrap();
}

#[test]
fn a_weight_shape_that_disagrees_with_the_packed_ints_is_corrupt() {
    let d = TempDir::new("msg-wshape");
    // Every byte 0x81 (q = 1) in columns 0..16.
    write_packed(d.path(), &[0x8181_8181; 32], [8, 16]);
    let ck = Checkpoint::open(d.path()).unwrap();
    assert_eq!(ck.quantized_tensor(LAYER).unwrap().values(), &[1i8; 128][..]);
    for shape in [[4, 16], [0, 16], [1 << 40, 16], [8, 40], [-1, 16]] {
        write_packed(d.path(), &[0x8181_8181; 32], shape);
        let e = Checkpoint::open(d.path()).unwrap().quantized_layer_info(LAYER).unwrap_err();
        assert!(matches!(e, Error::Corrupt(_)), "{shape:?}: {e:?}");
        assert!(e.to_string().contains("weight_shape disagrees with the packed tensor's shape"), "{e}");
    }
    // [8, 13] fits [8, 4] words, but then the last 3 bytes of each row (q = 1) would be dropped.
    write_packed(d.path(), &[0x8181_8181; 32], [8, 13]);
    let ck = Checkpoint::open(d.path()).unwrap();
    let e = ck.quantized_tensor(LAYER).unwrap_err();
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "checkpoint error: `{LAYER}.weight_packed` row 0 holds nonzero bytes past column 13 of \
             `{LAYER}.weight_shape` [8, 13], where a row is padded with zeros: weight_shape disagrees with the packed \
             tensor, so the file was edited or is corrupt"
        )
    );
    if let Some(gpu) = common::gpu() {
        assert_eq!(ck.linear(&gpu, LAYER).unwrap_err().to_string(), e.to_string());
    }
    // Zero padding, as compressed-tensors writes it, loads.
    let padded: Vec<u32> = (0..32).map(|i| if i % 4 == 3 { 0x0000_0081 } else { 0x8181_8181 }).collect();
    write_packed(d.path(), &padded, [8, 13]);
    assert_eq!(Checkpoint::open(d.path()).unwrap().quantized_tensor(LAYER).unwrap().values(), &[1i8; 8 * 13][..]);
}

#[test]
fn a_float_layer_asked_for_as_quantized_says_how_to_quantize_it() {
    let d = TempDir::new("msg-float");
    let w: Vec<u8> = (0..8 * 16).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let tensors = [(format!("{LAYER}.weight"), TensorView::new(Dtype::F32, vec![8, 16], &w).unwrap())];
    safetensors::serialize_to_file(tensors, None, &d.path().join("model.safetensors")).unwrap();
    let e = Checkpoint::open(d.path()).unwrap().quantized_layer_info(LAYER).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "checkpoint error: layer `{LAYER}` is not quantized: the checkpoint holds its float weight `{LAYER}.weight` \
             (F32); quantize the checkpoint with `int8-wgpu quantize`, or the layer with \
             `QuantizedLinear::from_float`"
        )
    );
}

#[test]
fn hints_cover_a_missing_prefix_case_and_layer_indices() {
    let d = TempDir::new("msg-hints");
    write_layer(d.path(), &[8, 1], ct_config(json!({"num_bits": 8, "strategy": "channel"})));
    let ck = Checkpoint::open(d.path()).unwrap();
    let hint = format!("; did you mean `{LAYER}`?");
    for name in ["layers.0.mlp.up_proj", "MODEL.layers.0.mlp.up_proj", "Model.Layers.0.MLP.Up_Proj"] {
        let e = ck.quantized_layer_info(name).unwrap_err().to_string();
        assert!(e.ends_with(&hint), "{name}: {e}");
    }
    // Another index is another layer: no "did you mean" one that exists, but how many there are.
    let e = ck.quantized_layer_info("model.layers.2.mlp.up_proj").unwrap_err().to_string();
    assert!(e.ends_with("nor I8 `model.layers.2.mlp.up_proj.weight`); the model has 1 layer (`layers.0`)"), "{e}");
    let e = ck.bytes("layers.0.mlp.up_proj.weight_scale").unwrap_err().to_string();
    assert!(e.ends_with(&format!("; did you mean `{LAYER}.weight_scale`?")), "{e}");
    // The float weight of a quantized layer is gone: its ints are named.
    write_packed(d.path(), &[0x8181_8181; 32], [8, 16]);
    let ck = Checkpoint::open(d.path()).unwrap();
    let e = ck.bytes(&format!("{LAYER}.weight")).unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e:?}");
    assert!(
        e.to_string().ends_with(&format!(
            "has no tensor `{LAYER}.weight`; layer `{LAYER}` is quantized: its weight is stored as ints in \
             `{LAYER}.weight_packed` with scales in `{LAYER}.weight_scale` (read it with \
             `Checkpoint::quantized_tensor(\"{LAYER}\")`)"
        )),
        "{e}"
    );
}

#[test]
fn a_tensor_key_given_twice_is_named_whatever_its_offsets() {
    let d = TempDir::new("msg-dup");
    let file = d.path().join("one.safetensors");
    let entry = r#""a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}"#;
    for second in [entry.to_string(), entry.replace("[0,2]", "[2,4]")] {
        let header = format!("{{{entry},{second}}}");
        let data_len = if second == entry { 2 } else { 4 };
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend(std::iter::repeat_n(0u8, data_len));
        fs::write(&file, bytes).unwrap();
        let Err(e) = Checkpoint::open(&file) else { panic!("a duplicate key opened") };
        assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!(
                "checkpoint error: `{}` has a corrupt safetensors header: tensor `a` appears twice",
                file.display()
            )
        );
    }
}

#[test]
fn zero_points_that_disagree_with_the_scales_are_corrupt() {
    let d = TempDir::new("msg-zp-shape");
    let ints: Vec<u8> = (0..8 * 16).map(|i| (i * 37 % 255) as u8).collect();
    let scales: Vec<u8> = (0..8).flat_map(|i| (0.01 + i as f32 * 1e-3).to_le_bytes()).collect();
    let zps = [0u8; 5];
    let tensors = [
        (format!("{LAYER}.weight"), TensorView::new(Dtype::I8, vec![8, 16], &ints).unwrap()),
        (format!("{LAYER}.weight_scale"), TensorView::new(Dtype::F32, vec![8, 1], &scales).unwrap()),
        (format!("{LAYER}.weight_zero_point"), TensorView::new(Dtype::I8, vec![5, 1], &zps).unwrap()),
    ];
    safetensors::serialize_to_file(tensors, None, &d.path().join("model.safetensors")).unwrap();
    let e = Checkpoint::open(d.path()).unwrap().quantized_tensor(LAYER).unwrap_err();
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "checkpoint error: `{LAYER}.weight_zero_point` is I8 [5, 1]; expected I32 [2, 1] (packed along dim 0) or \
             I8 with 8 elements: the zero points disagree with the scales' shape, so the file was edited or is corrupt"
        )
    );
}
