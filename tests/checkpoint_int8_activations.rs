//! Reading checkpoints whose layers quantize their activations: llmcompressor's W8A8
//! (compressed-tensors `int-quantized` with dynamic per-token `input_activations`), activation
//! schemes that cannot run here (each a clear error), and bitsandbytes 8-bit (`weight` + `SCB`)
//! as LLM.int8(). The files are built here, with the exact config the real tools write.
//! Writing them (`quantize --method w8a8|llm-int8`) is `tests/quantize_int8_activations.rs`.

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use common::TempDir;
use half::f16;
use int8_wgpu::checkpoint::{Checkpoint, PackFormat, TensorDtype};
use int8_wgpu::{ActivationQuant, DType, Error, Granularity, Method, QuantScheme, QuantizedTensor, reference};
use safetensors::tensor::TensorView;
use serde_json::{Value, json};

/// The `quantization_config` llmcompressor 0.14 (compressed-tensors 0.19) wrote for
/// `oneshot(model=LlamaForCausalLM(<a 1-layer LlamaConfig>), recipe=QuantizationModifier(
/// targets="Linear", scheme="W8A8", ignore=["lm_head"]))` then `save_pretrained(out,
/// save_compressed=True)`, copied verbatim. Its layers are `P.weight` I8 `[out, in]` and
/// `P.weight_scale` F32 `[out, 1]`.
pub const LLMCOMPRESSOR_W8A8: &str = r#"{"config_groups": {"group_0": {"format": "int-quantized", "input_activations": {"actorder": null, "block_structure": null, "dynamic": true, "group_size": null, "num_bits": 8, "observer": null, "observer_kwargs": {}, "scale_dtype": null, "strategy": "token", "symmetric": true, "type": "int", "zp_dtype": null}, "output_activations": null, "targets": ["Linear"], "weights": {"actorder": null, "block_structure": null, "dynamic": false, "group_size": null, "num_bits": 8, "observer": "memoryless_minmax", "observer_kwargs": {}, "scale_dtype": null, "strategy": "channel", "symmetric": true, "type": "int", "zp_dtype": null}}}, "format": "int-quantized", "global_compression_ratio": null, "ignore": ["lm_head"], "kv_cache_scheme": null, "quant_method": "compressed-tensors", "quantization_status": "compressed", "sparsity_config": {}, "transform_config": {}, "version": "0.19.0"}"#;

/// A tensor to write: name, dtype, shape, bytes.
type Tensor = (String, TensorDtype, Vec<usize>, Vec<u8>);

