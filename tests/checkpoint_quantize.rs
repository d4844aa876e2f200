//! Quantizing the synthetic checkpoint: GPU and CPU files byte-identical, any thread count,
//! loaded layers computing like in-memory ones, globs and default excludes, sharded inputs.

mod common;

use std::fs;
use std::path::PathBuf;

use common::TempDir;
use common::model::*;
use half::bf16;
use int8_wgpu::checkpoint::{Checkpoint, TensorDtype};
use int8_wgpu::quantizer::Quantizer;
use int8_wgpu::{DType, Error, Granularity, QuantScheme, QuantizedLinear};
use serde_json::json;

#[test]
fn gpu_and_cpu_write_byte_identical_files() {
    let gpu = gpu_or_skip!();
    for (dtype, scheme) in [
        (DType::F32, QuantScheme::default()),
        (DType::BF16, QuantScheme::asymmetric(Granularity::PerGroup { size: 5 })),
        (DType::F16, QuantScheme::asymmetric(Granularity::PerTensor)),
    ] {
        let (inp, out) = (TempDir::new("gc-in"), TempDir::new("gc-out"));
        write_model(inp.path(), dtype);
        let (g, c) = (out.path().join("gpu"), out.path().join("cpu"));
        let rg = Quantizer::new(inp.path(), &g).scheme(scheme).gpu(gpu.clone()).eval_rows(2).run().unwrap();
        let rc = Quantizer::new(inp.path(), &c).scheme(scheme).cpu().eval_rows(2).run().unwrap();
        let (sg, sc) = (snapshot(&g), snapshot(&c));
        assert_eq!(sg.len(), sc.len());
        for ((pg, bg), (pc, bc)) in sg.iter().zip(&sc) {
            assert_eq!(pg, pc);
            assert!(bg == bc, "{dtype} {scheme:?}: {} differs between GPU and CPU", pg.display());
        }
        assert_eq!(rg.layers, rc.layers, "same report numbers");
        assert_ne!(rg.backend, rc.backend);
    }
}

#[test]
fn the_number_of_threads_changes_neither_files_nor_report() {
    // Layers are quantized several at once and written as they finish: the files and the report
    // are the same whatever the number of workers, sharded or not, with the evaluation in the
    // fused pass (2 rows) or the reference way (70 rows).
    for (sharded, dtype, scheme, rows) in [
        (false, DType::F32, QuantScheme::default(), 2),
        (true, DType::BF16, QuantScheme::asymmetric(Granularity::PerGroup { size: 5 }), 2),
        (true, DType::F16, QuantScheme::symmetric(Granularity::PerTensor), 70),
    ] {
        let (inp, out) = (TempDir::new("th-in"), TempDir::new("th-out"));
        if sharded {
            write_sharded(inp.path(), dtype);
        } else {
            write_model(inp.path(), dtype);
        }
        let run = |threads: usize| {
            let dest = out.path().join(format!("t{threads}"));
            let report = quantizer(inp.path(), &dest, scheme).eval_rows(rows).threads(threads).run().unwrap();
            (snapshot(&dest), report.layers)
        };
        let one = run(1);
        assert_eq!(one.1.len(), LINEARS.len());
        for threads in [2, 5] {
            let many = run(threads);
            assert!(many == one, "{dtype} {scheme:?} sharded {sharded}: {threads} threads differ from one");
        }
    }
    // Two layers fail: the error is the first one's in file order, as when layers run one by one.
    let (inp, out) = (TempDir::new("th-nan-in"), TempDir::new("th-nan-out"));
    let mut m = model(DType::F32);
    for (name, at) in [("model.layers.0.mlp.down_proj.weight", 3), ("model.layers.0.mlp.up_proj.weight", 0)] {
        m.iter_mut().find(|(n, _)| n == name).unwrap().1.data[4 * at..4 * at + 4]
            .copy_from_slice(&f32::NAN.to_le_bytes());
    }
    write_file(&inp.path().join("model.safetensors"), &m);
    for threads in [1, 2, 5, 5, 5] {
        let e =
            quantizer(inp.path(), &out.path().join("q"), QuantScheme::default()).threads(threads).run().unwrap_err();
        let Error::Tensor { name, source } = &e else { panic!("{e:?}") };
        assert_eq!(name, "model.layers.0.mlp.down_proj.weight", "{threads} threads");
        assert!(matches!(**source, Error::NonFinite { index: 3, .. }), "{e}");
    }
}

