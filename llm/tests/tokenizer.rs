//! The tokenizer and chat template of SmolLM2-135M-Instruct against llama.cpp's answers for
//! the same GGUF, recorded by `scripts/llama-cpp-fixtures.py` in
//! `fixtures/llama_cpp_tokenizer.json` (token ids of tricky strings, end-of-generation ids, chat
//! renderings) and `fixtures/llama_cpp_greedy.json` (the greedy prompts' ids).
//!
//! The GGUF comes from `scripts/fetch-smollm2.sh` (cached in
//! `${INT8_WGPU_CACHE:-$HOME/.cache/int8-wgpu}`). Without it the tests fail under `CI=true`
//! and are skipped elsewhere.

use std::path::PathBuf;
use std::sync::OnceLock;

use int8_wgpu::gguf::Gguf;
use int8_wgpu_llm::Tokenizer;
use int8_wgpu_llm::chat::{self, Message};
use serde_json::Value;

struct Model {
    gguf: Gguf,
    tokenizer: Tokenizer,
}

fn model() -> Option<&'static Model> {
    static MODEL: OnceLock<Option<Model>> = OnceLock::new();
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
            let gguf = Gguf::open(&path).expect("the SmolLM2 GGUF reads");
            let tokenizer = Tokenizer::from_gguf(&gguf).expect("the tokenizer builds");
            Some(Model { gguf, tokenizer })
        })
        .as_ref()
}

fn fixture() -> &'static Value {
    static FIXTURE: OnceLock<Value> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        serde_json::from_str(include_str!("fixtures/llama_cpp_tokenizer.json")).expect("the fixture is JSON")
    })
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().expect("an array of ids").iter().map(|x| x.as_u64().expect("an id") as u32).collect()
}

/// The fixture's strings with llama.cpp's ids for them.
fn cases() -> Vec<(&'static str, Vec<u32>)> {
    let cases = fixture()["tokenize"].as_array().expect("tokenize cases");
    cases.iter().map(|c| (c["text"].as_str().expect("text"), ids(&c["ids"]))).collect()
}

#[test]
fn the_fixture_covers_the_tricky_strings() {
    let texts: Vec<&str> = cases().into_iter().map(|(t, _)| t).collect();
    assert!(texts.len() >= 40, "{} strings", texts.len());
    for needle in ["", "1234567", "  ", "\t", "\n", "'re", "é", "日本", "😀", "<|im_start|>", "fn main"] {
        assert!(texts.iter().any(|t| t.contains(needle)), "no string with {needle:?}");
    }
    assert!(texts.iter().any(|t| t.len() > 400), "no long paragraph");
}

#[test]
fn encode_matches_llama_cpp() {
    let Some(m) = model() else { return };
    assert_eq!(fixture()["add_bos"], false, "the fixture was made without BOS");
    let mut wrong = Vec::new();
    for (text, expected) in cases() {
        let got = m.tokenizer.encode(text).unwrap();
        if got != expected {
            wrong.push(format!("{text:?}\n  ours      {got:?}\n  llama.cpp {expected:?}"));
        }
    }
    assert!(wrong.is_empty(), "{} of {} strings differ:\n{}", wrong.len(), cases().len(), wrong.join("\n"));
}

#[test]
fn control_tokens_in_the_text_are_single_ids() {
    let Some(m) = model() else { return };
    let t = &m.tokenizer;
    assert_eq!(t.encode("<|im_start|>").unwrap(), [1]);
    assert_eq!(t.encode("<|im_end|>").unwrap(), [2]);
    assert_eq!(t.encode("<|endoftext|><|im_start|>").unwrap(), [0, 1]);
    // Not a control token: plain BPE, several ids.
    assert!(t.encode("<|im_start").unwrap().len() > 1);
}

#[test]
fn decode_inverts_encode() {
    let Some(m) = model() else { return };
    for (text, expected) in cases() {
        assert_eq!(m.tokenizer.decode(&m.tokenizer.encode(text).unwrap()).unwrap(), text);
        assert_eq!(m.tokenizer.decode(&expected).unwrap(), text, "llama.cpp's ids of {text:?}");
    }
}

/// Everything a stream decoder returns for `ids`, piece by piece, then what `finish` returns.
fn stream(t: &Tokenizer, ids: &[u32]) -> (Vec<Option<String>>, Option<String>) {
    let mut s = t.stream();
    let pieces = ids.iter().map(|&id| s.push(id).unwrap()).collect();
    (pieces, s.finish())
}

#[test]
fn the_stream_concatenates_to_decode() {
    let Some(m) = model() else { return };
    let mut waited = 0;
    for (text, ids) in cases() {
        let (pieces, rest) = stream(&m.tokenizer, &ids);
        assert_eq!(rest, None, "{text:?} leaves no incomplete character");
        waited += pieces.iter().filter(|p| p.is_none()).count();
        let joined: String = pieces.into_iter().flatten().collect();
        assert_eq!(joined, m.tokenizer.decode(&ids).unwrap(), "{text:?}");
    }
    // Some tokens end inside a character (emoji, CJK): the stream held them back.
    assert!(waited > 0);
}

