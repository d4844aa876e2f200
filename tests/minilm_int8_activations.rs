//! The MiniLM example (`examples/embed`) with int8 activations: W8A8 and LLM.int8() against the
//! f32 model; a sentence's LLM.int8() embedding comes from its own tokens only (padding and other
//! sentences never change it); a checkpoint's own W8A8 or LLM.int8() is run and named as such.
//!
//! Needs `scripts/fetch-minilm.sh`'s checkpoint (fails under `CI=true` without it, skipped
//! elsewhere).

mod common;

mod embed_app;

use embed_app::{bert, cpu, tokens};

use std::collections::BTreeSet;

use bert::{Bert, Precision};
use int8_wgpu::checkpoint::Checkpoint;
use int8_wgpu::{ActivationQuant, DType, Gpu, Method};
use tokens::Batch;

/// 11, 7 and 4 tokens: padded to 11 in one batch.
const SENTENCES: [&str; 3] = ["A man is eating a piece of bread.", "The new movie is awesome.", "Hello!"];

struct Setup {
    dir: std::path::PathBuf,
    gpu: Gpu,
    ckpt: Checkpoint,
    tokenizer: tokenizers::Tokenizer,
}

fn setup() -> Option<Setup> {
    let dir = common::minilm_dir()?;
    let gpu = common::gpu()?;
    let ckpt = Checkpoint::open(&dir).unwrap();
    let tokenizer = tokens::load_tokenizer(&dir, tokens::max_seq_length(&dir)).unwrap();
    Some(Setup { dir, gpu, ckpt, tokenizer })
}

fn bits(e: &[Vec<f32>]) -> Vec<u32> {
    e.iter().flatten().map(|v| v.to_bits()).collect()
}

/// Asserts equal bits, saying how many values differ.
fn assert_same_bits(a: &[Vec<f32>], b: &[Vec<f32>], ctx: &str) {
    let (a, b) = (bits(a), bits(b));
    assert_eq!(a.len(), b.len(), "{ctx}: lengths");
    let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    assert_eq!(differ, 0, "{ctx}: {differ} of {} values differ", a.len());
}

/// W8A8 (per-token int8 activations inside each linear) and LLM.int8() (the same with the
/// feature columns where a token has |x| >= 6 in float), against the f32 model: LLM.int8() must
/// come closer than W8A8 on every sentence. Column 99 carries MiniLM's largest activations in
/// layer 0's query input on real tokens; `attention.output.dense`'s input has no outlier.
#[test]
fn int8_activation_models_track_the_f32_model() {
    let Some(s) = setup() else { return };
    let f32_model = Bert::load(&s.gpu, &s.ckpt, Precision::F32).unwrap();
    let want = f32_model.embed_sentences(&s.tokenizer, &SENTENCES).unwrap();
    let mut cosines = Vec::new();
    for p in [Precision::W8A8(DType::BF16), Precision::LlmInt8(DType::BF16)] {
        let model = Bert::load(&s.gpu, &s.ckpt, p).unwrap();
        let mut e = Vec::new();
        let mut q0 = BTreeSet::new();
        for (plan, batch) in model.batches(&s.tokenizer, &SENTENCES).unwrap() {
            e.extend(model.embed(&plan, &batch).unwrap());
            for (l, n, cols) in model.outlier_columns().unwrap() {
                assert!(n != "attention.output.dense" || cols.is_empty(), "{p}: layer {l} {n}: {cols:?}");
                if (l, n) == (0, "attention.self.query") {
                    q0.extend(cols);
                }
            }
        }
        let cos: Vec<f64> = want.iter().zip(&e).map(|(a, g)| cpu::cosine(a, g)).collect();
        eprintln!("{p}: cosine to f32 per sentence {cos:?}; layer 0 query input outlier columns {q0:?}");
        if p == Precision::LlmInt8(DType::BF16) {
            assert!(q0.contains(&99), "{q0:?}");
        }
        cosines.push(cos);
    }
    for (i, (w8a8, llm)) in cosines[0].iter().zip(&cosines[1]).enumerate() {
        assert!(llm > w8a8, "sentence {i}: LLM.int8() {llm} not closer to f32 than W8A8 {w8a8}");
        assert!(*w8a8 >= 0.985, "sentence {i}: W8A8 cosine {w8a8}");
        assert!(*llm >= 0.997, "sentence {i}: LLM.int8() cosine {llm}");
    }
}

