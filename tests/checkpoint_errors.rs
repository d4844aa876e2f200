//! What the quantizer refuses or skips, and how it says so: a never-modified input and an atomic
//! output, corrupt and missing files, collisions, zero-size weights, bounds checked before work.

mod common;

use std::fs;

use common::TempDir;
use common::model::*;
use int8_wgpu::checkpoint::{self, Checkpoint, TensorDtype};
use int8_wgpu::{DType, Error, Granularity, QuantScheme};
use serde_json::json;

#[test]
fn input_is_never_modified_and_output_is_atomic() {
    let inp = TempDir::new("safe-in");
    write_model(inp.path(), DType::F32);
    let before = snapshot(inp.path());
    let out = TempDir::new("safe-out");
    let dest = out.path().join("q");
    quantizer(inp.path(), &dest, QuantScheme::default()).run().unwrap();
    assert_eq!(snapshot(inp.path()), before, "input changed");

    // An existing output is an error unless overwriting; overwriting replaces it.
    let e = quantizer(inp.path(), &dest, QuantScheme::default()).run().unwrap_err();
    assert!(matches!(e, Error::Output(_)) && e.to_string().contains("already exists"), "{e}");
    fs::write(dest.join("stale.txt"), "x").unwrap();
    quantizer(inp.path(), &dest, QuantScheme::default()).overwrite(true).run().unwrap();
    assert!(!dest.join("stale.txt").exists());

    // A group size that does not fit is refused before any work.
    let failed = out.path().join("failed");
    let e =
        quantizer(inp.path(), &failed, QuantScheme::symmetric(Granularity::PerGroup { size: 4 })).run().unwrap_err();
    assert!(matches!(&e, Error::Scheme(_)), "{e}");
    assert!(e.to_string().contains("4 layer(s), first `model.layers.0.attn.q_proj.weight` [6, 10]"), "{e}");
    // A run that fails half-way (a NaN in the last layer processed) leaves nothing behind.
    let nan_in = TempDir::new("safe-nan");
    let mut m = write_model(nan_in.path(), DType::F32);
    let up = m.iter_mut().find(|(n, _)| n == "model.layers.0.mlp.up_proj.weight").unwrap();
    up.1.data[4 * 13..4 * 14].copy_from_slice(&f32::NAN.to_le_bytes());
    write_file(&nan_in.path().join("model.safetensors"), &m);
    let mut calls = 0;
    let e = quantizer(nan_in.path(), &failed, QuantScheme::default()).run_with_progress(|_| calls += 1).unwrap_err();
    assert_eq!(calls, 4, "three layers were done before the failing one");
    let Error::Tensor { name, source } = &e else { panic!("{e:?}") };
    assert_eq!(name, "model.layers.0.mlp.up_proj.weight");
    assert!(matches!(**source, Error::NonFinite { index: 13, ref position, .. } if position == &[1, 3]), "{e}");
    assert!(!failed.exists());
    let left: Vec<_> = fs::read_dir(out.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["q"], "temporary folders left behind");

    // Output inside the input, or the input itself: refused.
    for bad in [inp.path().join("sub"), inp.path().to_path_buf()] {
        let e = quantizer(inp.path(), &bad, QuantScheme::default()).overwrite(true).run().unwrap_err();
        assert!(matches!(e, Error::Output(_)) && e.to_string().contains("inside the input"), "{e}");
    }
    assert_eq!(snapshot(inp.path()), before, "input changed");
}

