//! The real SmolLM2-135M-Instruct GGUF (Q4_1 linear layers, a Q8_0 token embedding, F32
//! norms) read through `int8_wgpu::gguf`: tensors, hyper-parameters, tokenizer, and the Q8_0
//! embedding against the formula `d · q` computed here from the raw bytes.
//!
//! The file comes from `scripts/fetch-smollm2.sh` (cached in
//! `${INT8_WGPU_CACHE:-$HOME/.cache/int8-wgpu}`). Without it the tests fail under `CI=true`
//! and are skipped elsewhere.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use half::f16;
use int8_wgpu::gguf::{GgmlType, Gguf};

fn model() -> Option<&'static Gguf> {
    static MODEL: OnceLock<Option<Gguf>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let cache = std::env::var_os("INT8_WGPU_CACHE").map(PathBuf::from).unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/int8-wgpu")
            });
            let path = cache.join("SmolLM2-135M-Instruct.Q4_1.gguf");
            if !path.exists() {
                assert!(
                    std::env::var("CI").is_err(),
                    "CI=true and no {}: run scripts/fetch-smollm2.sh",
                    path.display()
                );
                eprintln!("skipped: no {} (run scripts/fetch-smollm2.sh)", path.display());
                return None;
            }
            Some(Gguf::open(&path).expect("the SmolLM2 GGUF reads"))
        })
        .as_ref()
}

#[test]
fn tensors_and_their_types() {
    let Some(g) = model() else { return };
    assert_eq!(g.version(), 3);
    let mut by_type = BTreeMap::new();
    for t in g.tensors() {
        *by_type.entry(t.ggml_type().name()).or_insert(0) += 1;
    }
    assert_eq!(by_type, BTreeMap::from([("F32", 61), ("Q4_1", 210), ("Q8_0", 1)]));
    let emb = g.tensor("token_embd.weight").unwrap();
    assert_eq!((emb.ggml_type(), emb.dims(), emb.shape()), (GgmlType::Q8_0, &[576, 49152][..], &[49152, 576][..]));
    let q = g.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!((q.ggml_type(), q.shape()), (GgmlType::Q4_1, &[576, 576][..]));
    assert_eq!(g.tensor("blk.0.attn_k.weight").unwrap().shape(), [192, 576]);
    assert_eq!(g.tensor("blk.0.ffn_gate.weight").unwrap().shape(), [1536, 576]);
    assert_eq!(g.tensor("blk.0.ffn_down.weight").unwrap().shape(), [576, 1536]);
    assert_eq!(g.tensor("output_norm.weight").unwrap().shape(), [576]);
    // The output projection is tied to the embedding.
    assert!(g.tensor("output.weight").is_err());
    // Every tensor decodes.
    for t in g.tensors() {
        let v = g.tensor_f32(t.name()).unwrap();
        assert_eq!(v.len(), t.numel(), "{}", t.name());
        assert!(v.iter().all(|x| x.is_finite()), "{}", t.name());
    }
}

#[test]
fn hyper_parameters() {
    let Some(g) = model() else { return };
    let p = g.llama_params().unwrap();
    assert_eq!(
        (p.block_count, p.embedding_length, p.feed_forward_length, p.head_count, p.head_count_kv),
        (30, 576, 1536, 9, 3)
    );
    assert_eq!((p.rope_freq_base, p.rms_norm_eps, p.vocab_size, p.rope_dimension_count), (100000.0, 1e-5, 49152, 64));
    assert_eq!(p.context_length, 8192);
}

#[test]
fn tokenizer() {
    let Some(g) = model() else { return };
    let t = g.tokenizer().unwrap();
    assert_eq!((t.model, t.pre), ("gpt2", Some("smollm")));
    assert_eq!((t.tokens.len(), t.merges.len()), (49152, 48900));
    assert_eq!((t.bos, t.eos, t.unknown, t.padding, t.add_bos), (Some(1), Some(2), Some(0), Some(2), Some(false)));
    assert_eq!(t.token_types.as_ref().map(Vec::len), Some(49152));
    assert_eq!(t.tokens[1], "<|im_start|>");
    assert_eq!(t.tokens[2], "<|im_end|>");
    assert!(t.chat_template.is_some_and(|c| c.contains("<|im_start|>")));
}

/// The Q8_0 embedding as int8 weights dequantizes to `d · q` of the raw blocks, bit for bit.
#[test]
fn q8_0_embedding_is_d_times_q() {
    let Some(g) = model() else { return };
    let raw = g.tensor_bytes("token_embd.weight").unwrap();
    let q = g.tensor_q8_0("token_embd.weight").unwrap();
    assert_eq!(q.shape(), [49152, 576]);
    // Every block is inside the scale contract as stored: the scales are the blocks' d.
    let d: Vec<f32> = raw.chunks_exact(34).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect();
    assert_eq!(q.scales(), d);
    let deq = q.dequantize();
    let expected: Vec<f32> = raw
        .chunks_exact(34)
        .flat_map(|b| {
            let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
            b[2..].iter().map(move |&x| f32::from(x as i8) * d)
        })
        .collect();
    assert_eq!(deq.len(), expected.len());
    let differ = deq.iter().zip(&expected).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
    assert_eq!(differ, 0, "elements whose bits differ from d * q");
    assert_eq!(
        g.tensor_f32("token_embd.weight").unwrap().iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        expected.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    );
}
