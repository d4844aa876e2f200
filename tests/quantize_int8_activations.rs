//! Writing checkpoints whose layers quantize their activations: `Quantizer::method(W8A8 |
//! LlmInt8)` and `int8-wgpu quantize --method w8a8|llm-int8`: the config compressed-tensors
//! loaders read, our metadata, the stored ints, reloading, and the schemes refused before any
//! work. Reading other tools' files is `tests/checkpoint_int8_activations.rs`.

mod common;

use std::fs;
use std::path::Path;

use common::TempDir;
use int8_wgpu::checkpoint::{Checkpoint, PackFormat, TensorDtype};
use int8_wgpu::quantizer::Quantizer;
use int8_wgpu::{ActivationQuant, DType, Error, Granularity, Method, QuantScheme, reference};
use serde_json::{Value, json};

use common::a8_model::{LINEARS, write_model};

/// The `input_activations` llmcompressor 0.14 wrote for its W8A8 preset (the whole config is in
/// `tests/checkpoint_int8_activations.rs`, `LLMCOMPRESSOR_W8A8`).
const LLMCOMPRESSOR_INPUT_ACTIVATIONS: &str = r#"{"actorder": null, "block_structure": null, "dynamic": true, "group_size": null, "num_bits": 8, "observer": null, "observer_kwargs": {}, "scale_dtype": null, "strategy": "token", "symmetric": true, "type": "int", "zp_dtype": null}"#;

fn quantization_config(dir: &Path) -> Value {
    let config: Value = serde_json::from_slice(&fs::read(dir.join("config.json")).unwrap()).unwrap();
    config["quantization_config"].clone()
}

#[test]
fn w8a8_writes_llmcompressors_int_quantized_layout_and_reloads_as_w8a8() {
    for dtype in [DType::F32, DType::BF16] {
        let (inp, out) = (TempDir::new("w8a8-in"), TempDir::new("w8a8-out"));
        let weights = write_model(inp.path(), dtype);
        let dest = out.path().join("q");
        let report = Quantizer::new(inp.path(), &dest).method(Method::W8A8).cpu().eval_rows(2).run().unwrap();
        assert_eq!((report.method, report.scheme), (Method::W8A8, QuantScheme::default()));

        let q = quantization_config(&dest);
        assert_eq!(q["format"], "int-quantized", "vLLM runs int8 activations only from int-quantized");
        let group = &q["config_groups"]["group_0"];
        let ours = group["input_activations"].as_object().unwrap();
        let theirs: Value = serde_json::from_str(LLMCOMPRESSOR_INPUT_ACTIVATIONS).unwrap();
        // Every key we write has llmcompressor's value; every key we leave out is one of its
        // null / {} defaults (which older compressed-tensors releases refuse as unknown keys).
        for (k, v) in theirs.as_object().unwrap() {
            match ours.get(k) {
                Some(o) => assert_eq!(o, v, "input_activations.{k}"),
                None => assert!(v.is_null() || *v == json!({}), "input_activations.{k} left out but is {v}"),
            }
        }
        assert_eq!(ours.len(), 7, "{ours:?}");
        assert_eq!(group["weights"]["strategy"], "channel");
        assert_eq!(group["weights"]["symmetric"], true);
        assert_eq!(q["ignore"], json!(["lm_head"]));

        let ckpt = Checkpoint::open(&dest).unwrap();
        let meta = ckpt.metadata().unwrap();
        assert_eq!(meta.get("int8_wgpu.method").map(String::as_str), Some("w8a8"));
        assert_eq!(meta.get("int8_wgpu.outlier_threshold"), None);
        assert_eq!(ckpt.method(), Some(Method::W8A8));
        assert_eq!(ckpt.activation_quant().unwrap(), Some(ActivationQuant::per_token()));
        assert_eq!(ckpt.activation_dtype(), DType::BF16);
        for ((name, [o, i]), w) in LINEARS.iter().zip(&weights) {
            assert!(ckpt.info(&format!("{name}.weight_packed")).is_none());
            let t = ckpt.info(&format!("{name}.weight")).unwrap();
            assert_eq!((t.dtype, t.shape.as_slice()), (TensorDtype::I8, &[*o, *i][..]));
            assert_eq!(ckpt.info(&format!("{name}.weight_scale")).unwrap().shape, [*o, 1]);
            assert_eq!(ckpt.quantized_layer_info(name).unwrap().format, PackFormat::IntQuantized);
            // The stored ints are the reference quantization's; the scales are its, exported.
            let expected = reference::quantize(w, &[*o, *i], QuantScheme::default()).unwrap();
            let loaded = ckpt.quantized_tensor(name).unwrap();
            assert_eq!(loaded, int8_wgpu::checkpoint::exported(&expected, dtype).unwrap(), "{name} {dtype}");
            // The loaded layer on the CPU oracle: close to the float layer.
            let x = common::rand_vec(2 * i, 77);
            let y = reference::linear_a8(&x, &loaded, None, ActivationQuant::per_token()).unwrap();
            for (m, row) in y.chunks(*o).enumerate() {
                for (n, &v) in row.iter().enumerate() {
                    let exact: f32 = (0..*i).map(|k| x[m * i + k] * w[n * i + k]).sum();
                    assert!((v - exact).abs() < 0.05, "{name} [{m}, {n}]: {v} vs {exact}");
                }
            }
        }
        if let Some(gpu) = common::gpu() {
            let layer = ckpt.linear(&gpu, LINEARS[0].0).unwrap();
            assert_eq!(layer.activation_quant(), Some(ActivationQuant::per_token()));
        }
    }
}

