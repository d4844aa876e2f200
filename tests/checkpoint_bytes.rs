//! Checkpoints read from bytes (`Checkpoint::from_bytes`, for browsers) against the same files
//! opened from disk: quantizer-written pack-quantized and int-quantized checkpoints give identical
//! tensors, layers and layer outputs; bad bytes give the errors a file gets, naming `<bytes>`.

mod common;

use std::fs;
use std::path::Path;

use common::TempDir;
use common::model::{quantizer, raw_file, write_model};
use int8_wgpu::checkpoint::Checkpoint;
use int8_wgpu::quantizer::Quantizer;
use int8_wgpu::{DType, Error, Gpu, Granularity, Method, QuantScheme};

/// The folder `dir` opened from disk, and its `model.safetensors` and `config.json` from bytes.
fn both(dir: &Path) -> (Checkpoint, Checkpoint) {
    let bytes = fs::read(dir.join("model.safetensors")).unwrap();
    let config = fs::read_to_string(dir.join("config.json")).unwrap();
    (Checkpoint::open(dir).unwrap(), Checkpoint::from_bytes(bytes, Some(&config)).unwrap())
}

/// Everything `file` and `mem` say is the same, bit for bit: tensors, metadata, config, method,
/// quantized layers and, on a GPU, their outputs.
fn assert_same(file: &Checkpoint, mem: &Checkpoint, gpu: Option<&Gpu>, ctx: &str) {
    assert!(file.tensors().eq(mem.tensors()), "{ctx}: tensors");
    assert_eq!((file.nbytes(), file.metadata(), file.config()), (mem.nbytes(), mem.metadata(), mem.config()), "{ctx}");
    assert_eq!(file.method(), mem.method(), "{ctx}");
    assert_eq!(file.activation_quant().unwrap(), mem.activation_quant().unwrap(), "{ctx}");
    assert_eq!(file.activation_dtype(), mem.activation_dtype(), "{ctx}");
    for (name, info) in file.tensors() {
        assert_eq!(file.bytes(name).unwrap(), mem.bytes(name).unwrap(), "{ctx}: {name}");
        if info.float_dtype().is_some() {
            let bits = |c: &Checkpoint| c.tensor_f32(name).unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(file), bits(mem), "{ctx}: {name}");
        }
    }
    let layers = file.quantized_layers();
    assert!(!layers.is_empty(), "{ctx}: no quantized layer");
    assert_eq!(layers, mem.quantized_layers(), "{ctx}");
    for p in &layers {
        assert_eq!(file.quantized_layer_info(p).unwrap(), mem.quantized_layer_info(p).unwrap(), "{ctx}: {p}");
        assert_eq!(file.quantized_tensor(p).unwrap(), mem.quantized_tensor(p).unwrap(), "{ctx}: {p}");
        let Some(gpu) = gpu else { continue };
        let k = file.quantized_layer_info(p).unwrap().shape[1];
        let x = common::rand_vec(3 * k, k as u64);
        let run = |c: &Checkpoint| {
            let y = c.linear_with(gpu, p, DType::F32).unwrap().forward_host(&x, &[3, k]).unwrap();
            y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        assert_eq!(run(file), run(mem), "{ctx}: {p} outputs");
        let (lf, lm) = (file.linear(gpu, p).unwrap(), mem.linear(gpu, p).unwrap());
        assert_eq!((lf.activation_dtype(), lf.activation_quant()), (lm.activation_dtype(), lm.activation_quant()));
    }
}

