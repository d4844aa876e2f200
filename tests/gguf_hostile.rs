//! Hostile GGUF files: every truncation of a small file, huge counts, lengths and dimensions,
//! offsets past the end or misaligned, overlaps, names and keys given twice, unknown types, and
//! a deterministic fuzz of a valid file's bytes: each is an error naming the problem, never a
//! panic or an allocation the file's bytes cannot back.

mod gguf_support;

use gguf_support::*;
use half::f16;
use int8_wgpu::Error;
use int8_wgpu::gguf::{Gguf, Value};
use proptest::prelude::*;

/// A small file with metadata of several types and one tensor of each decoded type.
fn small() -> Vec<u8> {
    Writer::new()
        .kv("general.architecture", Value::String("llama".into()))
        .kv("llama.block_count", Value::U32(1))
        .kv("tokenizer.ggml.tokens", Value::Array(vec![Value::String("a".into()), Value::String("bc".into())]))
        .kv("f", Value::F64(0.5))
        .tensor("q8", &[32, 2], Q8_0, [q8_0_block(f16::ONE, &[1; 32]), q8_0_block(f16::ZERO, &[-1; 32])].concat())
        .tensor("q4", &[32], Q4_1, q4_1_block(f16::ONE, f16::ONE, &[3; 32]))
        .tensor("q40", &[32], Q4_0, q4_0_block(f16::ONE, &[3; 32]))
        .tensor("f32", &[3], F32, f32s(&[1.0, 2.0, 3.0]))
        .tensor("f16", &[1], F16, f16::ONE.to_le_bytes().to_vec())
        .bytes()
}

/// Whatever `bytes` are, reading them and everything in them returns without panicking.
fn read_everything(bytes: Vec<u8>) -> Result<(), Error> {
    let g = Gguf::from_bytes(bytes)?;
    for t in g.tensors() {
        let _ = g.tensor_f32(t.name()).map(|v| assert_eq!(v.len(), t.numel()));
        let _ = g.tensor_q8_0(t.name());
    }
    let _ = g.tokenizer();
    let _ = g.llama_params();
    Ok(())
}

#[test]
fn the_small_file_reads() {
    read_everything(small()).unwrap();
    let g = Gguf::from_bytes(small()).unwrap();
    assert_eq!(g.tensor_f32("q4").unwrap(), [4.0; 32]);
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = small();
    for n in 0..bytes.len() {
        match Gguf::from_bytes(bytes[..n].to_vec()) {
            Err(Error::Corrupt(m)) => assert!(m.contains("GGUF"), "{n}: {m}"),
            other => panic!("{n} of {} bytes: {other:?}", bytes.len()),
        }
    }
}

/// The header of a file, then `rest`.
fn file(n_tensors: u64, n_kv: u64, rest: &[u8]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(n_tensors.to_le_bytes());
    b.extend(n_kv.to_le_bytes());
    b.extend(rest);
    b.resize(b.len() + 64, 0); // some bytes left, so counts are checked against them
    b
}

fn corrupt(bytes: Vec<u8>, needle: &str) {
    match Gguf::from_bytes(bytes) {
        Err(Error::Corrupt(m)) => assert!(m.contains(needle), "`{needle}` not in: {m}"),
        other => panic!("expected Corrupt({needle}), got {other:?}"),
    }
}

fn unsupported(bytes: Vec<u8>, needle: &str) {
    match Gguf::from_bytes(bytes) {
        Err(Error::Unsupported(m)) => assert!(m.contains(needle), "`{needle}` not in: {m}"),
        other => panic!("expected Unsupported({needle}), got {other:?}"),
    }
}

fn kv(key: &str, ty: u32, value: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    string(&mut b, key);
    b.extend(ty.to_le_bytes());
    b.extend(value);
    b
}

#[test]
fn huge_counts_and_lengths() {
    corrupt(file(u64::MAX, 0, &[]), "tensor infos");
    corrupt(file(0, u64::MAX, &[]), "metadata entries");
    corrupt(file(0, 1 << 40, &[]), "metadata entries");
    // A key, a string value and an array claiming more than the file holds.
    let mut key = u64::MAX.to_le_bytes().to_vec();
    key.extend(b"k");
    corrupt(file(0, 1, &key), "the key of metadata entry 0");
    corrupt(file(0, 1, &kv("k", 8, &u64::MAX.to_le_bytes())), "`k`");
    let array = |ty: u32, n: u64| [ty.to_le_bytes().to_vec(), n.to_le_bytes().to_vec()].concat();
    corrupt(file(0, 1, &kv("k", 9, &array(8, u64::MAX))), "claims");
    corrupt(file(0, 1, &kv("k", 9, &array(0, 1 << 33))), "claims");
    unsupported(file(0, 1, &kv("k", 9, &array(9, 1))), "array of arrays");
    corrupt(file(0, 1, &kv("k", 9, &array(13, 1))), "unknown element type 13");
}

#[test]
fn malformed_values() {
    corrupt(file(0, 1, &kv("k", 13, &[0; 8])), "unknown value type 13");
    corrupt(file(0, 1, &kv("k", 7, &[2])), "bool stored as 2");
    let mut bad_utf8 = 2u64.to_le_bytes().to_vec();
    bad_utf8.extend([0xff, 0xfe]);
    corrupt(file(0, 1, &kv("k", 8, &bad_utf8)), "not UTF-8");
    let twice = [kv("k", 4, &[1, 0, 0, 0]), kv("k", 4, &[2, 0, 0, 0])].concat();
    corrupt(file(0, 2, &twice), "given twice");
}