fn write_folder(dir: &Path, tensors: &[Tensor], config: &Value) {
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let views = tensors.iter().map(|(n, d, s, b)| (n.as_str(), TensorView::new(*d, s.clone(), b).unwrap()));
    safetensors::serialize_to_file(views, Some(meta), &dir.join("model.safetensors")).unwrap();
    fs::write(dir.join("config.json"), serde_json::to_vec_pretty(config).unwrap()).unwrap();
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The error under [`Error::Tensor`]'s "in tensor" context.
fn root(e: &Error) -> &Error {
    match e {
        Error::Tensor { source, .. } => root(source),
        e => e,
    }
}

const LAYER: &str = "model.layers.0.self_attn.q_proj";

/// A symmetric per-row quantization of a random `[out, in]` weight, as llmcompressor stores it.
fn per_row(out: usize, inn: usize, seed: u64) -> QuantizedTensor {
    let w = common::rand_vec(out * inn, seed);
    reference::quantize(&w, &[out, inn], QuantScheme::default()).unwrap()
}

/// An llmcompressor-style W8A8 folder (one int-quantized layer, a float `lm_head` it ignored),
/// with `quantization_config` `config`.
fn w8a8_folder(dir: &Path, q: &QuantizedTensor, config: Value) {
    let [out, inn] = [q.shape()[0], q.shape()[1]];
    let tensors = vec![
        (format!("{LAYER}.weight"), TensorDtype::I8, vec![out, inn], bytemuck::cast_slice(q.values()).to_vec()),
        (format!("{LAYER}.weight_scale"), TensorDtype::F32, vec![out, 1], f32_bytes(q.scales())),
        ("lm_head.weight".into(), TensorDtype::F32, vec![3, inn], f32_bytes(&common::rand_vec(3 * inn, 5))),
    ];
    write_folder(dir, &tensors, &json!({"model_type": "llama", "quantization_config": config}));
}

fn llmcompressor_config() -> Value {
    serde_json::from_str(LLMCOMPRESSOR_W8A8).unwrap()
}

#[test]
fn an_llmcompressor_w8a8_checkpoint_loads_as_w8a8() {
    let dir = TempDir::new("a8-llmc");
    let q = per_row(6, 12, 1);
    w8a8_folder(dir.path(), &q, llmcompressor_config());
    let ckpt = Checkpoint::open(dir.path()).unwrap();
    assert_eq!(ckpt.method(), Some(Method::W8A8), "from the config: no int8_wgpu metadata");
    assert_eq!(ckpt.activation_quant().unwrap(), Some(ActivationQuant::per_token()));
    assert_eq!(ckpt.activation_dtype(), DType::BF16, "f32 scales: bf16 activations, as for w8a16");
    assert_eq!(ckpt.quantized_layers(), [LAYER]);
    let info = ckpt.quantized_layer_info(LAYER).unwrap();
    assert_eq!(info.format, PackFormat::IntQuantized);
    assert_eq!(info.scheme, QuantScheme::symmetric(Granularity::PerChannel { axis: 0 }));
    let loaded = ckpt.quantized_tensor(LAYER).unwrap();
    assert_eq!(loaded, q, "ints and scales as stored");
    // The CPU oracle runs the loaded weights as the GPU layer will.
    let x = common::rand_vec(3 * 12, 9);
    let act = ActivationQuant::per_token();
    assert_eq!(reference::linear_a8(&x, &loaded, None, act).unwrap(), reference::linear_a8(&x, &q, None, act).unwrap());
    if let Some(gpu) = common::gpu() {
        let layer = ckpt.linear(&gpu, LAYER).unwrap();
        assert_eq!(layer.activation_quant(), Some(ActivationQuant::per_token()));
        assert_eq!(layer.activation_dtype(), DType::BF16);
        assert_eq!(layer.weight().to_host().unwrap(), q);
    }
}

#[test]
fn a_weight_only_config_runs_float_activations_as_before() {
    let dir = TempDir::new("a8-weight-only");
    let mut config = llmcompressor_config();
    config["config_groups"]["group_0"]["input_activations"] = Value::Null;
    w8a8_folder(dir.path(), &per_row(4, 8, 2), config);
    let ckpt = Checkpoint::open(dir.path()).unwrap();
    assert_eq!(ckpt.method(), None);
    assert_eq!(ckpt.activation_quant().unwrap(), None);
    if let Some(gpu) = common::gpu() {
        assert_eq!(ckpt.linear(&gpu, LAYER).unwrap().activation_quant(), None);
    }
}

/// Every activation scheme that cannot run here: the field, its value, what the error must name.
#[test]
fn activation_schemes_that_cannot_run_are_named_errors() {
    let cases: &[(&str, Value, &str)] = &[
        ("dynamic", json!(false), "input_activations.dynamic is false"),
        ("dynamic", json!("local"), "input_activations.dynamic is \"local\""),
        ("strategy", json!("tensor"), "input_activations.strategy is \"tensor\""),
        ("strategy", json!("channel"), "input_activations.strategy is \"channel\""),
        ("symmetric", json!(false), "input_activations.symmetric is false"),
        ("type", json!("float"), "input_activations.type is \"float\""),
        ("num_bits", json!(4), "input_activations.num_bits is 4"),
        ("group_size", json!(128), "input_activations.group_size is 128"),
    ];
    let q = per_row(4, 8, 3);
    for (field, value, expected) in cases {
        let dir = TempDir::new("a8-unsupported");
        let mut config = llmcompressor_config();
        config["config_groups"]["group_0"]["input_activations"][field] = value.clone();
        w8a8_folder(dir.path(), &q, config);
        // Opening succeeds (the float tensors stay readable); the layers do not.
        let ckpt = Checkpoint::open(dir.path()).unwrap();
        assert!(ckpt.tensor_f32("lm_head.weight").is_ok());
        assert_eq!(ckpt.method(), None, "{field}");
        let e = ckpt.activation_quant().unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::Unsupported(_)), "{field}: {e:?}");
        assert!(msg.contains("config group `group_0`") && msg.contains(expected), "{field}: {msg}");
        for e in [ckpt.quantized_tensor(LAYER).unwrap_err(), ckpt.quantized_layer_info(LAYER).unwrap_err()] {
            assert!(matches!(root(&e), Error::Unsupported(m) if m.contains(expected)), "{field}: {e}");
        }
        if let Some(gpu) = common::gpu() {
            let e = ckpt.linear(&gpu, LAYER).unwrap_err();
            assert!(matches!(root(&e), Error::Unsupported(m) if m.contains(expected)), "{field}: {e}");
        }
    }
}

