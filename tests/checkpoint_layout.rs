//! The compressed-tensors layout our checkpoints are written in, on the synthetic model: tensor
//! dtypes and shapes, config, round trips to the in-memory quantization, zero-point layouts.

mod common;

use std::fs;

use common::TempDir;
use common::model::*;
use int8_wgpu::checkpoint::{self, Checkpoint, TensorDtype};
use int8_wgpu::Method;
use int8_wgpu::{DType, Granularity, QuantScheme};
use serde_json::json;

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
