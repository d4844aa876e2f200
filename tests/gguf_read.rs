//! GGUF files made by the test-side writer (`gguf_support`): every metadata value type, every
//! tensor type the library decodes with known values, the edge blocks of Q8_0, the tokenizer
//! and the Llama hyper-parameters.

mod gguf_support;

use gguf_support::*;
use half::{bf16, f16};
use int8_wgpu::gguf::{GgmlType, Gguf, Value};
use int8_wgpu::{Error, Granularity, QuantScheme};

fn s(x: &str) -> Value {
    Value::String(x.into())
}

fn every_value() -> Vec<(&'static str, Value)> {
    vec![
        ("u8", Value::U8(200)),
        ("i8", Value::I8(-100)),
        ("u16", Value::U16(60000)),
        ("i16", Value::I16(-30000)),
        ("u32", Value::U32(4_000_000_000)),
        ("i32", Value::I32(-2_000_000_000)),
        ("f32", Value::F32(-1.5e-7)),
        ("bool", Value::Bool(true)),
        ("string", s("héllo ✓")),
        ("empty string", s("")),
        ("u64", Value::U64(u64::MAX)),
        ("i64", Value::I64(i64::MIN)),
        ("f64", Value::F64(std::f64::consts::PI)),
        ("strings", Value::Array(vec![s("a b"), s(""), s("Ġthe")])),
        ("u8s", Value::Array(vec![Value::U8(1), Value::U8(255)])),
        ("i32s", Value::Array(vec![Value::I32(-1), Value::I32(7)])),
        ("f32s", Value::Array(vec![Value::F32(0.5), Value::F32(-0.0)])),
        ("bools", Value::Array(vec![Value::Bool(false), Value::Bool(true)])),
        ("f64s", Value::Array(vec![Value::F64(1e300)])),
        ("empty", Value::Array(vec![])),
    ]
}

#[test]
fn every_metadata_value_type_reads_back() {
    for version in [2, 3] {
        let mut w = Writer::new();
        w.version = version;
        for (k, v) in every_value() {
            w = w.kv(k, v);
        }
        let g = Gguf::from_bytes(w.bytes()).unwrap();
        assert_eq!(g.version(), version);
        let read: Vec<(&str, Value)> = g.metadata().map(|(k, v)| (k, v.clone())).collect();
        assert_eq!(read, every_value());
        assert_eq!(g.u32("u8").unwrap(), 200);
        assert_eq!(g.u32("u32").unwrap(), 4_000_000_000);
        assert_eq!(g.u64("u64").unwrap(), u64::MAX);
        assert_eq!(g.f32("f32").unwrap(), -1.5e-7);
        assert!(g.bool("bool").unwrap());
        assert_eq!(g.string("string").unwrap(), "héllo ✓");
        assert_eq!(g.strings("strings").unwrap(), ["a b", "", "Ġthe"]);
        assert_eq!(g.integers("i32s").unwrap(), [-1, 7]);
        assert_eq!(g.array("empty").unwrap(), []);
        // Out of range, another type, missing.
        assert!(matches!(g.u32("i8"), Err(Error::Corrupt(m)) if m.contains("`i8`")));
        assert!(matches!(g.u32("u64"), Err(Error::Corrupt(_))));
        assert!(matches!(g.f32("f64"), Err(Error::Corrupt(_))));
        assert!(matches!(g.string("u8"), Err(Error::Corrupt(_))));
        assert!(matches!(g.strings("u8s"), Err(Error::Corrupt(_))));
        assert!(matches!(g.u32("strings"), Err(Error::Corrupt(m)) if m.contains("array of 3 string")));
        assert!(matches!(g.u32("absent"), Err(Error::NotFound(m)) if m.contains("`absent`")));
    }
}

/// Q8_0 blocks: an ordinary one, `d = 0` with nonzero ints, a subnormal f16 `d`, a negative
/// `d`, the largest f16 `d`, a negative zero `d`.
fn q8_0_blocks() -> Vec<(f16, [i8; 32])> {
    let ramp: [i8; 32] = std::array::from_fn(|j| (j as i8 - 16) * 8 + 1);
    let mut extremes = ramp;
    extremes[0] = -128;
    extremes[1] = 127;
    vec![
        (f16::from_f32(0.0123), extremes),
        (f16::ZERO, ramp),
        (f16::from_bits(0x0003), extremes), // 3 · 2⁻²⁴, subnormal in f16, normal in f32
        (f16::from_f32(-0.75), ramp),
        (f16::MAX, extremes),
        (f16::NEG_ZERO, ramp),
    ]
}

