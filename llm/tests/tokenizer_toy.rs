//! `Tokenizer::from_gguf` on small GGUF files written here: a toy byte-level BPE (all 256
//! bytes, four merges, three control tokens) that needs no model file, and the metadata it
//! refuses, each with an error naming the problem.

use int8_wgpu::gguf::Gguf;
use int8_wgpu_llm::Tokenizer;

/// A metadata value of the toy files.
enum V {
    Str(&'static str),
    U32(u32),
    Bool(bool),
    Strs(Vec<String>),
    I32s(Vec<i32>),
}

/// A GGUF v3 file with these metadata entries and no tensors.
fn gguf(kvs: &[(&str, V)]) -> Gguf {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend(0u64.to_le_bytes());
    out.extend((kvs.len() as u64).to_le_bytes());
    for (key, v) in kvs {
        string(&mut out, key);
        match v {
            V::Str(s) => {
                out.extend(8u32.to_le_bytes());
                string(&mut out, s);
            }
            V::U32(x) => {
                out.extend(4u32.to_le_bytes());
                out.extend(x.to_le_bytes());
            }
            V::Bool(b) => {
                out.extend(7u32.to_le_bytes());
                out.push(u8::from(*b));
            }
            V::Strs(a) => {
                out.extend(9u32.to_le_bytes());
                out.extend(8u32.to_le_bytes());
                out.extend((a.len() as u64).to_le_bytes());
                a.iter().for_each(|s| string(&mut out, s));
            }
            V::I32s(a) => {
                out.extend(9u32.to_le_bytes());
                out.extend(5u32.to_le_bytes());
                out.extend((a.len() as u64).to_le_bytes());
                a.iter().for_each(|x| out.extend(x.to_le_bytes()));
            }
        }
    }
    Gguf::from_bytes(out).expect("the toy GGUF reads")
}

/// GPT-2's byte-level characters: printable bytes stand for themselves, the others for
/// U+0100 onwards in byte order.
fn byte_chars() -> Vec<String> {
    let mut next = 0x100;
    (0..=255u8)
        .map(|b| {
            if matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF) {
                char::from(b).to_string()
            } else {
                next += 1;
                char::from_u32(next - 1).unwrap().to_string()
            }
        })
        .collect()
}

const CONTROL: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
const MERGED: [&str; 4] = ["Ġt", "he", "Ġthe", "12"];

/// The toy vocabulary: control tokens (ids 0..3), the 256 bytes (3..259), then `MERGED`.
fn tokens() -> Vec<String> {
    CONTROL.iter().map(|s| s.to_string()).chain(byte_chars()).chain(MERGED.iter().map(|s| s.to_string())).collect()
}