#[test]
fn corrupt_truncated_and_missing_files_are_clear_errors() {
    let inp = TempDir::new("bad-in");
    write_model(inp.path(), DType::F32);
    let file = inp.path().join("model.safetensors");
    let good = fs::read(&file).unwrap();
    let out = TempDir::new("bad-out");
    let corrupt = |e: &Error| matches!(e, Error::Corrupt(_));
    let expect = |needle: &str, kind: fn(&Error) -> bool| {
        let e = Checkpoint::open(inp.path()).unwrap_err();
        assert!(kind(&e), "{e:?}");
        assert!(e.to_string().contains(needle), "`{e}` does not say `{needle}`");
        let e = quantizer(inp.path(), &out.path().join("q"), QuantScheme::default()).run().unwrap_err();
        assert!(e.to_string().contains(needle), "{e}");
    };
    fs::write(&file, &good[..good.len() - 10]).unwrap();
    expect("truncated", corrupt);
    fs::write(&file, &good[..100]).unwrap();
    expect("truncated", corrupt);
    fs::write(&file, &good[..5]).unwrap();
    expect("truncated", corrupt);
    let mut extra = good.clone();
    extra.extend_from_slice(b"junk");
    fs::write(&file, &extra).unwrap();
    expect("corrupt", corrupt);
    let mut garbage = good.clone();
    garbage[8..20].copy_from_slice(b"not json at ");
    fs::write(&file, &garbage).unwrap();
    expect("corrupt safetensors header", corrupt);
    fs::write(&file, u64::MAX.to_le_bytes()).unwrap();
    expect("not a safetensors file", corrupt);
    assert!(!out.path().join("q").exists());

    fs::remove_file(&file).unwrap();
    expect("neither `model.safetensors` nor `model.safetensors.index.json`", |e| matches!(e, Error::NotFound(_)));
    let e = Checkpoint::open(inp.path().join("nope")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    assert!(e.to_string().contains("nope"), "{e}");

    // An index naming a missing shard.
    fs::write(inp.path().join("model.safetensors.index.json"), r#"{"weight_map": {"a": "gone.safetensors"}}"#).unwrap();
    let e = Checkpoint::open(inp.path()).unwrap_err();
    assert!(matches!(e, Error::Io { .. }) && e.to_string().contains("gone.safetensors"), "{e}");
}

#[test]
fn collisions_unsupported_dtypes_and_requantization_are_errors() {
    let out = TempDir::new("coll-out");
    // `X.weight_scale` already present beside `X.weight`.
    let inp = TempDir::new("coll-in");
    let mut m = model(DType::F32);
    m.push(("model.layers.0.mlp.up_proj.weight_scale".into(), float_t(&[12, 1], 3, DType::F32)));
    write_file(&inp.path().join("model.safetensors"), &m);
    let e = quantizer(inp.path(), &out.path().join("q"), QuantScheme::default()).run().unwrap_err();
    assert!(matches!(e, Error::Unsupported(_)), "{e:?}");
    assert!(e.to_string().contains("collision") && e.to_string().contains("up_proj.weight_scale"), "{e}");

    // An already quantized checkpoint is refused.
    let inp2 = TempDir::new("coll-in2");
    write_model(inp2.path(), DType::F32);
    let q = out.path().join("q2");
    quantizer(inp2.path(), &q, QuantScheme::default()).run().unwrap();
    let e = quantizer(&q, &out.path().join("q3"), QuantScheme::default()).run().unwrap_err();
    assert!(matches!(e, Error::Unsupported(_)) && e.to_string().contains("already quantized"), "{e}");

    // A linear weight in F64: left in float by default, an error when explicitly included.
    let inp3 = TempDir::new("coll-in3");
    let mut m = model(DType::F32);
    let d: Vec<u8> = (0..4 * 8).flat_map(|i| f64::from(i).to_le_bytes()).collect();
    m.push(("model.extra.proj.weight".into(), T { dtype: TensorDtype::F64, shape: vec![4, 8], data: d }));
    write_file(&inp3.path().join("model.safetensors"), &m);
    let r = quantizer(inp3.path(), &out.path().join("q4"), QuantScheme::default()).run().unwrap();
    assert!(r.skipped.iter().any(|s| s.name == "model.extra.proj.weight" && s.reason.contains("F64")));
    let e = quantizer(inp3.path(), &out.path().join("q5"), QuantScheme::default()).include("*proj*").run().unwrap_err();
    assert!(matches!(e, Error::Unsupported(_)), "{e:?}");
    assert!(e.to_string().contains("F64") && e.to_string().contains("not supported"), "{e}");

    // Per-channel along axis 1 has no compressed-tensors layout.
    let e = quantizer(inp3.path(), &out.path().join("q6"), QuantScheme::symmetric(Granularity::PerChannel { axis: 1 }))
        .run()
        .unwrap_err();
    assert!(e.to_string().contains("axis 0"), "{e}");
}

#[test]
fn int_quantized_checkpoints_from_elsewhere_load() {
    // compressed-tensors `int-quantized`: an I8 weight, bf16 scales [out, 1], no packing.
    let inp = TempDir::new("intq");
    let w = float_t(&[6, 10], 3, DType::F32);
    let q = in_memory(&w, QuantScheme::default());
    let t = vec![
        (
            "fc.weight".to_string(),
            T { dtype: TensorDtype::I8, shape: vec![6, 10], data: bytemuck::cast_slice(q.values()).to_vec() },
        ),
        (
            "fc.weight_scale".to_string(),
            T { dtype: TensorDtype::BF16, shape: vec![6, 1], data: floats(q.scales(), DType::BF16) },
        ),
    ];
    write_file(&inp.path().join("model.safetensors"), &t);
    let ck = Checkpoint::open(inp.path()).unwrap();
    assert_eq!(ck.quantized_layers(), ["fc"]);
    let info = ck.quantized_layer_info("fc").unwrap();
    assert_eq!(info.format, checkpoint::PackFormat::IntQuantized);
    assert_eq!(ck.quantized_tensor("fc").unwrap(), checkpoint::exported(&q, DType::BF16).unwrap());
    assert_eq!(ck.activation_dtype(), DType::BF16);
    let e = ck.quantized_tensor("nothing").unwrap_err();
    assert!(e.to_string().contains("nothing"), "{e}");
    // The message names the layer itself: not wrapped in an Error::Tensor repeating it.
    assert!(matches!(&e, Error::NotFound(_)), "{e:?}");
}

#[test]
fn zero_size_weights_are_skipped_with_a_reason() {
    let inp = TempDir::new("zero-in");
    write_zero_size_model(inp.path());
    let out = TempDir::new("zero-out");
    let dest = out.path().join("q");
    let r = quantizer(inp.path(), &dest, QuantScheme::default()).run().unwrap();
    assert_eq!(r.layers.len(), LINEARS.len());
    let zero: Vec<(&str, &[usize], &str)> = r
        .skipped
        .iter()
        .filter(|s| s.name.starts_with("model.extra"))
        .map(|s| (s.name.as_str(), s.shape.as_slice(), s.reason.as_str()))
        .collect();
    assert_eq!(
        zero,
        [
            ("model.extra.cols.weight", &[4, 0][..], "zero-size, nothing to quantize"),
            ("model.extra.huge.weight", &[1 << 62, 0][..], "zero-size, nothing to quantize"),
            ("model.extra.rows.weight", &[0, 10][..], "zero-size, nothing to quantize"),
        ]
    );
    assert!(
        r.to_string().contains(
            "\n  zero-size, nothing to quantize: model.extra.cols.weight [4, 0], model.extra.huge.weight \
             [4611686018427387904, 0], model.extra.rows.weight [0, 10]\n"
        ),
        "{r}"
    );
    let ck = Checkpoint::open(&dest).unwrap();
    assert_eq!(ck.info("model.extra.rows.weight").unwrap().shape, [0, 10], "copied unchanged");
    let ignore = &ck.quantization_config().unwrap()["ignore"];
    assert_eq!(
        ignore,
        &json!(["lm_head", "model.embed_tokens", "model.extra.cols", "model.extra.huge", "model.extra.rows"])
    );
}

#[test]
fn eval_rows_is_bounded_before_any_work() {
    use int8_wgpu::quantizer::MAX_EVAL_ROWS;
    assert_eq!(MAX_EVAL_ROWS, 4096);
    let inp = TempDir::new("rows-in");
    write_model(inp.path(), DType::F32);
    let out = TempDir::new("rows-out");
    let dest = out.path().join("q");
    for rows in [usize::MAX, 1 << 62, 20_000_000, MAX_EVAL_ROWS + 1] {
        let mut calls = 0;
        let e = quantizer(inp.path(), &dest, QuantScheme::default())
            .eval_rows(rows)
            .run_with_progress(|_| calls += 1)
            .unwrap_err();
        assert!(matches!(e, Error::TooLarge { size, limit: 4096, .. } if size == rows as u64), "{rows}: {e:?}");
        assert_eq!(
            e.to_string(),
            format!(
                "eval_rows (activation rows per layer for the output error) is too large: {rows} exceeds the limit \
                 4096"
            )
        );
        assert_eq!(calls, 0, "{rows}: checked before any layer");
        assert!(!dest.exists());
    }
    let r = quantizer(inp.path(), &dest, QuantScheme::default()).eval_rows(MAX_EVAL_ROWS).run().unwrap();
    assert!(r.layers.iter().all(|l| l.output_rel_error.is_some_and(|e| e > 0.0 && e < 0.02)), "{r}");
}

#[test]
fn invalid_config_json_is_refused_before_any_layer() {
    let inp = TempDir::new("cfg-in");
    write_model(inp.path(), DType::F32);
    let config = inp.path().join("config.json");
    let out = TempDir::new("cfg-out");
    let dest = out.path().join("q");
    for (text, needle) in [
        ("[1, 2]", "is not a JSON object (it holds an array); a model config is an object of settings"),
        ("\"toy\"", "is not a JSON object (it holds a string); a model config is an object of settings"),
        ("null", "is not a JSON object (it holds null); a model config is an object of settings"),
        ("{\"model_type\": ", "is not valid JSON: EOF while parsing"),
    ] {
        fs::write(&config, text).unwrap();
        let mut calls = 0;
        let e = quantizer(inp.path(), &dest, QuantScheme::default()).run_with_progress(|_| calls += 1).unwrap_err();
        let Error::Corrupt(msg) = &e else { panic!("{text}: {e:?}") };
        assert!(msg.starts_with(&format!("`{}` {needle}", config.display())), "{text}: {msg}");
        assert_eq!(calls, 0, "{text}: refused before the first layer");
        assert!(!dest.exists());
    }
}
