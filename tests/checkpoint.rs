//! Checkpoint writing and loading on small synthetic safetensors checkpoints: the
//! compressed-tensors layout, round trips, GPU vs CPU files, globs, errors, safety.

mod common;

use common::TempDir;

use safetensors::tensor::TensorView;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use int8_wgpu::checkpoint::{self, Checkpoint, TensorDtype};
use int8_wgpu::quantizer::{Method, Quantizer};
use int8_wgpu::{DType, Error, Granularity, QuantScheme, QuantizedLinear, QuantizedTensor, reference};
use serde_json::json;

struct T {
    dtype: TensorDtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

/// `values` as the little-endian bytes of `dtype`, rounded to nearest even.
fn floats(values: &[f32], dtype: DType) -> Vec<u8> {
    let bytes = |v: f32| -> Vec<u8> {
        match dtype {
            DType::F32 => v.to_le_bytes().into(),
            DType::F16 => f16::from_f32(v).to_le_bytes().into(),
            DType::BF16 => bf16::from_f32(v).to_le_bytes().into(),
        }
    };
    values.iter().flat_map(|&v| bytes(v)).collect()
}

/// The safetensors dtype of a float [`DType`].
fn tensor_dtype(dtype: DType) -> TensorDtype {
    match dtype {
        DType::F32 => TensorDtype::F32,
        DType::F16 => TensorDtype::F16,
        DType::BF16 => TensorDtype::BF16,
    }
}

fn float_t(shape: &[usize], seed: u64, dtype: DType) -> T {
    let n = shape.iter().product();
    // Rows of different magnitudes, so scales differ per row.
    let v: Vec<f32> = common::rand_vec(n, seed)
        .iter()
        .enumerate()
        .map(|(i, x)| x * (1.0 + (i / shape[shape.len() - 1]) as f32 * 0.37))
        .collect();
    T { dtype: tensor_dtype(dtype), shape: shape.to_vec(), data: floats(&v, dtype) }
}

/// Linear layers of the synthetic model: name, [out, in]. `in` is not a multiple of 4 for some
/// (row padding) and a multiple of 5 for all (group size 5); out = 5 tests zero-point padding.
const LINEARS: &[(&str, [usize; 2])] = &[
    ("model.layers.0.attn.q_proj", [6, 10]),
    ("model.layers.0.mlp.gate_proj", [5, 10]),
    ("model.layers.0.mlp.up_proj", [12, 10]),
    ("model.layers.0.mlp.down_proj", [10, 15]),
];

fn model(dtype: DType) -> Vec<(String, T)> {
    let mut v: Vec<(String, T)> = Vec::new();
    for (i, (name, shape)) in LINEARS.iter().enumerate() {
        v.push((format!("{name}.weight"), float_t(shape, 100 + i as u64, dtype)));
    }
    v.push(("model.layers.0.mlp.up_proj.bias".into(), float_t(&[12], 7, dtype)));
    v.push(("model.embed_tokens.weight".into(), float_t(&[16, 10], 8, dtype)));
    v.push(("model.norm.weight".into(), float_t(&[10], 9, dtype)));
    v.push(("lm_head.weight".into(), float_t(&[16, 10], 10, dtype)));
    let ids: Vec<u8> = (0..7i64).flat_map(|i| i.to_le_bytes()).collect();
    v.push(("model.position_ids".into(), T { dtype: TensorDtype::I64, shape: vec![1, 7], data: ids }));
    v
}

fn write_file(path: &Path, tensors: &[(String, T)]) {
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let views = tensors.iter().map(|(n, t)| (n.as_str(), TensorView::new(t.dtype, t.shape.clone(), &t.data).unwrap()));
    safetensors::serialize_to_file(views, Some(meta), path).unwrap();
}

/// A model folder: model.safetensors, config.json, tokenizer files, a sub-folder.
fn write_model(dir: &Path, dtype: DType) -> Vec<(String, T)> {
    let m = model(dtype);
    write_file(&dir.join("model.safetensors"), &m);
    fs::write(dir.join("config.json"), r#"{"model_type": "toy", "hidden_size": 10}"#).unwrap();
    fs::write(dir.join("tokenizer.json"), r#"{"version": "1.0"}"#).unwrap();
    fs::write(dir.join("vocab.txt"), "[PAD]\n[UNK]\n").unwrap();
    fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    fs::write(dir.join("1_Pooling/config.json"), "{}").unwrap();
    m
}

/// Every file under `dir` with its bytes, relative paths sorted.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push((p.strip_prefix(root).unwrap().to_path_buf(), fs::read(&p).unwrap()));
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

fn quantizer(input: &Path, output: &Path, scheme: QuantScheme) -> Quantizer {
    Quantizer::new(input, output).scheme(scheme).cpu().eval_rows(2)
}

/// The in-memory quantization of a float tensor of the model.
fn in_memory(t: &T, scheme: QuantScheme) -> QuantizedTensor {
    match t.dtype {
        TensorDtype::F32 => reference::quantize::<f32>(&bytemuck::pod_collect_to_vec(&t.data), &t.shape, scheme),
        TensorDtype::F16 => reference::quantize::<f16>(&bytemuck::pod_collect_to_vec(&t.data), &t.shape, scheme),
        TensorDtype::BF16 => reference::quantize::<bf16>(&bytemuck::pod_collect_to_vec(&t.data), &t.shape, scheme),
        d => panic!("not float: {d}"),
    }
    .unwrap()
}

fn i32s(b: &[u8]) -> Vec<i32> {
    bytemuck::pod_collect_to_vec(b)
}

#[test]
fn layout_dtypes_shapes_and_config_are_as_specified() {
    let (inp, out) = (TempDir::new("layout-in"), TempDir::new("layout-out"));
    let m = write_model(inp.path(), DType::F32);
    let dest = out.path().join("q");
    let report = quantizer(inp.path(), &dest, QuantScheme::default()).run().unwrap();
    assert_eq!(report.layers.len(), LINEARS.len());

    let ck = Checkpoint::open(&dest).unwrap();
    let scheme = QuantScheme::default();
    for (name, [o, i]) in LINEARS {
        let t = &m.iter().find(|(n, _)| *n == format!("{name}.weight")).unwrap().1;
        let q = in_memory(t, scheme);
        assert!(ck.info(&format!("{name}.weight")).is_none(), "{name}.weight must be replaced");
        assert!(ck.info(&format!("{name}.weight_zero_point")).is_none(), "symmetric: no zero point");
        let packed = ck.info(&format!("{name}.weight_packed")).unwrap();
        assert_eq!((packed.dtype, packed.shape.clone()), (TensorDtype::I32, vec![*o, i.div_ceil(4)]), "{name}");
        let words = i32s(&ck.bytes(&format!("{name}.weight_packed")).unwrap());
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let wpr = i.div_ceil(4) * 4;
        for r in 0..*o {
            for c in 0..wpr {
                let want = if c < *i { (q.values()[r * i + c] as u8) ^ 0x80 } else { 0 };
                assert_eq!(bytes[r * wpr + c], want, "{name} row {r} byte {c}");
            }
        }
        let shape_t = ck.info(&format!("{name}.weight_shape")).unwrap();
        assert_eq!((shape_t.dtype, shape_t.shape.clone()), (TensorDtype::I64, vec![2]));
        let dims: Vec<i64> = bytemuck::pod_collect_to_vec(&ck.bytes(&format!("{name}.weight_shape")).unwrap());
        assert_eq!(dims, [*o as i64, *i as i64]);
        let scale = ck.info(&format!("{name}.weight_scale")).unwrap();
        assert_eq!((scale.dtype, scale.shape.clone()), (TensorDtype::F32, vec![*o, 1]));
        assert_eq!(ck.tensor_f32(&format!("{name}.weight_scale")).unwrap(), q.scales());
    }
    // Everything else copied byte for byte, with the same dtype and shape.
    for (name, t) in m.iter().filter(|(n, _)| !LINEARS.iter().any(|(l, _)| *n == format!("{l}.weight"))) {
        let info = ck.info(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!((info.dtype, &info.shape), (t.dtype, &t.shape), "{name}");
        assert_eq!(ck.bytes(name).unwrap(), t.data.as_slice(), "{name} bytes");
    }
    assert_eq!(ck.names().count(), m.len() + 2 * LINEARS.len());

    // config.json: the original keys plus exactly the specified quantization_config.
    let config: serde_json::Value = serde_json::from_slice(&fs::read(dest.join("config.json")).unwrap()).unwrap();
    let expected = json!({
        "model_type": "toy",
        "hidden_size": 10,
        "quantization_config": {
            "quant_method": "compressed-tensors",
            "version": "0.20.1",
            "format": "pack-quantized",
            "quantization_status": "compressed",
            "config_groups": {"group_0": {
                "targets": ["Linear"],
                "weights": {"num_bits": 8, "type": "int", "symmetric": true, "strategy": "channel",
                            "group_size": null, "dynamic": false, "actorder": null},
                "input_activations": null
            }},
            "ignore": ["lm_head", "model.embed_tokens"]
        }
    });
    assert_eq!(config, expected);
    // Tokenizer and other files copied; metadata records the method.
    for f in ["tokenizer.json", "vocab.txt", "1_Pooling/config.json"] {
        assert_eq!(fs::read(dest.join(f)).unwrap(), fs::read(inp.path().join(f)).unwrap(), "{f}");
    }
    let meta = ck.metadata().unwrap();
    assert_eq!(meta.get("format").map(String::as_str), Some("pt"));
    assert_eq!(meta.get("int8_wgpu.method").map(String::as_str), Some("w8a16"));
    assert_eq!(ck.activation_dtype(), DType::BF16, "w8a16 of an f32 model runs bf16");

    // The report's sizes and errors are those of the stored tensors.
    for l in &report.layers {
        let t = &m.iter().find(|(n, _)| *n == format!("{}.weight", l.name)).unwrap().1;
        let q = in_memory(t, scheme);
        assert_eq!(l.bytes_before, t.data.len());
        assert_eq!(l.bytes_after, l.shape[0] * l.shape[1].div_ceil(4) * 4 + 16 + 4 * l.shape[0]);
        let err = q.error::<f32>(&bytemuck::pod_collect_to_vec(&t.data)).unwrap();
        assert_eq!((l.mse, l.max_abs), (err.mse, err.max_abs), "{}", l.name);
        let rel = l.output_rel_error.unwrap();
        assert!(rel > 0.0 && rel < 0.02, "{}: output relative error {rel}", l.name);
    }
    assert_eq!(report.total_before, m.iter().map(|(_, t)| t.data.len()).sum::<usize>());
    assert_eq!(report.total_after, ck.nbytes());
    assert!(report.to_string().contains("quantized 4 linear layers"));
}

#[test]
fn f32_round_trip_equals_in_memory_quantization_exactly() {
    for scheme in [
        QuantScheme::default(),
        QuantScheme::symmetric(Granularity::PerGroup { size: 5 }),
        QuantScheme::symmetric(Granularity::PerTensor),
        QuantScheme::asymmetric(Granularity::PerChannel { axis: 0 }),
        QuantScheme::asymmetric(Granularity::PerGroup { size: 5 }),
        QuantScheme::asymmetric(Granularity::PerTensor),
    ] {
        let (inp, out) = (TempDir::new("rt-in"), TempDir::new("rt-out"));
        let m = write_model(inp.path(), DType::F32);
        let dest = out.path().join("q");
        quantizer(inp.path(), &dest, scheme).method(Method::W8A32).run().unwrap();
        let ck = Checkpoint::open(&dest).unwrap();
        assert_eq!(ck.activation_dtype(), DType::F32);
        assert_eq!(ck.quantized_layers().len(), LINEARS.len());
        for (name, _) in LINEARS {
            let t = &m.iter().find(|(n, _)| *n == format!("{name}.weight")).unwrap().1;
            let want = in_memory(t, scheme);
            let got = ck.quantized_tensor(name).unwrap();
            assert_eq!(got, want, "{scheme:?} {name}");
            let a: Vec<u32> = got.dequantize().iter().map(|v| v.to_bits()).collect();
            let b: Vec<u32> = want.dequantize().iter().map(|v| v.to_bits()).collect();
            assert_eq!(a, b, "{scheme:?} {name}: dequantized bits");
        }
    }
}

#[test]
fn sixteen_bit_inputs_store_scales_in_their_dtype() {
    // Ints are the in-memory ones; each scale is the f32 scale rounded to the weight's dtype;
    // so the file reads back as `checkpoint::exported(in_memory, dtype)`.
    for dtype in [DType::F16, DType::BF16] {
        for scheme in [QuantScheme::default(), QuantScheme::asymmetric(Granularity::PerGroup { size: 5 })] {
            let (inp, out) = (TempDir::new("16-in"), TempDir::new("16-out"));
            let m = write_model(inp.path(), dtype);
            let dest = out.path().join("q");
            let report = quantizer(inp.path(), &dest, scheme).run().unwrap();
            let ck = Checkpoint::open(&dest).unwrap();
            let input = Checkpoint::open(inp.path()).unwrap();
            assert_eq!(ck.activation_dtype(), dtype, "w8a16 keeps a 16-bit model's dtype");
            for (name, _) in LINEARS {
                let t = &m.iter().find(|(n, _)| *n == format!("{name}.weight")).unwrap().1;
                let mem = in_memory(t, scheme);
                let got = ck.quantized_tensor(name).unwrap();
                assert_eq!(ck.info(&format!("{name}.weight_scale")).unwrap().dtype, t.dtype, "the weight's dtype");
                assert_eq!(got.values(), mem.values(), "{dtype} {name}: ints");
                assert_eq!(got.zero_points(), mem.zero_points(), "{dtype} {name}: zero points");
                for (g, s) in got.scales().iter().zip(mem.scales()) {
                    assert_eq!(g.to_bits(), dtype.round(*s).to_bits(), "{dtype} {name}: scale {s:e}");
                }
                assert_eq!(got, checkpoint::exported(&mem, dtype).unwrap());
                let l = report.layers.iter().find(|l| l.name == *name).unwrap();
                assert_eq!(l.dtype, dtype);
                let orig = input.tensor_f32(&format!("{name}.weight")).unwrap();
                assert_eq!(l.mse, got.error(&orig).unwrap().mse, "report measures the stored tensor");
            }
        }
    }
}

#[test]
fn asymmetric_zero_point_layouts() {
    let cases = [
        (QuantScheme::asymmetric(Granularity::PerChannel { axis: 0 }), "channel", None),
        (QuantScheme::asymmetric(Granularity::PerGroup { size: 5 }), "group", Some(5)),
        (QuantScheme::asymmetric(Granularity::PerTensor), "tensor", None),
    ];
    for (scheme, strategy, group) in cases {
        let (inp, out) = (TempDir::new("zp-in"), TempDir::new("zp-out"));
        let m = write_model(inp.path(), DType::BF16);
        let dest = out.path().join("q");
        quantizer(inp.path(), &dest, scheme).run().unwrap();
        let ck = Checkpoint::open(&dest).unwrap();
        for (name, [o, i]) in LINEARS {
            let t = &m.iter().find(|(n, _)| *n == format!("{name}.weight")).unwrap().1;
            let mem = in_memory(t, scheme);
            let zps = mem.zero_points().unwrap();
            let zn = format!("{name}.weight_zero_point");
            let z = ck.info(&zn).unwrap();
            let scale = ck.info(&format!("{name}.weight_scale")).unwrap();
            assert_eq!(scale.dtype, TensorDtype::BF16);
            match strategy {
                "tensor" => {
                    assert_eq!((z.dtype, z.shape.clone()), (TensorDtype::I8, vec![1]), "{name}");
                    assert_eq!(scale.shape, [1]);
                    assert_eq!(ck.bytes(&zn).unwrap(), [zps[0] as u8]);
                }
                _ => {
                    let cols = if strategy == "group" { i / 5 } else { 1 };
                    assert_eq!(scale.shape, [*o, cols], "{name}");
                    assert_eq!((z.dtype, z.shape.clone()), (TensorDtype::I32, vec![o.div_ceil(4), cols]), "{name}");
                    let words = i32s(&ck.bytes(&zn).unwrap());
                    for r in 0..o.div_ceil(4) * 4 {
                        for c in 0..cols {
                            let byte = (words[(r / 4) * cols + c] as u32 >> (8 * (r % 4))) as u8;
                            let want = if r < *o { zps[r * cols + c] as u8 ^ 0x80 } else { 0 };
                            assert_eq!(byte, want, "{name} zp row {r} col {c}");
                        }
                    }
                }
            }
            assert_eq!(ck.quantized_tensor(name).unwrap(), checkpoint::exported(&mem, DType::BF16).unwrap());
        }
        let config: serde_json::Value = serde_json::from_slice(&fs::read(dest.join("config.json")).unwrap()).unwrap();
        let w = &config["quantization_config"]["config_groups"]["group_0"]["weights"];
        assert_eq!(w["symmetric"], false);
        assert_eq!(w["strategy"], strategy);
        assert_eq!(w["group_size"], json!(group));
    }
}

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
    let names = |r: &int8_wgpu::QuantReport| r.layers.iter().map(|l| l.name.clone()).collect::<Vec<_>>();

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
fn cli_quantize_inspect_and_errors() {
    let Some(exe) = option_env!("CARGO_BIN_EXE_int8-wgpu") else {
        eprintln!("SKIPPED: the CLI is not built (feature `cli` off)");
        return;
    };
    use std::ffi::OsString;
    let run = |args: Vec<OsString>| {
        let o = std::process::Command::new(exe).args(args).env("XDG_RUNTIME_DIR", "/tmp").output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (o.status.code(), text(&o.stdout), text(&o.stderr))
    };
    let a = |s: &str| OsString::from(s);
    let p = |p: &Path| p.as_os_str().to_owned();
    let inp = TempDir::new("cli-in");
    write_model(inp.path(), DType::F32);
    let out = TempDir::new("cli-out");
    let dest = out.path().join("q");

    let args = vec![a("quantize"), p(inp.path()), p(&dest), a("--cpu"), a("--scheme"), a("asym")];
    let args = [args, vec![a("--group-size"), a("5"), a("--exclude"), a("*nothing*")]].concat();
    let (code, stdout, stderr) = run(args);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("quantized 4 linear layers (w8a16, asym group 5, on CPU reference)"), "{stdout}");
    assert!(stdout.contains("linear weights:") && stdout.contains("model.layers.0.mlp.down_proj"), "{stdout}");
    assert!(stdout.contains("warning: exclude pattern `*nothing*` matches no tensor"), "{stdout}");
    assert!(!stderr.contains("vLLM"), "group scales have a vLLM kernel: {stderr}");
    // Per-tensor scales load in transformers but vLLM has no int8 weight-only kernel for them.
    let args =
        vec![a("quantize"), p(inp.path()), p(&out.path().join("t")), a("--cpu"), a("--granularity"), a("tensor")];
    let (code, stdout, stderr) = run(args);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains("warning: --granularity tensor has no vLLM kernel"), "{stderr}");

    let (code, stdout, stderr) = run(vec![a("inspect"), p(&dest)]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("model.layers.0.attn.q_proj.weight_packed") && stdout.contains("asym group 5"), "{stdout}");
    assert!(stdout.contains("4 quantized linear layers (compressed-tensors, pack-quantized; method w8a16"), "{stdout}");
    let (code, stdout, _) = run(vec![a("inspect"), p(inp.path())]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("not quantized; int8 estimate"), "{stdout}");

    // Errors: a message on stderr, exit status 1, no panic.
    let bad = out.path().join("g");
    let cases = [
        (vec![a("quantize"), p(&inp.path().join("missing")), p(&bad), a("--cpu")], "missing"),
        (vec![a("quantize"), p(inp.path()), p(&bad), a("--granularity"), a("group")], "--group-size"),
        (vec![a("quantize"), p(inp.path()), p(&dest), a("--cpu")], "already exists"),
        (
            vec![a("quantize"), p(inp.path()), p(&bad), a("--cpu"), a("--eval-rows"), a("18446744073709551615")],
            "error: eval_rows (activation rows per layer for the output error) is too large: 18446744073709551615 \
             exceeds the limit 4096\n",
        ),
    ];
    for (args, needle) in cases {
        let (code, _, stderr) = run(args);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.starts_with("error: ") && stderr.contains(needle) && !stderr.contains("panicked"), "{stderr}");
    }
    fs::write(inp.path().join("model.safetensors"), b"\x10\0\0\0\0\0\0\0{}").unwrap();
    let (code, _, stderr) = run(vec![a("inspect"), p(inp.path())]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("truncated"), "{stderr}");
}

/// The bytes of a safetensors file whose header is `header` (no padding) followed by `data`.
fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

#[test]
fn header_offsets_near_usize_max_are_truncation_errors() {
    // safetensors checks that offsets are contiguous and that each tensor's byte count matches
    // its shape (with checked multiplication), but not that their sum fits anything: eight U8
    // tensors of 2^61 - 1 bytes declare 2^64 - 8 bytes of data, so `8 + n + data_len` overflows.
    let size = (1u64 << 61) - 1;
    let entries: Vec<String> = (0..8u64)
        .map(|k| {
            format!(r#""t{k}":{{"dtype":"U8","shape":[{size}],"data_offsets":[{},{}]}}"#, k * size, (k + 1) * size)
        })
        .collect();
    let header = format!("{{{}}}", entries.join(","));
    let dir = TempDir::new("huge-offsets");
    let file = dir.path().join("model.safetensors");
    for extra in [0usize, 8] {
        fs::write(&file, raw_file(&header, &vec![0; extra])).unwrap();
        let e = Checkpoint::open(&file).unwrap_err();
        let Error::Corrupt(msg) = &e else { panic!("{e:?}") };
        assert_eq!(
            msg,
            &format!(
                "`{}` is truncated (the header declares 18446744073709551608 bytes of tensor data, the file has \
                 {extra}); re-download or re-export it",
                file.display()
            )
        );
    }
}

#[test]
fn zero_size_weights_are_skipped_with_a_reason() {
    let inp = TempDir::new("zero-in");
    let mut m = write_model(inp.path(), DType::F32);
    m.push(("model.extra.rows.weight".into(), T { dtype: TensorDtype::F32, shape: vec![0, 10], data: vec![] }));
    m.push(("model.extra.cols.weight".into(), T { dtype: TensorDtype::BF16, shape: vec![4, 0], data: vec![] }));
    // A zero-size dimension makes any other dimension's size free of any data: 2^62 rows.
    m.push(("model.extra.huge.weight".into(), T { dtype: TensorDtype::F32, shape: vec![1 << 62, 0], data: vec![] }));
    write_file(&inp.path().join("model.safetensors"), &m);
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

    // inspect's int8 estimate leaves them out too (2^62 rows x 4 bytes of scales would overflow).
    let Some(exe) = option_env!("CARGO_BIN_EXE_int8-wgpu") else { return };
    let o = std::process::Command::new(exe).arg("inspect").arg(inp.path()).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("model.extra.huge.weight  ") && stdout.contains("linear weights (4) "), "{stdout}");
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

/// A sharded copy of `model(dtype)` in `dir`: two shards and their index.
fn write_sharded(dir: &Path, dtype: DType) {
    let (a, b): (Vec<_>, Vec<_>) = model(dtype).into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let mut map = serde_json::Map::new();
    for (file, part) in [("model-00001-of-00002.safetensors", a), ("model-00002-of-00002.safetensors", b)] {
        let part: Vec<(String, T)> = part.into_iter().map(|(_, t)| t).collect();
        for (n, _) in &part {
            map.insert(n.clone(), json!(file));
        }
        write_file(&dir.join(file), &part);
    }
    let index = json!({"metadata": {"total_size": 0}, "weight_map": map});
    fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

#[test]
fn safetensors_files_the_checkpoint_does_not_read_are_warnings() {
    let inp = TempDir::new("unlisted-in");
    write_sharded(inp.path(), DType::F32);
    let stray = [("extra".to_string(), float_t(&[4, 8], 1, DType::F32))];
    write_file(&inp.path().join("model-00003-of-00003.safetensors"), &stray);
    // The index wins over a model.safetensors beside it, which is then not read either.
    write_file(&inp.path().join("model.safetensors"), &stray);
    let ck = Checkpoint::open(inp.path()).unwrap();
    assert_eq!(ck.unlisted_files(), ["model-00003-of-00003.safetensors", "model.safetensors"]);
    let out = TempDir::new("unlisted-out");
    let r = quantizer(inp.path(), &out.path().join("q"), QuantScheme::default()).run().unwrap();
    assert_eq!(
        r.warnings,
        [
            "`model-00003-of-00003.safetensors` is in the input folder but not in `model.safetensors.index.json`: it \
             was not read and its tensors are not in the output",
            "`model.safetensors` is in the input folder but not in `model.safetensors.index.json`: it was not read and \
             its tensors are not in the output",
        ]
    );
    assert!(r.to_string().contains("\nwarning: `model-00003-of-00003.safetensors` is in the input folder"), "{r}");
    if let Some(exe) = option_env!("CARGO_BIN_EXE_int8-wgpu") {
        let o = std::process::Command::new(exe).arg("inspect").arg(inp.path()).output().unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            stdout.contains(
                "\nwarning: `model-00003-of-00003.safetensors` is in the folder but not in \
                 `model.safetensors.index.json`: it is not read, its tensors are not listed above\n"
            ),
            "{stdout}"
        );
    }

    // A single-file folder: any other safetensors file is not read.
    let single = TempDir::new("unlisted-single");
    write_model(single.path(), DType::F32);
    write_file(&single.path().join("adapter.safetensors"), &stray);
    let ck = Checkpoint::open(single.path()).unwrap();
    assert_eq!(ck.unlisted_files(), ["adapter.safetensors"]);
    let r = quantizer(single.path(), &out.path().join("s"), QuantScheme::default()).run().unwrap();
    assert_eq!(
        r.warnings,
        ["`adapter.safetensors` is in the input folder but is not `model.safetensors`: it was not read and its \
          tensors are not in the output"]
    );
    // A single file given by path reads nothing else.
    assert!(Checkpoint::open(single.path().join("model.safetensors")).unwrap().unlisted_files().is_empty());
}

#[test]
fn an_index_with_an_empty_weight_map_is_an_error() {
    let inp = TempDir::new("empty-index");
    write_sharded(inp.path(), DType::F32);
    let index = inp.path().join("model.safetensors.index.json");
    fs::write(&index, r#"{"metadata": {"total_size": 0}, "weight_map": {}}"#).unwrap();
    let e = Checkpoint::open(inp.path()).unwrap_err();
    let Error::Index(msg) = &e else { panic!("{e:?}") };
    assert_eq!(
        msg,
        &format!("`{}` has an empty `weight_map`: it lists no tensor, so there is nothing to read", index.display())
    );
}

/// Runs `f` on another thread and fails the test if it takes more than 10 s: a FIFO that is
/// opened for reading blocks until a writer appears. On a timeout, `fifo` is opened for writing
/// so the stuck thread finishes, and the test panics.
#[cfg(unix)]
fn within_timeout<R: Send + 'static>(fifo: &Path, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(10)) {
        Ok(r) => r,
        Err(_) => {
            let writer = fifo.to_path_buf();
            std::thread::spawn(move || drop(fs::OpenOptions::new().write(true).open(writer)));
            panic!("still blocked after 10 s on the FIFO `{}`", fifo.display());
        }
    }
}

#[cfg(unix)]
fn mkfifo(path: &Path) {
    let _ = fs::remove_file(path);
    let s = std::process::Command::new("mkfifo").arg(path).status().expect("mkfifo runs");
    assert!(s.success(), "mkfifo {}", path.display());
}

#[cfg(unix)]
#[test]
fn fifos_and_other_non_regular_files_are_refused_without_blocking() {
    let open_err = |root: PathBuf, fifo: PathBuf| -> Error {
        within_timeout(&fifo, move || Checkpoint::open(root)).expect_err("a FIFO must be refused")
    };
    let expect = |e: Error, path: &Path, kind: &str| {
        let Error::NotRegularFile { path: found, kind: found_kind } = &e else { panic!("{e:?}") };
        assert_eq!((found.as_path(), *found_kind), (path, kind));
        assert_eq!(e.to_string(), format!("`{}` is {kind}, not a regular file", path.display()));
    };

    // The input itself.
    let dir = TempDir::new("fifo-file");
    let fifo = dir.path().join("x.safetensors");
    mkfifo(&fifo);
    expect(open_err(fifo.clone(), fifo.clone()), &fifo, "a FIFO");
    // model.safetensors of a folder.
    let model_fifo = dir.path().join("model.safetensors");
    mkfifo(&model_fifo);
    expect(open_err(dir.path().to_path_buf(), model_fifo.clone()), &model_fifo, "a FIFO");

    // config.json beside a good model.safetensors.
    let d = TempDir::new("fifo-config");
    write_model(d.path(), DType::F32);
    let config = d.path().join("config.json");
    mkfifo(&config);
    expect(open_err(d.path().to_path_buf(), config.clone()), &config, "a FIFO");
    // ... and the quantizer, which opens the checkpoint the same way.
    let out = TempDir::new("fifo-out");
    let (input, dest) = (d.path().to_path_buf(), out.path().join("q"));
    let e = within_timeout(&config, move || quantizer(&input, &dest, QuantScheme::default()).run().unwrap_err());
    expect(e, &config, "a FIFO");

    // A shard, and the index (which a model.safetensors beside it must not hide).
    let s = TempDir::new("fifo-shard");
    write_sharded(s.path(), DType::F32);
    let shard = s.path().join("model-00002-of-00002.safetensors");
    mkfifo(&shard);
    expect(open_err(s.path().to_path_buf(), shard.clone()), &shard, "a FIFO");
    let s = TempDir::new("fifo-index");
    write_sharded(s.path(), DType::F32);
    write_file(&s.path().join("model.safetensors"), &model(DType::F32));
    let index = s.path().join("model.safetensors.index.json");
    mkfifo(&index);
    expect(open_err(s.path().to_path_buf(), index.clone()), &index, "a FIFO");

    // A folder where a shard should be, and a character device as the input.
    let s = TempDir::new("dir-shard");
    write_sharded(s.path(), DType::F32);
    let shard = s.path().join("model-00001-of-00002.safetensors");
    fs::remove_file(&shard).unwrap();
    fs::create_dir(&shard).unwrap();
    expect(Checkpoint::open(s.path()).unwrap_err(), &shard, "a folder");
    expect(Checkpoint::open("/dev/null").unwrap_err(), Path::new("/dev/null"), "a character device");

    // The CLI: an error and exit status 1, not a hang.
    let Some(exe) = option_env!("CARGO_BIN_EXE_int8-wgpu") else { return };
    let mut child = std::process::Command::new(exe)
        .arg("inspect")
        .arg(&fifo)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(10) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("`int8-wgpu inspect FIFO` still running after 10 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr, format!("error: `{}` is a FIFO, not a regular file\n", fifo.display()));
}

/// A safetensors header of `n` one-element F16 tensors `"{l}.{e}.w{k}.weight"` ([1, 1], so
/// they are linear weights for the planner) and its 2n bytes of data.
fn many_tiny_tensors(n: usize) -> (Vec<String>, Vec<u8>) {
    let names: Vec<String> =
        (0..n).map(|i| format!("{}.{}.w{}.weight", i / 24_000, i / 3 % 8_000, i % 3 + 1)).collect();
    let mut h = String::with_capacity(n * 84);
    h.push('{');
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            h.push(',');
        }
        h.push_str(&format!(r#""{name}":{{"dtype":"F16","shape":[1,1],"data_offsets":[{},{}]}}"#, 2 * i, 2 * i + 2));
    }
    h.push('}');
    let file = raw_file(&h, &vec![0; 2 * n]);
    (names, file)
}

/// Times `Checkpoint::open` and `Quantizer::plan` on a ~98 MB header of 1.2 M tiny tensors, as one
/// file and as two shards with an index. A measurement, not a check: run it on purpose with
/// `cargo test --release --test checkpoint -- --ignored --nocapture open_timing`.
#[test]
#[ignore]
fn open_timing_on_a_huge_header() {
    use std::time::Instant;
    let n = 1_200_000;
    let (names, file) = many_tiny_tensors(n);
    let dir = TempDir::new("huge-header");
    let single = dir.path().join("single");
    fs::create_dir(&single).unwrap();
    fs::write(single.join("model.safetensors"), &file).unwrap();
    eprintln!("header: {} bytes, {n} tensors", file.len() - 2 * n - 8);
    let sharded = dir.path().join("sharded");
    fs::create_dir(&sharded).unwrap();
    let half = n / 2;
    let mut map = serde_json::Map::new();
    for (k, part) in [&names[..half], &names[half..]].into_iter().enumerate() {
        let shard = format!("model-0000{}-of-00002.safetensors", k + 1);
        let mut h = String::from("{");
        for (i, name) in part.iter().enumerate() {
            if i > 0 {
                h.push(',');
            }
            h.push_str(&format!(
                r#""{name}":{{"dtype":"F16","shape":[1,1],"data_offsets":[{},{}]}}"#,
                2 * i,
                2 * i + 2
            ));
            map.insert(name.clone(), json!(shard));
        }
        h.push('}');
        fs::write(sharded.join(&shard), raw_file(&h, &vec![0; 2 * part.len()])).unwrap();
    }
    fs::write(sharded.join("model.safetensors.index.json"), json!({ "weight_map": map }).to_string()).unwrap();
    drop(map);
    for (what, path) in [("one file", &single), ("two shards + index", &sharded)] {
        for _ in 0..2 {
            let t = Instant::now();
            let ck = Checkpoint::open(path).unwrap();
            let opened = t.elapsed();
            let t = Instant::now();
            let plan = Quantizer::new(path, dir.path().join("out")).plan(&ck).unwrap();
            let planned = t.elapsed();
            assert_eq!((ck.names().count(), plan.targets.len()), (n, n));
            let t = Instant::now();
            drop((ck, plan));
            eprintln!("{what}: open {opened:.2?}, plan {planned:.2?}, drop {:.2?}", t.elapsed());
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 2_000, ..Default::default() })]

    /// The reader parses headers with its own visitor and checks offsets itself: it must accept
    /// exactly the files the safetensors crate accepts.
    #[test]
    fn header_checks_agree_with_safetensors(
        tensors in proptest::collection::vec((0..4usize, proptest::collection::vec(0..4usize, 0..3), 0..255u8), 0..4),
        perturb in proptest::option::of((0..4usize, proptest::bool::ANY, -2..=2i64)),
        data_delta in -1..=1i64,
        with_metadata in proptest::bool::ANY,
    ) {
        let dtypes = [("U8", 1), ("F16", 2), ("F32", 4), ("I64", 8)];
        // Data in the order of the random keys, listed in the header in index order.
        let mut order: Vec<usize> = (0..tensors.len()).collect();
        order.sort_by_key(|&i| tensors[i].2);
        let mut offsets = vec![(0i64, 0i64); tensors.len()];
        let mut end = 0i64;
        for &i in &order {
            let (d, shape, _) = &tensors[i];
            let size = (shape.iter().product::<usize>() * dtypes[*d].1) as i64;
            offsets[i] = (end, end + size);
            end += size;
        }
        if let Some((i, start, delta)) = perturb.filter(|(i, ..)| *i < tensors.len()) {
            let o = &mut offsets[i];
            if start { o.0 += delta } else { o.1 += delta }
        }
        let mut entries: Vec<String> = tensors
            .iter()
            .zip(&offsets)
            .enumerate()
            .map(|(i, ((d, shape, _), (s, e)))| {
                format!(r#""t{i}":{{"dtype":"{}","shape":{shape:?},"data_offsets":[{s},{e}]}}"#, dtypes[*d].0)
            })
            .collect();
        if with_metadata {
            entries.insert(0, r#""__metadata__":{"format":"pt"}"#.to_string());
        }
        let data_len = usize::try_from((end + data_delta).max(0)).unwrap();
        let bytes = raw_file(&format!("{{{}}}", entries.join(",")), &vec![0; data_len]);
        let theirs = safetensors::SafeTensors::deserialize(&bytes).map(|_| ()).map_err(|e| e.to_string());
        let dir = TempDir::new("header-prop");
        let file = dir.path().join("x.safetensors");
        fs::write(&file, &bytes).unwrap();
        let ours = Checkpoint::open(&file).map(|_| ()).map_err(|e| e.to_string());
        proptest::prop_assert_eq!(ours.is_ok(), theirs.is_ok(), "ours {:?}, safetensors {:?}", ours, theirs);
    }
}

#[test]
fn index_and_shards_must_agree() {
    let expect = |dir: &Path, needle: &str| {
        let e = Checkpoint::open(dir).unwrap_err();
        let Error::Index(msg) = &e else { panic!("{e:?}") };
        assert_eq!(msg, needle);
    };
    let d = TempDir::new("index-agree");
    write_sharded(d.path(), DType::F32);
    let index_path = d.path().join("model.safetensors.index.json");
    let index: serde_json::Value = serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
    let write_index = |f: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
        let mut v = index.clone();
        f(v["weight_map"].as_object_mut().unwrap());
        fs::write(&index_path, v.to_string()).unwrap();
    };
    assert!(Checkpoint::open(d.path()).is_ok());

    write_index(&|m| m["model.position_ids"] = json!("model-00002-of-00002.safetensors"));
    expect(
        d.path(),
        "`model.safetensors.index.json` lists tensor `model.position_ids` in `model-00002-of-00002.safetensors` but \
         it is in `model-00001-of-00002.safetensors`",
    );
    write_index(&|m| drop(m.remove("model.norm.weight")));
    expect(d.path(), "tensor `model.norm.weight` is in a shard but not in `model.safetensors.index.json`");
    write_index(&|m| drop(m.insert("zz.missing".into(), json!("model-00001-of-00002.safetensors"))));
    expect(
        d.path(),
        "`model.safetensors.index.json` lists tensor `zz.missing` in `model-00001-of-00002.safetensors`, which does \
         not hold it; the index and the shards do not match",
    );
    write_index(&|m| drop(m.insert("a.missing".into(), json!("model-00001-of-00002.safetensors"))));
    expect(
        d.path(),
        "`model.safetensors.index.json` lists tensor `a.missing` in `model-00001-of-00002.safetensors`, which does \
         not hold it; the index and the shards do not match",
    );

    // The same tensor in two shards, and twice in one header.
    write_index(&|_| {});
    let shard2 = d.path().join("model-00002-of-00002.safetensors");
    let mut two = model(DType::F32);
    two.retain(|(n, _)| n == "lm_head.weight" || n == "model.norm.weight");
    write_file(&shard2, &two);
    let e = Checkpoint::open(d.path()).unwrap_err();
    assert!(matches!(e, Error::Index(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "checkpoint error: tensor `model.norm.weight` is in both `{}` and `{}`",
            d.path().join("model-00001-of-00002.safetensors").display(),
            shard2.display()
        )
    );
    let one = d.path().join("one.safetensors");
    let entry = r#""a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}"#;
    fs::write(&one, raw_file(&format!("{{{entry},{}}}", entry.replace("[0,2]", "[2,4]")), &[0; 4])).unwrap();
    let e = Checkpoint::open(&one).unwrap_err();
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("checkpoint error: `{}` has a corrupt safetensors header: tensor `a` appears twice", one.display())
    );
}

#[test]
fn files_changed_after_open_are_errors_not_faults() {
    // The size is checked against the header before every read (and a short read is an error,
    // tests/checkpoint_truncation.rs), so a file truncated or extended by another program is an
    // error.
    let inp = TempDir::new("changed");
    let m = write_model(inp.path(), DType::F32);
    let file = inp.path().join("model.safetensors");
    let good = fs::read(&file).unwrap();
    let name = "model.layers.0.attn.q_proj.weight";
    let changed_size = |e: Error| {
        assert!(matches!(&e, Error::Corrupt(m) if m.contains("changed size while it was being read")), "{e:?}");
    };

    // Truncated between open and the first read.
    let ck = Checkpoint::open(inp.path()).unwrap();
    fs::write(&file, &good[..good.len() - 4]).unwrap();
    changed_size(ck.bytes(name).unwrap_err());
    changed_size(ck.tensor_f32(name).unwrap_err());
    fs::write(&file, &good).unwrap();

    // Rewritten with another header of the same size: the file's stamp (size, times) changed.
    let mut other = good.clone();
    let at = other.windows(4).position(|w| w == b"\"F32").unwrap();
    other[at + 1..at + 4].copy_from_slice(b"I32");
    let ck = Checkpoint::open(inp.path()).unwrap();
    fs::write(&file, &other).unwrap();
    let e = ck.bytes(name).unwrap_err();
    assert!(matches!(&e, Error::Corrupt(m) if m.contains("was modified while it was being read")), "{e:?}");
    fs::write(&file, &good).unwrap();

    // Truncated, then extended, after a first read: an error.
    let ck = Checkpoint::open(inp.path()).unwrap();
    let want = &m.iter().find(|(n, _)| n == name).unwrap().1.data;
    assert_eq!(ck.bytes(name).unwrap(), want.as_slice());
    fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(8).unwrap();
    changed_size(ck.bytes(name).unwrap_err());
    changed_size(ck.tensor_f32("model.norm.weight").unwrap_err());
    let mut longer = good.clone();
    longer.extend_from_slice(b"more");
    fs::write(&file, &longer).unwrap();
    changed_size(ck.bytes(name).unwrap_err());
    changed_size(ck.tensor_f32(name).unwrap_err());

    // Replaced by another file (renamed over it) after the first read: the checkpoint keeps
    // reading the file it checked.
    fs::write(&file, &good).unwrap();
    let ck = Checkpoint::open(inp.path()).unwrap();
    assert_eq!(ck.bytes(name).unwrap(), want.as_slice());
    let replacement = inp.path().join("replacement");
    fs::write(&replacement, &other).unwrap();
    fs::rename(&replacement, &file).unwrap();
    assert_eq!(ck.bytes(name).unwrap(), want.as_slice());
    assert_eq!(ck.tensor_f32(name).unwrap(), bytemuck::pod_collect_to_vec::<u8, f32>(want));
}

/// The bytes of a quantized checkpoint of the test model (`model.safetensors`, `config.json`),
/// made once: the starting point of the mutation test.
fn quantized_files() -> &'static (Vec<u8>, Vec<u8>) {
    static FILES: std::sync::OnceLock<(Vec<u8>, Vec<u8>)> = std::sync::OnceLock::new();
    FILES.get_or_init(|| {
        let (inp, out) = (TempDir::new("mut-in"), TempDir::new("mut-out"));
        write_model(inp.path(), DType::BF16);
        let dest = out.path().join("q");
        quantizer(inp.path(), &dest, QuantScheme::asymmetric(Granularity::PerGroup { size: 5 })).run().unwrap();
        (fs::read(dest.join("model.safetensors")).unwrap(), fs::read(dest.join("config.json")).unwrap())
    })
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 2_000, ..Default::default() })]

    /// A fuzz test of the reader: a quantized file with bytes changed (in the header or the
    /// data), cut short or extended either opens and reads back, or is an error; it never
    /// panics, hangs or reads outside the file.
    #[test]
    fn mutated_files_are_read_or_refused_never_a_panic(
        edits in proptest::collection::vec((proptest::bool::weighted(0.2), 0..1_000_000usize, 0..=255u8), 0..4),
        cut in proptest::option::weighted(0.1, 1..64usize),
        extend in proptest::option::weighted(0.1, 1..8usize),
    ) {
        let (file, config) = quantized_files();
        let header_end = 8 + u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
        let mut bytes = file.clone();
        for &(in_header, at, value) in &edits {
            let at = if in_header { at % header_end } else { header_end + at % (bytes.len() - header_end) };
            bytes[at] = value;
        }
        if let Some(cut) = cut {
            bytes.truncate(bytes.len() - cut);
        }
        bytes.extend(std::iter::repeat_n(0u8, extend.unwrap_or(0)));
        let dir = TempDir::new("mutated");
        fs::write(dir.path().join("model.safetensors"), &bytes).unwrap();
        fs::write(dir.path().join("config.json"), config).unwrap();
        let Ok(ck) = Checkpoint::open(dir.path()) else { return Ok(()) };
        for (name, info) in ck.tensors() {
            let b = ck.bytes(name).unwrap();
            proptest::prop_assert_eq!(b.len(), info.nbytes());
            if info.float_dtype().is_some() {
                proptest::prop_assert_eq!(ck.tensor_f32(name).unwrap().len(), info.numel());
            }
        }
        for layer in ck.quantized_layers() {
            if let Ok(q) = ck.quantized_tensor(&layer) {
                let [out, inn] = ck.quantized_layer_info(&layer).unwrap().shape;
                proptest::prop_assert_eq!(q.numel(), out * inn);
            }
        }
    }
}