/// The id of a vocabulary string, from the GGUF.
fn id_of(m: &Model, token: &str) -> u32 {
    let tokens = m.gguf.strings("tokenizer.ggml.tokens").unwrap();
    tokens.iter().position(|t| *t == token).unwrap_or_else(|| panic!("no token {token:?}")) as u32
}

#[test]
fn the_stream_waits_for_complete_characters_and_replaces_broken_ones() {
    let Some(m) = model() else { return };
    let t = &m.tokenizer;
    // 😀 is F0 9F 98 80; byte-level tokens spell bytes as characters (0xF0 is 'ð', 0x9F 'Ł').
    let ids = t.encode("😀").unwrap();
    assert!(ids.len() > 1, "😀 spans several tokens: {ids:?}");
    let (pieces, rest) = stream(t, &ids);
    let (last, before) = pieces.split_last().unwrap();
    assert!(before.iter().all(Option::is_none), "{pieces:?}");
    assert_eq!((last.as_deref(), rest), (Some("😀"), None));

    // A lead byte (0xC3, 'Ã') then ASCII: the byte can never complete, so U+FFFD, as decode.
    let (lead, a) = (id_of(m, "Ã"), id_of(m, "a"));
    assert_eq!(stream(t, &[lead, a]), (vec![None, Some("\u{FFFD}a".into())], None));
    assert_eq!(t.decode(&[lead, a]).unwrap(), "\u{FFFD}a");
    // A stream that ends inside a character: `finish` gives what decode gives.
    assert_eq!(stream(t, &[a, lead]), (vec![Some("a".into()), None], Some("\u{FFFD}".into())));
    assert_eq!(t.decode(&[a, lead]).unwrap(), "a\u{FFFD}");
}

#[test]
fn ids_outside_the_vocabulary_are_errors() {
    let Some(m) = model() else { return };
    let t = &m.tokenizer;
    assert_eq!(t.vocab_size(), 49152);
    let err = t.decode(&[5, 49152]).unwrap_err().to_string();
    assert!(err.contains("49152"), "{err}");
    assert!(t.stream().push(u32::MAX).is_err());
}

#[test]
fn end_tokens_are_llama_cpps() {
    let Some(m) = model() else { return };
    let t = &m.tokenizer;
    let f = fixture();
    assert_eq!(t.eos(), f["eos"].as_u64().unwrap() as u32);
    assert_eq!(u64::from(t.vocab_size()), f["n_vocab"].as_u64().unwrap());
    let expected = ids(&f["eog"]);
    let ours: Vec<u32> = (0..t.vocab_size()).filter(|&id| t.is_end(id)).collect();
    assert_eq!(ours, expected);
    assert_eq!(ours, [0, 2, 4], "<|endoftext|>, <|im_end|> and <reponame>");
}

#[test]
fn chat_render_matches_llama_cpp() {
    let Some(m) = model() else { return };
    chat::check(&m.gguf).unwrap();
    let chats = fixture()["chat"].as_array().unwrap();
    assert!(chats.len() >= 5);
    for c in chats {
        let messages: Vec<Message> = c["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| Message { role: m["role"].as_str().unwrap(), content: m["content"].as_str().unwrap() })
            .collect();
        let generation = c["add_generation_prompt"].as_bool().unwrap();
        let ours = chat::render(&messages, generation);
        // llama-cpp-python renders the GGUF's Jinja template.
        assert_eq!(ours, c["jinja"].as_str().unwrap(), "{messages:?}");
        // llama.cpp's built-in ChatML has no default system turn; with a system turn they agree.
        if messages[0].role == "system" {
            assert_eq!(ours, c["builtin"].as_str().unwrap(), "{messages:?}");
        } else {
            assert!(c["builtin"].as_str().unwrap().len() < ours.len());
        }
        assert_eq!(m.tokenizer.encode(&ours).unwrap(), ids(&c["ids"]), "{messages:?}");
    }
}

#[test]
fn the_greedy_prompts_encode_as_llama_cpp_did() {
    let Some(m) = model() else { return };
    let greedy: Value = serde_json::from_str(include_str!("fixtures/llama_cpp_greedy.json")).unwrap();
    let backends = greedy["backends"].as_object().unwrap();
    assert!(backends.contains_key("cpu"));
    for runs in backends.values() {
        for run in runs["runs"].as_array().unwrap() {
            let prompt = run["prompt"].as_str().unwrap();
            assert_eq!(m.tokenizer.encode(prompt).unwrap(), ids(&run["prompt_ids"]), "{prompt:?}");
            assert_eq!(run["ids"].as_array().unwrap().len(), 24);
        }
    }
}