#[test]
fn bad_magic_and_versions() {
    let mut b = small();
    b[0] = b'X';
    corrupt(b, "not a GGUF file");
    for (v, needle) in [(1u32, "version 1"), (4, "version 4"), (3u32.swap_bytes(), "big-endian")] {
        let mut b = small();
        b[4..8].copy_from_slice(&v.to_le_bytes());
        unsupported(b, needle);
    }
}

fn tensor_info(name: &str, dims: &[u64], ty: u32, offset: u64) -> Vec<u8> {
    let mut b = Vec::new();
    string(&mut b, name);
    b.extend((dims.len() as u32).to_le_bytes());
    dims.iter().for_each(|d| b.extend(d.to_le_bytes()));
    b.extend(ty.to_le_bytes());
    b.extend(offset.to_le_bytes());
    b
}

#[test]
fn bad_tensor_infos() {
    corrupt(file(1, 0, &tensor_info("t", &[1, 1, 1, 1, 1], F32, 0)), "5 dimensions");
    corrupt(file(1, 0, &tensor_info("t", &[], F32, 0)), "0 dimensions");
    unsupported(file(1, 0, &tensor_info("t", &[4, 0], F32, 0)), "zero-size");
    corrupt(file(1, 0, &tensor_info("t", &[u64::MAX, 2], F32, 0)), "overflows");
    corrupt(file(1, 0, &tensor_info("t", &[1 << 32, 1 << 32], F32, 0)), "overflows");
    corrupt(file(1, 0, &tensor_info("t", &[1 << 30, 1 << 30], F32, 0)), "past the end");
    corrupt(file(1, 0, &tensor_info("t", &[33], Q8_0, 0)), "multiple of Q8_0's block of 32");
    unsupported(file(1, 0, &tensor_info("t", &[4], 4, 0)), "ggml type 4");
    unsupported(file(1, 0, &tensor_info("t", &[4], 1000, 0)), "ggml type 1000");
    corrupt(file(1, 0, &tensor_info("t", &[4], F32, 8)), "not a multiple of the alignment 32");
    corrupt(file(1, 0, &tensor_info("t", &[4], F32, u64::MAX - 31)), "past the end");
    corrupt(file(1, 0, &tensor_info("t", &[4], F32, 1 << 20)), "past the end");
    let two = [tensor_info("t", &[4], F32, 0), tensor_info("t", &[4], F32, 32)].concat();
    corrupt(file(2, 0, &two), "listed twice");
}

#[test]
fn overlapping_tensors() {
    let mut w = Writer::new().tensor("a", &[16], F32, f32s(&[0.0; 16])).tensor("b", &[16], F32, f32s(&[0.0; 16]));
    w.tensors[1].offset = Some(32);
    corrupt(w.bytes(), "overlap");
}

#[test]
fn a_huge_alignment() {
    for a in [1u32 << 31, 1 << 20] {
        let mut w = Writer::new().kv("general.alignment", Value::U32(a)).tensor("t", &[1], F32, f32s(&[1.0]));
        w.alignment = 32; // the writer pads to 32: the data section the header asks for is past the end
        corrupt(w.bytes(), "past the end");
    }
}

#[test]
fn a_file_that_ends_in_the_padding() {
    let b = Writer::new().tensor("a", &[1], F32, f32s(&[1.0])).bytes();
    let g = Gguf::from_bytes(b.clone()).unwrap();
    let start = g.data_offset() as usize;
    corrupt(b[..start].to_vec(), "past the end");
}

proptest! {
    // A fixed seed: the same 2000 files on every run, so a failure reproduces.
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(20),
        ..ProptestConfig::default()
    })]

    /// Bytes of a valid file overwritten, or the file cut: never a panic.
    #[test]
    fn mutated_files_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let mut b = small();
        for (i, v) in &edits {
            let i = i.index(b.len());
            b[i] = *v;
        }
        if do_cut {
            b.truncate(cut.index(b.len()));
        }
        let _ = read_everything(b);
    }

    /// Counts and lengths (the u64 fields) set to anything: never a panic.
    #[test]
    fn mutated_u64_fields_never_panic(at in any::<prop::sample::Index>(), v in any::<u64>()) {
        let mut b = small();
        let i = at.index(b.len() - 8);
        b[i..i + 8].copy_from_slice(&v.to_le_bytes());
        let _ = read_everything(b);
    }
}

#[cfg(feature = "files")]
mod files {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("int8-wgpu-gguf-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn open_reads_a_file_and_names_it() {
        let d = temp("open");
        let p = d.join("m.gguf");
        std::fs::write(&p, small()).unwrap();
        let g = Gguf::open(&p).unwrap();
        assert_eq!(g.tensor_f32("f32").unwrap(), [1.0, 2.0, 3.0]);
        std::fs::write(&p, &small()[..100]).unwrap();
        assert!(matches!(Gguf::open(&p), Err(Error::Corrupt(m)) if m.contains("m.gguf")));
        assert!(matches!(Gguf::open(&d), Err(Error::NotRegularFile { kind: "a folder", .. })));
        assert!(matches!(Gguf::open(d.join("absent")), Err(Error::Io { .. })));
        #[cfg(unix)]
        {
            let fifo = d.join("fifo");
            assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs").success());
            assert!(matches!(Gguf::open(&fifo), Err(Error::NotRegularFile { kind: "a FIFO", .. })));
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}