/// llama.cpp's `dequantize_row_q8_0`: `y = qs[j] * d`, in f32.
fn q8_0_formula(blocks: &[(f16, [i8; 32])]) -> Vec<f32> {
    blocks.iter().flat_map(|(d, qs)| qs.iter().map(move |&q| q as f32 * d.to_f32())).collect()
}

#[test]
fn q8_0_loads_without_requantizing() {
    let blocks = q8_0_blocks();
    let data: Vec<u8> = blocks.iter().flat_map(|(d, q)| q8_0_block(*d, q)).collect();
    let g = Gguf::from_bytes(Writer::new().tensor("w", &[64, 3], Q8_0, data).bytes()).unwrap();
    let t = g.tensor("w").unwrap();
    assert_eq!((t.dims(), t.shape(), t.ggml_type()), (&[64, 3][..], &[3, 64][..], GgmlType::Q8_0));
    let q = g.tensor_q8_0("w").unwrap();
    assert_eq!(q.shape(), [3, 64]);
    assert_eq!(q.scheme(), QuantScheme::symmetric(Granularity::PerGroup { size: 32 }));
    // Scales: d widened, 1 for the zero blocks, |d| for the negative one.
    let d: Vec<f32> = blocks.iter().map(|b| b.0.to_f32()).collect();
    assert_eq!(q.scales(), [d[0], 1.0, d[2], 0.75, 65504.0, 1.0]);
    assert_eq!(d[2], 3.0 * 2f32.powi(-24));
    // Ints as stored, 0 in the zero blocks, negated in the negative one.
    assert_eq!(q.values()[..32], blocks[0].1);
    assert!(q.values()[32..64].iter().all(|&v| v == 0));
    assert_eq!(q.values()[96..128], blocks[3].1.map(|v| -v));
    // Every value equals llama.cpp's, bit for bit except the sign of zeros in the zero blocks.
    let (expected, got) = (q8_0_formula(&blocks), q.dequantize());
    for (i, (e, g)) in expected.iter().zip(&got).enumerate() {
        let zero_block = matches!(i / 32, 1 | 5);
        assert!(if zero_block { e == g } else { e.to_bits() == g.to_bits() }, "element {i}: {g} != {e}");
    }
    // tensor_f32 is the formula itself, bit for bit.
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&g.tensor_f32("w").unwrap()), bits(&expected));
}

#[test]
fn q8_0_blocks_outside_the_scale_contract() {
    let one = |d: f16, q: [i8; 32]| Writer::new().tensor("w", &[32], Q8_0, q8_0_block(d, &q)).bytes();
    let mut q = [3i8; 32];
    q[5] = -128;
    let g = Gguf::from_bytes(one(f16::from_f32(-0.5), q)).unwrap();
    assert!(matches!(g.tensor_q8_0("w"), Err(Error::Unsupported(m)) if m.contains("-128") && m.contains("`w`")));
    for d in [f16::INFINITY, f16::NAN] {
        let g = Gguf::from_bytes(one(d, [1; 32])).unwrap();
        assert!(matches!(g.tensor_q8_0("w"), Err(Error::Corrupt(m)) if m.contains("block 0")));
    }
    // Asked as int8, a float tensor is refused by name.
    let g = Gguf::from_bytes(Writer::new().tensor("f", &[2], F32, f32s(&[1.0, 2.0])).bytes()).unwrap();
    assert!(matches!(g.tensor_q8_0("f"), Err(Error::Unsupported(m)) if m.contains("F32")));
}

