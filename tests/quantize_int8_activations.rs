//! Writing checkpoints whose layers quantize their activations: `Quantizer::method(W8A8 |
//! LlmInt8)` and `int8-wgpu quantize --method w8a8|llm-int8`: the config compressed-tensors
//! loaders read, our metadata, the stored ints, reloading, and the schemes refused before any
//! work. Reading other tools' files is `tests/checkpoint_int8_activations.rs`.

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use common::TempDir;
use half::bf16;
use int8_wgpu::checkpoint::{Checkpoint, PackFormat, TensorDtype};
use int8_wgpu::{ActivationQuant, DType, Error, Granularity, Method, QuantScheme, Quantizer, reference};
use safetensors::tensor::TensorView;
use serde_json::{Value, json};

/// The `input_activations` llmcompressor 0.14 wrote for its W8A8 preset (the whole config is in
/// `tests/checkpoint_int8_activations.rs`, `LLMCOMPRESSOR_W8A8`).
const LLMCOMPRESSOR_INPUT_ACTIVATIONS: &str = r#"{"actorder": null, "block_structure": null, "dynamic": true, "group_size": null, "num_bits": 8, "observer": null, "observer_kwargs": {}, "scale_dtype": null, "strategy": "token", "symmetric": true, "type": "int", "zp_dtype": null}"#;

/// Linear layers: name, [out, in]; `in` not a multiple of 4 for one (int-quantized rows are
/// not padded).
const LINEARS: &[(&str, [usize; 2])] = &[("model.layers.0.q_proj", [6, 10]), ("model.layers.0.up_proj", [12, 16])];

/// A float model folder in `dtype`: the linear weights, a norm, an `lm_head` (excluded by default).
fn write_model(dir: &Path, dtype: DType) -> Vec<Vec<f32>> {
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
        let w: Vec<f32> = common::rand_vec(out * inn, 40 + i as u64).iter().map(|&v| dtype.round(v)).collect();
        tensors.push((format!("{name}.weight"), vec![*out, *inn], bytes(&w)));
        weights.push(w);
    }
    tensors.push(("model.norm.weight".into(), vec![10], bytes(&[1.0; 10])));
    tensors.push(("lm_head.weight".into(), vec![4, 10], bytes(&common::rand_vec(40, 3))));
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let views = tensors.iter().map(|(n, s, b)| (n.as_str(), TensorView::new(st, s.clone(), b).unwrap()));
    safetensors::serialize_to_file(views, Some(meta), &dir.join("model.safetensors")).unwrap();
    fs::write(dir.join("config.json"), r#"{"model_type": "toy"}"#).unwrap();
    weights
}

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

#[test]
fn cli_quantize_w8a8_and_llm_int8_and_inspect() {
    let Some(exe) = option_env!("CARGO_BIN_EXE_int8-wgpu") else {
        eprintln!("SKIPPED: the CLI is not built (feature `cli` off)");
        return;
    };
    let run = |args: &[&std::ffi::OsStr]| {
        let o = std::process::Command::new(exe).args(args).env("XDG_RUNTIME_DIR", "/tmp").output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (inp, out) = (TempDir::new("a8-cli-in"), TempDir::new("a8-cli-out"));
    write_model(inp.path(), DType::F32);
    let (i, a8, l8) = (inp.path().as_os_str(), out.path().join("a8"), out.path().join("l8"));
    let s = |s: &'static str| std::ffi::OsStr::new(s);

    let (code, stdout, stderr) = run(&[s("quantize"), i, a8.as_os_str(), s("--cpu"), s("--method"), s("w8a8")]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("quantized 2 linear layers (w8a8, sym channel"), "{stdout}");
    let (code, stdout, _) = run(&[s("inspect"), a8.as_os_str()]);
    assert_eq!(code, Some(0));
    assert!(
        stdout
            .contains("compressed-tensors, int-quantized; method w8a8, activations bf16 quantized to int8 per token)"),
        "{stdout}"
    );

    let args =
        [s("quantize"), i, l8.as_os_str(), s("--cpu"), s("--method"), s("llm-int8"), s("--outlier-threshold"), s("5")];
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let (_, stdout, _) = run(&[s("inspect"), l8.as_os_str()]);
    assert!(
        stdout.contains("method llm-int8, activations bf16 quantized to int8 per token, columns with |x| >= 5 kept)"),
        "{stdout}"
    );

    let bad = out.path().join("bad");
    for (args, needle) in [
        (vec![s("--method"), s("w8a8"), s("--scheme"), s("asym")], "w8a8 quantizes activations per token"),
        (vec![s("--method"), s("llm-int8"), s("--group-size"), s("8")], "not sym group 8"),
        (vec![s("--outlier-threshold"), s("5")], "applies to the llm-int8 method only"),
        (vec![s("--method"), s("llm-int8"), s("--outlier-threshold"), s("-1")], "outlier threshold is -1"),
    ] {
        let args = [vec![s("quantize"), i, bad.as_os_str(), s("--cpu")], args].concat();
        let (code, _, stderr) = run(&args);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains(needle) && !stderr.contains("panicked"), "{stderr}");
    }
    assert!(!bad.exists());
}
