//! Safetensors headers as the reader checks them: offsets near usize::MAX, agreement with the
//! safetensors crate, mutated files read or refused (never a panic), and a huge header's timing.

mod common;

use std::fs;

use common::TempDir;
use common::model::*;
use int8_wgpu::checkpoint::Checkpoint;
use int8_wgpu::quantizer::Inspection;
use int8_wgpu::{DType, Error, Granularity, QuantScheme};
use serde_json::json;

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

/// Times `Checkpoint::open` and `Inspection::new` on a ~98 MB header of 1.2 M tiny tensors, as one
/// file and as two shards with an index. A measurement, not a check: run it on purpose with
/// `cargo test --release --test checkpoint_headers -- --ignored --nocapture open_timing`.
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
            let inspection = Inspection::new(&ck).unwrap();
            let inspected = t.elapsed();
            assert_eq!(ck.names().count(), n);
            let t = Instant::now();
            drop((ck, inspection));
            eprintln!("{what}: open {opened:.2?}, inspect {inspected:.2?}, drop {:.2?}", t.elapsed());
        }
    }
}