#[test]
fn float_tensors_widen_exactly() {
    let x = [1.5f32, -2.0, 1e-30, f32::MAX, -0.0, 0.1];
    let h = [f16::from_f32(0.1), f16::from_bits(1), f16::MAX, f16::NEG_ZERO];
    let b = [bf16::from_f32(0.1), bf16::from_bits(0x0001), bf16::MIN, bf16::from_f32(-3.0)];
    let g = Gguf::from_bytes(
        Writer::new()
            .tensor("f32", &[3, 2], F32, f32s(&x))
            .tensor("f16", &[4], F16, h.iter().flat_map(|v| v.to_le_bytes()).collect())
            .tensor("bf16", &[2, 2], BF16, b.iter().flat_map(|v| v.to_le_bytes()).collect())
            .bytes(),
    )
    .unwrap();
    let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(g.tensor_f32("f32").unwrap()), bits(x.to_vec()));
    assert_eq!(g.tensor("f32").unwrap().shape(), [2, 3]);
    assert_eq!(bits(g.tensor_f32("f16").unwrap()), bits(h.iter().map(|v| v.to_f32()).collect()));
    assert_eq!(bits(g.tensor_f32("bf16").unwrap()), bits(b.iter().map(|v| v.to_f32()).collect()));
    assert_eq!(g.tensor_bytes("f16").unwrap().len(), 8);
    // In their own dtype, bit for bit; asked in another, an error.
    assert_eq!(bits(g.tensor_float::<f32>("f32").unwrap()), bits(x.to_vec()));
    assert_eq!(
        g.tensor_float::<f16>("f16").unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        h.map(|v| v.to_bits())
    );
    assert_eq!(
        g.tensor_float::<bf16>("bf16").unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.map(|v| v.to_bits())
    );
    assert!(matches!(g.tensor_float::<f32>("f16"), Err(Error::DType { .. })));
}

#[test]
fn q4_0_and_q4_1_dequantize_as_llama_cpp() {
    let q: [u8; 32] = std::array::from_fn(|j| (j * 7 % 16) as u8);
    let (d, m) = (f16::from_f32(0.37), f16::from_f32(-1.21));
    let data0 = [q4_0_block(d, &q), q4_0_block(f16::from_f32(-2.0), &[15; 32])].concat();
    let data1 = [q4_1_block(d, m, &q), q4_1_block(f16::ZERO, f16::from_f32(0.5), &[9; 32])].concat();
    let g =
        Gguf::from_bytes(Writer::new().tensor("q40", &[32, 2], Q4_0, data0).tensor("q41", &[64], Q4_1, data1).bytes())
            .unwrap();
    let (df, mf) = (d.to_f32(), m.to_f32());
    let mut e0: Vec<f32> = q.iter().map(|&v| (v as i32 - 8) as f32 * df).collect();
    e0.extend([-14.0f32; 32]);
    let mut e1: Vec<f32> = q.iter().map(|&v| v as f32 * df + mf).collect();
    e1.extend([0.5f32; 32]);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&g.tensor_f32("q40").unwrap()), bits(&e0));
    assert_eq!(bits(&g.tensor_f32("q41").unwrap()), bits(&e1));
    // A hand-checked value: element 1 holds nibble 7, so (7 - 8) · d = -d.
    assert_eq!(g.tensor_f32("q40").unwrap()[1], -df);
}

#[test]
fn other_types_parse_and_are_refused_by_name() {
    let g = Gguf::from_bytes(Writer::new().tensor("k", &[256], Q6_K, vec![0; 210]).bytes()).unwrap();
    assert_eq!(g.tensor("k").unwrap().ggml_type().name(), "Q6_K");
    assert!(matches!(g.tensor_f32("k"), Err(Error::Unsupported(m)) if m.contains("Q6_K") && m.contains("`k`")));
    assert!(matches!(g.tensor_f32("nope"), Err(Error::NotFound(m)) if m.contains("`nope`")));
    assert!(matches!(g.tensor_float::<f32>("k"), Err(Error::Unsupported(m)) if m.contains("Q6_K")));
}

#[test]
fn alignment_places_the_data() {
    let mut w = Writer::new().kv("general.alignment", Value::U32(64));
    w.alignment = 64;
    let w = w.tensor("a", &[3], F32, f32s(&[1.0, 2.0, 3.0])).tensor("b", &[1], F32, f32s(&[4.0]));
    let g = Gguf::from_bytes(w.bytes()).unwrap();
    assert_eq!((g.alignment(), g.data_offset() % 64), (64, 0));
    assert_eq!(g.tensor("b").unwrap().offset(), g.data_offset() + 64);
    assert_eq!(g.tensor_f32("b").unwrap(), [4.0]);
    for bad in [Value::U32(0), Value::U32(48), Value::U64(64)] {
        let e = Gguf::from_bytes(Writer::new().kv("general.alignment", bad).bytes()).unwrap_err();
        assert!(matches!(e, Error::Corrupt(ref m) if m.contains("general.alignment")), "{e}");
    }
}