#[test]
fn llm_int8_writes_the_weight_only_config_and_records_its_threshold() {
    for (threshold, recorded) in [(None, "6"), (Some(4.5f32), "4.5")] {
        let (inp, out) = (TempDir::new("llm-int8-in"), TempDir::new("llm-int8-out"));
        write_model(inp.path(), DType::F32);
        let dest = out.path().join("q");
        let mut quantizer = Quantizer::new(inp.path(), &dest).method(Method::LlmInt8).cpu();
        if let Some(t) = threshold {
            quantizer = quantizer.outlier_threshold(t);
        }
        quantizer.run().unwrap();
        let q = quantization_config(&dest);
        // Other loaders run it as W8A16 (float activations keep every outlier); see the README.
        assert_eq!(q["format"], "pack-quantized");
        assert_eq!(q["config_groups"]["group_0"]["input_activations"], Value::Null);
        let ckpt = Checkpoint::open(&dest).unwrap();
        let meta = ckpt.metadata().unwrap();
        assert_eq!(meta.get("int8_wgpu.method").map(String::as_str), Some("llm-int8"));
        assert_eq!(meta.get("int8_wgpu.outlier_threshold").map(String::as_str), Some(recorded));
        let act = ActivationQuant::llm_int8(threshold.unwrap_or(ActivationQuant::DEFAULT_THRESHOLD)).unwrap();
        assert_eq!((ckpt.method(), ckpt.activation_quant().unwrap()), (Some(Method::LlmInt8), Some(act)));
        assert_eq!(ckpt.quantized_layer_info(LINEARS[0].0).unwrap().format, PackFormat::PackQuantized);
        if let Some(gpu) = common::gpu() {
            let layer = ckpt.linear(&gpu, LINEARS[1].0).unwrap();
            assert_eq!(layer.activation_quant(), Some(act));
        }
    }
}

#[test]
fn schemes_int8_activations_cannot_run_are_refused_before_any_work() {
    let out = TempDir::new("a8-refused");
    let dest = out.path().join("q");
    // The input does not exist: the refusal comes before anything is read.
    let missing = out.path().join("no-such-model");
    let asym = QuantScheme::asymmetric(Granularity::PerChannel { axis: 0 });
    let group = QuantScheme::symmetric(Granularity::PerGroup { size: 5 });
    for method in [Method::W8A8, Method::LlmInt8] {
        for scheme in [asym, group] {
            let e = Quantizer::new(&missing, &dest).method(method).scheme(scheme).cpu().run().unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, Error::Scheme(_)), "{method} {scheme:?}: {e:?}");
            assert!(msg.contains(&format!("{method} quantizes activations per token")), "{msg}");
        }
    }
    for (method, threshold, needle) in [
        (Method::W8A16, 5.0, "applies to the llm-int8 method only, not w8a16"),
        (Method::LlmInt8, 0.0, "outlier threshold is 0"),
        (Method::LlmInt8, f32::NAN, "outlier threshold is NaN"),
    ] {
        let e = Quantizer::new(&missing, &dest).method(method).outlier_threshold(threshold).run().unwrap_err();
        assert!(matches!(&e, Error::InvalidOption(m) if m.contains(needle)), "{e}");
    }
    assert!(!dest.exists());
    // Symmetric per tensor runs (one scale for every row).
    let inp = TempDir::new("a8-tensor-in");
    write_model(inp.path(), DType::F32);
    let tensor = QuantScheme::symmetric(Granularity::PerTensor);
    Quantizer::new(inp.path(), &dest).method(Method::W8A8).scheme(tensor).cpu().run().unwrap();
    let ckpt = Checkpoint::open(&dest).unwrap();
    assert_eq!(ckpt.quantized_layer_info(LINEARS[0].0).unwrap().scheme, tensor);
    assert_eq!(quantization_config(&dest)["config_groups"]["group_0"]["weights"]["strategy"], "tensor");
}

#[test]
fn metadata_that_contradicts_the_config_is_an_error() {
    let (inp, out) = (TempDir::new("a8-edit-in"), TempDir::new("a8-edit-out"));
    write_model(inp.path(), DType::F32);
    let dest = out.path().join("q");
    Quantizer::new(inp.path(), &dest).method(Method::W8A8).cpu().run().unwrap();
    let path = dest.join("config.json");
    let mut config: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    config["quantization_config"]["config_groups"]["group_0"]["input_activations"] = Value::Null;
    fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    let e = Checkpoint::open(&dest).unwrap().activation_quant().unwrap_err();
    assert!(matches!(&e, Error::Corrupt(m) if m.contains("says `w8a8`")), "{e}");
}