#[test]
fn output_activations_and_disagreeing_groups_are_named_errors() {
    let q = per_row(4, 8, 4);
    let mut outputs = llmcompressor_config();
    outputs["config_groups"]["group_0"]["output_activations"] = json!({"num_bits": 8, "type": "int"});
    let mut groups = llmcompressor_config();
    let mut other = groups["config_groups"]["group_0"].clone();
    other["input_activations"] = Value::Null;
    other["targets"] = json!(["re:.*mlp.*"]);
    groups["config_groups"]["group_1"] = other;
    for (config, expected) in [
        (outputs, "config group `group_0` quantizes output_activations"),
        (groups, "config groups `group_0` and `group_1` quantize activations differently"),
    ] {
        let dir = TempDir::new("a8-groups");
        w8a8_folder(dir.path(), &q, config);
        let e = Checkpoint::open(dir.path()).unwrap().activation_quant().unwrap_err();
        assert!(matches!(&e, Error::Unsupported(m) if m.contains(expected)), "{e}");
    }
}

/// A bitsandbytes 8-bit layer as `Linear8bitLt` saves it: the row absmax `SCB` and ints
/// `round(127 · w / absmax)` (bitsandbytes rounds on the GPU; these ints stand in for its).
fn bnb_layer(w: &[f32], out: usize, inn: usize) -> (Vec<i8>, Vec<f32>) {
    let mut ints = Vec::new();
    let mut scb = Vec::new();
    for row in w.chunks(inn).take(out) {
        let absmax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        scb.push(absmax);
        ints.extend(row.iter().map(|v| if absmax == 0.0 { 0 } else { (127.0 * v / absmax).round() as i8 }));
    }
    (ints, scb)
}

/// The `quantization_config` transformers 5.24 writes for `BitsAndBytesConfig(load_in_8bit=True,
/// llm_int8_threshold=threshold)` (`BitsAndBytesConfig.to_dict`).
fn bnb_config(threshold: f32) -> Value {
    json!({
        "_load_in_4bit": false, "_load_in_8bit": true, "bnb_4bit_compute_dtype": "float32",
        "bnb_4bit_quant_storage": "uint8", "bnb_4bit_quant_type": "fp4", "bnb_4bit_use_double_quant": false,
        "llm_int8_enable_fp32_cpu_offload": false, "llm_int8_has_fp16_weight": false,
        "llm_int8_skip_modules": null, "llm_int8_threshold": threshold, "load_in_4bit": false,
        "load_in_8bit": true, "quant_method": "bitsandbytes"
    })
}

fn bnb_folder(dir: &Path, ints: &[i8], scb: &[f32], inn: usize, format: u8, quantization_config: Value) {
    let out = scb.len();
    let bias: Vec<u8> = (0..out).flat_map(|i| f16::from_f32(i as f32 * 0.25).to_le_bytes()).collect();
    let tensors = vec![
        (format!("{LAYER}.weight"), TensorDtype::I8, vec![out, inn], bytemuck::cast_slice(ints).to_vec()),
        (format!("{LAYER}.SCB"), TensorDtype::F32, vec![out], f32_bytes(scb)),
        (format!("{LAYER}.weight_format"), TensorDtype::U8, vec![], vec![format]),
        (format!("{LAYER}.bias"), TensorDtype::F16, vec![out], bias),
    ];
    let config = json!({"model_type": "llama", "dtype": "float16", "quantization_config": quantization_config});
    write_folder(dir, &tensors, &config);
}