fn llama_file(skip: &str) -> Vec<u8> {
    let keys = [
        ("general.architecture", s("llama")),
        ("llama.block_count", Value::U32(2)),
        ("llama.context_length", Value::U32(128)),
        ("llama.embedding_length", Value::U32(64)),
        ("llama.feed_forward_length", Value::U32(96)),
        ("llama.attention.head_count", Value::U32(4)),
        ("llama.attention.head_count_kv", Value::U32(2)),
        ("llama.rope.freq_base", Value::F32(100000.0)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("tokenizer.ggml.model", s("gpt2")),
        ("tokenizer.ggml.pre", s("smollm")),
        ("tokenizer.ggml.tokens", Value::Array(vec![s("<s>"), s("</s>"), s("a"), s("b"), s("ab")])),
        ("tokenizer.ggml.merges", Value::Array(vec![s("a b")])),
        (
            "tokenizer.ggml.token_type",
            Value::Array(vec![Value::I32(3), Value::I32(3), Value::I32(1), Value::I32(1), Value::I32(1)]),
        ),
        ("tokenizer.ggml.bos_token_id", Value::U32(0)),
        ("tokenizer.ggml.eos_token_id", Value::U32(1)),
        ("tokenizer.chat_template", s("{{ messages }}")),
    ];
    let mut w = Writer::new();
    for (k, v) in keys.into_iter().filter(|(k, _)| *k != skip) {
        w = w.kv(k, v);
    }
    w.bytes()
}

#[test]
fn llama_params_and_tokenizer() {
    let g = Gguf::from_bytes(llama_file("")).unwrap();
    let p = g.llama_params().unwrap();
    assert_eq!((p.block_count, p.embedding_length, p.feed_forward_length), (2, 64, 96));
    assert_eq!((p.head_count, p.head_count_kv, p.rope_dimension_count), (4, 2, 16));
    assert_eq!((p.rope_freq_base, p.rms_norm_eps, p.context_length, p.vocab_size), (100000.0, 1e-5, 128, 5));
    let t = g.tokenizer().unwrap();
    assert_eq!((t.model, t.pre, t.bos, t.eos, t.unknown), ("gpt2", Some("smollm"), Some(0), Some(1), None));
    assert_eq!((t.tokens, t.merges), (vec!["<s>", "</s>", "a", "b", "ab"], vec!["a b"]));
    assert_eq!(t.token_types, Some(vec![3, 3, 1, 1, 1]));
    assert_eq!(t.chat_template, Some("{{ messages }}"));
    // Optional keys take llama.cpp's defaults.
    let g = Gguf::from_bytes(llama_file("llama.rope.freq_base")).unwrap();
    assert_eq!(g.llama_params().unwrap().rope_freq_base, 10000.0);
    let g = Gguf::from_bytes(llama_file("llama.attention.head_count_kv")).unwrap();
    assert_eq!(g.llama_params().unwrap().head_count_kv, 4);
    // Required ones are named when missing.
    for key in [
        "llama.block_count",
        "llama.embedding_length",
        "llama.attention.layer_norm_rms_epsilon",
        "general.architecture",
    ] {
        let g = Gguf::from_bytes(llama_file(key)).unwrap();
        assert!(matches!(g.llama_params(), Err(Error::NotFound(m)) if m.contains(key)), "{key}");
    }
    let g = Gguf::from_bytes(llama_file("tokenizer.ggml.tokens")).unwrap();
    assert!(matches!(g.tokenizer(), Err(Error::NotFound(m)) if m.contains("tokenizer.ggml.tokens")));
}

#[test]
fn tokenizer_special_ids_name_a_token() {
    let w = Writer::new()
        .kv("tokenizer.ggml.model", s("gpt2"))
        .kv("tokenizer.ggml.tokens", Value::Array(vec![s("a")]))
        .kv("tokenizer.ggml.eos_token_id", Value::U32(1));
    let g = Gguf::from_bytes(w.bytes()).unwrap();
    assert!(matches!(g.tokenizer(), Err(Error::Corrupt(m)) if m.contains("eos_token_id")));
}

#[test]
fn another_architecture_is_unsupported() {
    let g = Gguf::from_bytes(Writer::new().kv("general.architecture", s("gpt2")).bytes()).unwrap();
    assert!(matches!(g.llama_params(), Err(Error::Unsupported(m)) if m.contains("gpt2")));
}