#[test]
fn loaded_layers_compute_like_in_memory_layers() {
    // Packed words go to the GPU as stored (offset binary, rows padded with 0x00 bytes, which
    // read as -128): outputs must equal the in-memory layer's bit for bit, and the oracle's.
    let gpu = gpu_or_skip!();
    let (inp, out) = (TempDir::new("lin-in"), TempDir::new("lin-out"));
    let m = write_model(inp.path(), DType::F32);
    for (k, scheme) in [
        QuantScheme::asymmetric(Granularity::PerGroup { size: 5 }),
        QuantScheme::default(),
        QuantScheme::asymmetric(Granularity::PerTensor),
    ]
    .into_iter()
    .enumerate()
    {
        let dest = out.path().join(format!("q{k}"));
        quantizer(inp.path(), &dest, scheme).run().unwrap();
        let ck = Checkpoint::open(&dest).unwrap();
        for (name, [_, i]) in LINEARS {
            let t = &m.iter().find(|(n, _)| *n == format!("{name}.weight")).unwrap().1;
            let bias = m
                .iter()
                .find(|(n, _)| *n == format!("{name}.bias"))
                .map(|(_, b)| bytemuck::pod_collect_to_vec::<u8, f32>(&b.data));
            let loaded = ck.linear(&gpu, name).unwrap();
            assert_eq!(loaded.activation_dtype(), DType::BF16);
            assert_eq!(loaded.bias().is_some(), bias.is_some(), "{name}: bias loaded");
            let q = in_memory(t, scheme);
            let mem = QuantizedLinear::from_quantized(&gpu, &q, bias.as_deref(), DType::BF16).unwrap();
            let x: Vec<bf16> = common::rand_vec(3 * i, 5).iter().map(|&v| bf16::from_f32(v)).collect();
            let a: Vec<bf16> = loaded.forward_host(&x, &[3, *i]).unwrap();
            let b: Vec<bf16> = mem.forward_host(&x, &[3, *i]).unwrap();
            let bits = |v: &[bf16]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b), "{scheme:?} {name}");
            let b16: Option<Vec<bf16>> = bias.as_ref().map(|b| b.iter().map(|&v| bf16::from_f32(v)).collect());
            common::assert_linear_close(&a, &x, &q, b16.as_deref(), &format!("{scheme:?} {name}"));
        }
    }
}

#[test]
fn include_exclude_and_default_excludes() {
    let inp = TempDir::new("glob-in");
    write_model(inp.path(), DType::F32);
    let out = TempDir::new("glob-out");
    let run = |q: Quantizer| q.run().unwrap();
    let names = |r: &int8_wgpu::quantizer::QuantReport| r.layers.iter().map(|l| l.name.clone()).collect::<Vec<_>>();

    // Default: embeddings and lm_head excluded and listed; norms listed; config ignore.
    let r = run(quantizer(inp.path(), &out.path().join("a"), QuantScheme::default()));
    assert_eq!(r.layers.len(), 4);
    let skipped: Vec<(&str, &str)> = r.skipped.iter().map(|s| (s.name.as_str(), s.reason.as_str())).collect();
    assert!(skipped.contains(&("lm_head.weight", "excluded by default pattern `*lm_head*`")), "{skipped:?}");
    assert!(skipped.contains(&("model.embed_tokens.weight", "excluded by default pattern `*embed_tokens*`")));
    assert!(skipped.contains(&("model.norm.weight", "excluded by default pattern `*norm*`")));
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);

    // Exclude: a glob over the full name; one that matches nothing is a warning.
    let r = run(quantizer(inp.path(), &out.path().join("b"), QuantScheme::default())
        .exclude("*.mlp.up_?roj*")
        .exclude("*nothing*"));
    assert_eq!(
        names(&r),
        ["model.layers.0.attn.q_proj", "model.layers.0.mlp.down_proj", "model.layers.0.mlp.gate_proj"]
    );
    assert!(
        r.skipped
            .iter()
            .any(|s| s.name == "model.layers.0.mlp.up_proj.weight" && s.reason == "excluded by `*.mlp.up_?roj*`")
    );
    assert_eq!(r.warnings, ["exclude pattern `*nothing*` matches no tensor"]);
    let ck = Checkpoint::open(out.path().join("b")).unwrap();
    assert_eq!(ck.info("model.layers.0.mlp.up_proj.weight").unwrap().dtype, TensorDtype::F32);
    let ignore = &ck.quantization_config().unwrap()["ignore"];
    assert_eq!(ignore, &json!(["lm_head", "model.embed_tokens", "model.layers.0.mlp.up_proj"]));

    // Include: only matching linear weights (biases matched by the same glob are not weights).
    let r = run(quantizer(inp.path(), &out.path().join("c"), QuantScheme::default()).include("model.layers.*.mlp.*"));
    assert_eq!(
        names(&r),
        ["model.layers.0.mlp.down_proj", "model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj"]
    );
    let ck = Checkpoint::open(out.path().join("c")).unwrap();
    let ignore = &ck.quantization_config().unwrap()["ignore"];
    assert_eq!(ignore, &json!(["lm_head", "model.embed_tokens", "model.layers.0.attn.q_proj"]), "left-out linears");

    // Without default excludes, lm_head and the embedding table are quantized too.
    let r = run(quantizer(inp.path(), &out.path().join("d"), QuantScheme::default()).default_excludes(false));
    assert_eq!(r.layers.len(), 6);
    assert!(names(&r).contains(&"lm_head".to_string()));
}