/// The toy file's metadata; `edit` changes it before it is written.
fn toy(edit: impl FnOnce(&mut Vec<(&'static str, V)>)) -> Gguf {
    let n = tokens().len();
    let mut kvs = vec![
        ("tokenizer.ggml.model", V::Str("gpt2")),
        ("tokenizer.ggml.pre", V::Str("smollm")),
        ("tokenizer.ggml.tokens", V::Strs(tokens())),
        ("tokenizer.ggml.token_type", V::I32s((0..n).map(|i| if i < 3 { 3 } else { 1 }).collect())),
        ("tokenizer.ggml.merges", V::Strs(["Ġ t", "h e", "Ġt he", "1 2"].map(String::from).to_vec())),
        ("tokenizer.ggml.bos_token_id", V::U32(1)),
        ("tokenizer.ggml.eos_token_id", V::U32(2)),
    ];
    edit(&mut kvs);
    gguf(&kvs)
}

fn id(token: &str) -> u32 {
    tokens().iter().position(|t| t == token).unwrap() as u32
}

fn set(kvs: &mut [(&'static str, V)], key: &str, v: V) {
    kvs.iter_mut().find(|(k, _)| *k == key).unwrap().1 = v;
}

#[test]
fn the_toy_tokenizer_merges_splits_digits_and_keeps_control_tokens() {
    let t = Tokenizer::from_gguf(&toy(|_| {})).unwrap();
    let (space, one, two) = (id("Ġ"), id("1"), id("2"));
    // Digits stand alone before BPE (llama.cpp's `smollm`), so the merge `1 2` never applies.
    assert_eq!(t.encode(" the 12").unwrap(), [id("Ġthe"), space, one, two]);
    assert_eq!(t.encode("x12").unwrap(), [id("x"), one, two]);
    assert_eq!(t.encode("<|im_start|>the<|im_end|>").unwrap(), [1, id("t"), id("he"), 2]);
    assert_eq!(t.encode("").unwrap(), [] as [u32; 0]);
    assert_eq!(t.decode(&t.encode("<|im_start|> the 12 é").unwrap()).unwrap(), "<|im_start|> the 12 é");
    assert_eq!((t.eos(), t.vocab_size()), (2, 263));
    // The default end tokens by text, eos among them.
    assert!(t.is_end(0) && t.is_end(2) && !t.is_end(1) && !t.is_end(id("Ġthe")));
}

#[test]
fn bos_is_added_only_when_the_file_asks() {
    let t = Tokenizer::from_gguf(&toy(|kvs| kvs.push(("tokenizer.ggml.add_bos_token", V::Bool(true))))).unwrap();
    assert_eq!(t.encode("he").unwrap(), [1, id("he")]);
    let t = Tokenizer::from_gguf(&toy(|kvs| kvs.push(("tokenizer.ggml.add_bos_token", V::Bool(false))))).unwrap();
    assert_eq!(t.encode("he").unwrap(), [id("he")]);
}

#[test]
fn an_eot_token_in_the_metadata_also_ends_generation() {
    let t = Tokenizer::from_gguf(&toy(|kvs| kvs.push(("tokenizer.ggml.eot_token_id", V::U32(id("Ġthe")))))).unwrap();
    assert!(t.is_end(id("Ġthe")));
    let err = Tokenizer::from_gguf(&toy(|kvs| kvs.push(("tokenizer.ggml.eot_token_id", V::U32(9999))))).err();
    assert!(err.unwrap().to_string().contains("9999"));
}

/// The error `from_gguf` gives for the toy file edited by `edit`.
fn refused(edit: impl FnOnce(&mut Vec<(&'static str, V)>)) -> String {
    match Tokenizer::from_gguf(&toy(edit)) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unsupported_or_inconsistent_metadata_is_an_error_that_names_it() {
    let err = refused(|kvs| set(kvs, "tokenizer.ggml.model", V::Str("llama")));
    assert!(err.contains("`llama`"), "{err}");
    let err = refused(|kvs| set(kvs, "tokenizer.ggml.pre", V::Str("llama-bpe")));
    assert!(err.contains("`llama-bpe`"), "{err}");
    let err = refused(|kvs| kvs.retain(|(k, _)| *k != "tokenizer.ggml.pre"));
    assert!(err.contains("pre-tokenizer"), "{err}");
    let err = refused(|kvs| kvs.retain(|(k, _)| *k != "tokenizer.ggml.eos_token_id"));
    assert!(err.contains("eos"), "{err}");
    let err = refused(|kvs| kvs.retain(|(k, _)| *k != "tokenizer.ggml.merges"));
    assert!(err.contains("merges"), "{err}");
    let err = refused(|kvs| set(kvs, "tokenizer.ggml.merges", V::Strs(vec!["Ġt".into()])));
    assert!(err.contains("`Ġt`"), "{err}");
    let err = refused(|kvs| set(kvs, "tokenizer.ggml.merges", V::Strs(vec!["x Q9".into()])));
    assert!(err.contains("merges"), "{err}");
    let err = refused(|kvs| set(kvs, "tokenizer.ggml.token_type", V::I32s(vec![1; 5])));
    assert!(err.contains("token_type"), "{err}");
    let err = refused(|kvs| {
        let mut dup = tokens();
        dup[5] = dup[6].clone();
        set(kvs, "tokenizer.ggml.tokens", V::Strs(dup));
    });
    assert!(err.contains("twice"), "{err}");
    let err = refused(|kvs| {
        kvs.retain(|(k, _)| *k != "tokenizer.ggml.bos_token_id");
        kvs.push(("tokenizer.ggml.add_bos_token", V::Bool(true)));
    });
    assert!(err.contains("BOS"), "{err}");
    // The library's reader refuses an eos outside the vocabulary.
    let err = refused(|kvs| set(kvs, "tokenizer.ggml.eos_token_id", V::U32(263)));
    assert!(err.contains("263"), "{err}");
}