/// LLM.int8() picks its outlier columns over every row of a batch: `Bert::batches` gives each
/// sentence a batch of its own, so embedding the three together equals embedding each alone,
/// bit for bit, and a padded batch is refused rather than changed by its padding rows. W8A8's
/// and W8A16's rows are independent: their padded batch equals the sentences alone, bit for bit.
#[test]
fn padding_never_changes_an_embedding() {
    let Some(s) = setup() else { return };
    for p in [Precision::LlmInt8(DType::BF16), Precision::W8A8(DType::BF16), Precision::Int8(DType::BF16)] {
        let model = Bert::load(&s.gpu, &s.ckpt, p).unwrap();
        let together = model.embed_sentences(&s.tokenizer, &SENTENCES).unwrap();
        for (i, sentence) in SENTENCES.iter().enumerate() {
            let alone = Batch::tokenize(&s.tokenizer, &[sentence]).unwrap();
            let e = model.embed(&model.plan(1, alone.seq).unwrap(), &alone).unwrap();
            assert_same_bits(&together[i..=i], &e, &format!("{p}: {sentence:?} together and alone"));
        }
        let padded = Batch::tokenize(&s.tokenizer, &SENTENCES).unwrap();
        let got = model.embed(&model.plan(padded.batch, padded.seq).unwrap(), &padded);
        match p {
            Precision::LlmInt8(_) => {
                let e = got.expect_err("LLM.int8() over a padded batch");
                assert!(e.to_string().contains("padding rows would change"), "{e}");
            }
            _ => assert_same_bits(&got.unwrap(), &together, &format!("{p}: the padded batch")),
        }
    }
}

/// A checkpoint quantized for W8A8 or LLM.int8() (here at threshold 4) runs as it records when
/// loaded with `Precision::Int8` ("as the checkpoint says"), and the example names that method,
/// not W8A16. The W8A8 file's embeddings equal, bit for bit, those of the float checkpoint
/// quantized at load for W8A8.
#[test]
fn a_checkpoint_runs_and_is_named_by_its_own_method() {
    let Some(s) = setup() else { return };
    let tmp = common::TempDir::new("minilm-int8-act");
    let cases = [
        (Method::W8A8, None, "int8 w8a8 (bf16 in and out)"),
        (Method::LlmInt8, Some(4.0), "int8 llm.int8(), outliers |x| >= 4 (bf16 in and out)"),
    ];
    for (method, threshold, name) in cases {
        let out = tmp.path().join(method.as_str());
        let mut q = int8_wgpu::quantizer::Quantizer::new(&s.dir, &out).gpu(s.gpu.clone()).eval_rows(0).method(method);
        if let Some(t) = threshold {
            q = q.outlier_threshold(t);
        }
        q.run().unwrap();
        let ckpt = Checkpoint::open(&out).unwrap();
        let model = Bert::load(&s.gpu, &ckpt, Precision::Int8(ckpt.activation_dtype())).unwrap();
        assert_eq!(model.describe(), name);
        assert_eq!(model.activation_quant(), ckpt.activation_quant().unwrap());
        assert_eq!(model.rows_interact(), threshold.is_some());
        if method == Method::W8A8 {
            let at_load = Bert::load(&s.gpu, &s.ckpt, Precision::W8A8(DType::BF16)).unwrap();
            let want = at_load.embed_sentences(&s.tokenizer, &SENTENCES).unwrap();
            assert_same_bits(&model.embed_sentences(&s.tokenizer, &SENTENCES).unwrap(), &want, name);
        }
    }
    assert_eq!(Precision::Int8(DType::BF16).describe(None), "int8 w8a16 bf16");
    assert_eq!(Precision::Int8(DType::F32).describe(None), "int8 w8a32");
    assert_eq!(Precision::Int8(DType::F16).describe(Some(ActivationQuant::per_token())), "int8 w8a8 (f16 in and out)");
    assert_eq!(Precision::LlmInt8(DType::F16).to_string(), "int8 llm.int8(), outliers |x| >= 6 (f16 in and out)");
}