#[test]
fn sharded_and_single_file_inputs() {
    let inp = TempDir::new("shard-in");
    let m = model(DType::BF16);
    let (a, b): (Vec<_>, Vec<_>) = m.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let a: Vec<(String, T)> = a.into_iter().map(|(_, t)| t).collect();
    let b: Vec<(String, T)> = b.into_iter().map(|(_, t)| t).collect();
    write_file(&inp.path().join("model-00001-of-00002.safetensors"), &a);
    write_file(&inp.path().join("model-00002-of-00002.safetensors"), &b);
    let mut map = serde_json::Map::new();
    for (n, _) in &a {
        map.insert(n.clone(), json!("model-00001-of-00002.safetensors"));
    }
    for (n, _) in &b {
        map.insert(n.clone(), json!("model-00002-of-00002.safetensors"));
    }
    let index = json!({"metadata": {"total_size": 0}, "weight_map": map});
    fs::write(inp.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    let out = TempDir::new("shard-out");
    let dest = out.path().join("q");
    let r = quantizer(inp.path(), &dest, QuantScheme::default()).run().unwrap();
    assert_eq!(r.layers.len(), 4);
    let ck = Checkpoint::open(&dest).unwrap();
    assert!(ck.is_sharded());
    assert_eq!(ck.files().len(), 2);
    assert_eq!(ck.quantized_layers().len(), 4);
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dest.join("model.safetensors.index.json")).unwrap()).unwrap();
    assert_eq!(index["metadata"]["total_size"], json!(ck.nbytes()));
    assert_eq!(index["weight_map"].as_object().unwrap().len(), ck.names().count());
    // A quantized layer stays in the shard its float weight was in.
    let shard_of = |n: &str| index["weight_map"][n].as_str().unwrap().to_string();
    for (n, _) in &a {
        if let Some(p) = n.strip_suffix(".weight").filter(|p| LINEARS.iter().any(|(l, _)| l == p)) {
            assert_eq!(shard_of(&format!("{p}.weight_packed")), "model-00001-of-00002.safetensors");
        }
    }
    assert!(!dest.join("config.json").exists(), "no config.json in the input, none in the output");

    // A single .safetensors file.
    let dest2 = out.path().join("single");
    let r =
        quantizer(&inp.path().join("model-00001-of-00002.safetensors"), &dest2, QuantScheme::default()).run().unwrap();
    assert_eq!(r.layers.len(), 2);
    assert_eq!(
        snapshot(&dest2).iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
        [PathBuf::from("model.safetensors")]
    );
    assert_eq!(Checkpoint::open(dest2.join("model.safetensors")).unwrap().quantized_layers().len(), 2);
}