#[test]
fn quantized_checkpoints_read_the_same_from_bytes_as_from_files() {
    let gpu = common::gpu();
    let (inp, out) = (TempDir::new("by-in"), TempDir::new("by-out"));
    // pack-quantized: asymmetric groups (zero points) in bf16, symmetric channels in f32.
    for (dtype, scheme) in [
        (DType::BF16, QuantScheme::asymmetric(Granularity::PerGroup { size: 5 })),
        (DType::F32, QuantScheme::default()),
    ] {
        write_model(inp.path(), dtype);
        let dest = out.path().join(format!("{dtype}"));
        quantizer(inp.path(), &dest, scheme).run().unwrap();
        let (file, mem) = both(&dest);
        assert_same(&file, &mem, gpu.as_ref(), &format!("pack-quantized {dtype} {scheme:?}"));
        assert_eq!((mem.path(), mem.files()), (Path::new("<bytes>"), vec![Path::new("<bytes>")]));
        assert_eq!((mem.folder(), mem.is_sharded(), mem.unlisted_files().len()), (None, false, 0));
    }
    // int-quantized W8A8 (int8 activations) and LLM.int8().
    let a8 = TempDir::new("by-a8");
    common::a8_model::write_model(a8.path(), DType::BF16);
    for method in [Method::W8A8, Method::LlmInt8] {
        let dest = out.path().join(method.to_string());
        Quantizer::new(a8.path(), &dest).method(method).cpu().eval_rows(2).run().unwrap();
        let (file, mem) = both(&dest);
        assert!(mem.activation_quant().unwrap().is_some());
        assert_same(&file, &mem, gpu.as_ref(), &format!("{method}"));
    }
}

#[test]
fn bad_bytes_give_the_errors_a_file_gives() {
    let (inp, out) = (TempDir::new("bad-by-in"), TempDir::new("bad-by-out"));
    write_model(inp.path(), DType::F32);
    let q = out.path().join("q");
    quantizer(inp.path(), &q, QuantScheme::default()).run().unwrap();
    let good = fs::read(q.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let mut bad: Vec<(&str, Vec<u8>)> = [0, 5, 8, 100, good.len() - 10, good.len() - 1]
        .into_iter()
        .map(|len| ("truncated", good[..len].to_vec()))
        .collect();
    let mut junk = good.clone();
    junk.extend_from_slice(b"junk");
    bad.push(("trailing bytes", junk));
    let mut garbage = good.clone();
    garbage[8..20].copy_from_slice(b"not json at ");
    bad.push(("bad header", garbage));
    bad.push(("implausible header length", u64::MAX.to_le_bytes().to_vec()));
    let mut long = good.clone();
    long[..8].copy_from_slice(&(n as u64 + good.len() as u64).to_le_bytes());
    bad.push(("header past the end", long));
    bad.push(("offsets past the end", raw_file(r#"{"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, &[0; 8])));
    bad.push(("offsets that overlap", raw_file(
        r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}"#,
        &[0; 6],
    )));
    bad.push((
        "shape and offsets disagree",
        raw_file(r#"{"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, &[0; 8]),
    ));
    let file = out.path().join("bad.safetensors");
    let mut kinds = Vec::new();
    for (what, bytes) in bad {
        fs::write(&file, &bytes).unwrap();
        let from_file = Checkpoint::open(&file).unwrap_err();
        let from_bytes = Checkpoint::from_bytes(bytes, None).unwrap_err();
        assert!(matches!(from_bytes, Error::Corrupt(_)), "{what}: {from_bytes:?}");
        assert_eq!(std::mem::discriminant(&from_file), std::mem::discriminant(&from_bytes), "{what}");
        let named = from_file.to_string().replace(&file.display().to_string(), "<bytes>");
        assert_eq!(named, from_bytes.to_string(), "{what}");
        kinds.push(what);
    }
    assert_eq!(kinds.len(), 13);
    // A config.json that is not an object: the same error as the file's, naming the text.
    fs::write(q.join("config.json"), "[1]").unwrap();
    let from_file = Checkpoint::open(&q).unwrap_err();
    let from_bytes = Checkpoint::from_bytes(good, Some("[1]")).unwrap_err();
    let config = q.join("config.json").display().to_string();
    assert_eq!(from_file.to_string().replace(&config, "<config.json text>"), from_bytes.to_string());
}