#[test]
fn a_bitsandbytes_8bit_checkpoint_loads_as_llm_int8() {
    let (out, inn) = (5, 12);
    let mut w = common::rand_vec(out * inn, 6);
    w[2 * inn..3 * inn].fill(0.0); // an all-zero row: SCB 0
    let (ints, scb) = bnb_layer(&w, out, inn);
    let dir = TempDir::new("a8-bnb");
    bnb_folder(dir.path(), &ints, &scb, inn, 0, bnb_config(5.0));
    let ckpt = Checkpoint::open(dir.path()).unwrap();
    assert_eq!(ckpt.quantized_layers(), [LAYER]);
    assert_eq!(ckpt.method(), Some(Method::LlmInt8));
    let act = ActivationQuant::llm_int8(5.0).unwrap();
    assert_eq!(ckpt.activation_quant().unwrap(), Some(act));
    assert_eq!(ckpt.activation_dtype(), DType::F16, "the config's dtype: SCB is f32 in every model");
    let info = ckpt.quantized_layer_info(LAYER).unwrap();
    assert_eq!((info.format, info.scheme), (PackFormat::BitsAndBytes, QuantScheme::default()));
    let q = ckpt.quantized_tensor(LAYER).unwrap();
    assert_eq!(q.values(), ints.as_slice());
    for (i, (&s, &absmax)) in q.scales().iter().zip(&scb).enumerate() {
        let expected = if absmax == 0.0 { 1.0 } else { absmax / 127.0 };
        assert_eq!(s.to_bits(), expected.to_bits(), "row {i}: scale = SCB / 127 in f32");
    }
    // Dequantized, the weights are bitsandbytes' `weight * SCB / 127` (to an ulp of the division).
    for (i, (&v, &wv)) in q.dequantize().iter().zip(&w).enumerate() {
        assert!((v - wv).abs() <= 0.5 * scb[i / inn] / 127.0 + 1e-6, "element {i}: {v} vs {wv}");
    }
    let shown = int8_wgpu::quantizer::Inspection::new(&ckpt).unwrap().to_string();
    let summary =
        "(bitsandbytes; method llm-int8, activations f16 quantized to int8 per token, columns with |x| >= 5 kept)";
    assert!(shown.contains(summary), "{shown}");
    assert!(shown.lines().any(|l| l.starts_with(&format!("{LAYER}.weight ")) && l.contains("sym channel")), "{shown}");
    let x: Vec<f16> = common::rand_vec(2 * inn, 7).iter().map(|&v| f16::from_f32(v * 8.0)).collect();
    let y = reference::linear_a8(&x, &q, None, act).unwrap();
    assert_eq!(y.len(), 2 * out);
    if let Some(gpu) = common::gpu() {
        let layer = ckpt.linear(&gpu, LAYER).unwrap();
        assert_eq!((layer.activation_quant(), layer.activation_dtype()), (Some(act), DType::F16));
        assert!(layer.bias().is_some());
    }
}

#[test]
fn bitsandbytes_variants() {
    let (ints, scb) = bnb_layer(&common::rand_vec(4 * 8, 8), 4, 8);
    // Threshold 0 is bitsandbytes' "no outlier columns": plain per-token int8.
    let dir = TempDir::new("a8-bnb-0");
    bnb_folder(dir.path(), &ints, &scb, 8, 0, bnb_config(0.0));
    assert_eq!(Checkpoint::open(dir.path()).unwrap().activation_quant().unwrap(), Some(ActivationQuant::per_token()));
    // A tiled GPU layout (col32) and 4-bit configs cannot be read.
    let dir = TempDir::new("a8-bnb-col32");
    bnb_folder(dir.path(), &ints, &scb, 8, 1, bnb_config(6.0));
    let e = Checkpoint::open(dir.path()).unwrap().quantized_tensor(LAYER).unwrap_err();
    assert!(matches!(root(&e), Error::Unsupported(m) if m.contains("weight_format` is [1]")), "{e}");
    let mut four = bnb_config(6.0);
    four["load_in_4bit"] = json!(true);
    four["load_in_8bit"] = json!(false);
    let dir = TempDir::new("a8-bnb-4bit");
    bnb_folder(dir.path(), &ints, &scb, 8, 0, four);
    let e = Checkpoint::open(dir.path()).unwrap().activation_quant().unwrap_err();
    assert!(matches!(&e, Error::Unsupported(m) if m.contains("load_in_4bit")), "{e}");
    let mut negative = bnb_config(6.0);
    negative["llm_int8_threshold"] = json!(-1.0);
    let dir = TempDir::new("a8-bnb-neg");
    bnb_folder(dir.path(), &ints, &scb, 8, 0, negative);
    let e = Checkpoint::open(dir.path()).unwrap().activation_quant().unwrap_err();
    assert!(matches!(&e, Error::Unsupported(m) if m.contains("llm_int8_threshold -1")), "{e}");
}

/// The loaded W8A8 layer's GPU forward against the CPU oracle on the same loaded weights: bit
/// for bit (no bias, no outlier columns).
#[test]
fn the_loaded_w8a8_layer_runs_like_the_cpu_oracle() {
    let gpu = gpu_or_skip!();
    let dir = TempDir::new("a8-forward");
    let q = per_row(8, 16, 10);
    w8a8_folder(dir.path(), &q, llmcompressor_config());
    let ckpt = Checkpoint::open(dir.path()).unwrap();
    let layer = ckpt.linear_with(&gpu, LAYER, DType::F32).unwrap();
    let x = common::rand_vec(3 * 16, 11);
    let y = layer.forward_host(&x, &[3, 16]).unwrap();
    assert_eq!(y, reference::linear_a8(&x, &q, None, ActivationQuant::per_token()).unwrap());
}
