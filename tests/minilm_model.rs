//! The MiniLM example's model (`examples/embed`): the whole f32 model against a CPU f64 forward
//! of the real checkpoint, the int8 models against f32, and one queue submission per forward
//! (its kernels one by one: tests/minilm_ops.rs).
//!
//! Kept short for CI on two cores: three short sentences. These tests need
//! `scripts/fetch-minilm.sh`'s checkpoint (they fail under `CI=true` without it, and are skipped
//! elsewhere).

mod common;
mod embed_support;

mod embed_app;

use embed_app::{bert, cpu, tokens};

use std::path::PathBuf;
use std::sync::OnceLock;

use bert::{Bert, Precision};
use embed_support::{assert_close, to_f64};
use int8_wgpu::checkpoint::Checkpoint;
use int8_wgpu::{DType, Gpu};
use tokens::Batch;

// ---- (2)-(4) the whole model on the real checkpoint ----------------------------------------------

/// Sentences of 11, 8 and 4 tokens ([CLS] and [SEP] included): the batch pads to 11, so the
/// mask matters.
const SENTENCES: [&str; 3] = ["A man is eating a piece of bread.", "The new movie is awesome.", "Hello!"];

/// What the model tests share: the checkpoint, tokenizer, batch, and the f32 GPU model's
/// embeddings of the batch (computed once per test binary).
struct Shared {
    dir: PathBuf,
    gpu: Gpu,
    ckpt: Checkpoint,
    tokenizer: tokenizers::Tokenizer,
    batch: Batch,
    f32_model: Bert,
    f32_embeddings: Vec<Vec<f32>>,
}

fn shared() -> Option<&'static Shared> {
    static S: OnceLock<Option<Shared>> = OnceLock::new();
    S.get_or_init(|| {
        let dir = common::minilm_dir()?;
        let gpu = common::gpu()?;
        let ckpt = Checkpoint::open(&dir).unwrap();
        let tokenizer = tokens::load_tokenizer(&dir, tokens::max_seq_length(&dir)).unwrap();
        let batch = Batch::tokenize(&tokenizer, &SENTENCES).unwrap();
        let f32_model = Bert::load(&gpu, &ckpt, Precision::F32).unwrap();
        let f32_embeddings = f32_model.embed(&f32_model.plan(batch.batch, batch.seq).unwrap(), &batch).unwrap();
        Some(Shared { dir, gpu, ckpt, tokenizer, batch, f32_model, f32_embeddings })
    })
    .as_ref()
}

macro_rules! shared_or_skip {
    () => {
        match shared() {
            Some(s) => s,
            None => return,
        }
    };
}

/// The f32 GPU model equals a CPU f64 forward of the same checkpoint: cosine >= 0.99999 per
/// sentence (f32 arithmetic through 6 layers; measured ~1 - 1e-12), every value within 1e-5.
/// A sentence embedded alone, without padding, gives the same embedding as in the padded batch
/// (within 1e-5: the mask removes padding exactly; only summation order changes).
#[test]
fn f32_model_matches_cpu_forward() {
    let s = shared_or_skip!();
    assert_eq!(s.batch.seq, 11, "token counts of the test sentences changed: {:?}", s.batch);
    let cpu = cpu::CpuBert::new(Checkpoint::open(&s.dir).unwrap()).unwrap().forward(&s.batch).unwrap();
    let h = s.f32_model.config().hidden;
    for (i, (gpu, want)) in s.f32_embeddings.iter().zip(cpu.chunks(h)).enumerate() {
        let want32: Vec<f32> = want.iter().map(|&v| v as f32).collect();
        let cos = cpu::cosine(gpu, &want32);
        eprintln!("sentence {i}: cosine(gpu f32, cpu f64) = {cos:.9}");
        assert!(cos >= 0.99999, "sentence {i}: cosine {cos}");
        assert_close(&format!("f32 model, sentence {i}"), gpu, want, |_, _| 1e-5);
    }
    let alone = Batch::tokenize(&s.tokenizer, &SENTENCES[2..]).unwrap();
    assert!(alone.seq < s.batch.seq);
    let e = s.f32_model.embed(&s.f32_model.plan(1, alone.seq).unwrap(), &alone).unwrap();
    let want = to_f64(&s.f32_embeddings[2]);
    assert_close("unpadded vs padded", &e[0], &want, |_, _| 1e-5);
}

/// The int8 models (per-channel symmetric weights quantized on the GPU at load; W8A16 bf16 and
/// f16, W8A32) give embeddings within cosine 0.999 of the f32 model's on the two sentences of
/// 8 and 11 tokens, and 0.998 on "Hello!" (4 tokens: mean pooling averages the quantization
/// noise over fewer tokens). That is the int8 weights' own error, not the kernels': W8A32,
/// which rounds no activation, measures the same 0.9985 there, and the next test matches it
/// to the CPU forward of the dequantized weights within 0.99999.
#[test]
fn int8_models_track_the_f32_model() {
    let s = shared_or_skip!();
    for act in [DType::BF16, DType::F16, DType::F32] {
        let model = Bert::load(&s.gpu, &s.ckpt, Precision::Int8(act)).unwrap();
        let e = model.embed(&model.plan(s.batch.batch, s.batch.seq).unwrap(), &s.batch).unwrap();
        for (i, (a, b)) in s.f32_embeddings.iter().zip(&e).enumerate() {
            let cos = cpu::cosine(a, b);
            let min = if i == 2 { 0.998 } else { 0.999 };
            eprintln!("{}: sentence {i}: cosine to f32 {cos:.6}", model.precision());
            assert!(cos >= min, "{}: sentence {i}: cosine to f32 {cos} < {min}", model.precision());
        }
    }
}

// Int8 activations on the real model (W8A8, LLM.int8()): tests/minilm_int8_activations.rs.

/// The W8A32 GPU model computes the quantized model: cosine >= 0.999999 per sentence to a CPU
/// f64 forward whose linear weights are the CPU reference's int8 quantization, dequantized
/// (the GPU quantizes to the same ints and scales; only f32 arithmetic differs; measured
/// 1 - 1e-10). W8A16 adds the rounding of activations to 16 bits at each linear layer: f16
/// within 0.99999 (measured 0.9999997), bf16 within 0.9999 (measured 0.99998).
#[test]
fn int8_models_match_cpu_forward_with_dequantized_weights() {
    let s = shared_or_skip!();
    let want = cpu::CpuBert::new(Checkpoint::open(&s.dir).unwrap()).unwrap().dequantized().forward(&s.batch).unwrap();
    let h = s.f32_model.config().hidden;
    for (act, min) in [(DType::F32, 0.999999), (DType::F16, 0.99999), (DType::BF16, 0.9999)] {
        let model = Bert::load(&s.gpu, &s.ckpt, Precision::Int8(act)).unwrap();
        let e = model.embed(&model.plan(s.batch.batch, s.batch.seq).unwrap(), &s.batch).unwrap();
        for (i, (got, want)) in e.iter().zip(want.chunks(h)).enumerate() {
            let want32: Vec<f32> = want.iter().map(|&v| v as f32).collect();
            let cos = cpu::cosine(got, &want32);
            eprintln!("{}: sentence {i}: cosine to the CPU dequantized forward {cos:.9}", model.precision());
            assert!(cos >= min, "{}: sentence {i}: cosine {cos} < {min}", model.precision());
        }
    }
}

/// A checkpoint written by `int8-wgpu quantize` loads as the same model as quantizing the float
/// checkpoint at load (same ints, same scales): the embeddings are equal bit for bit. Loading
/// it as the dense f32 baseline is an error.
#[test]
fn quantized_checkpoint_gives_the_same_embeddings() {
    let s = shared_or_skip!();
    let tmp = common::TempDir::new("minilm-model");
    let out = tmp.path().join("q");
    int8_wgpu::quantizer::Quantizer::new(&s.dir, &out).gpu(s.gpu.clone()).eval_rows(0).run().unwrap();
    let q = Checkpoint::open(&out).unwrap();
    assert_eq!(q.activation_dtype(), DType::BF16);
    let from_file = Bert::load(&s.gpu, &q, Precision::Int8(DType::BF16)).unwrap();
    let at_load = Bert::load(&s.gpu, &s.ckpt, Precision::Int8(DType::BF16)).unwrap();
    let b = &s.batch;
    let e1 = from_file.embed(&from_file.plan(b.batch, b.seq).unwrap(), b).unwrap();
    let e2 = at_load.embed(&at_load.plan(b.batch, b.seq).unwrap(), b).unwrap();
    let bits = |e: &Vec<Vec<f32>>| e.iter().flatten().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&e1), bits(&e2));
    assert!(from_file.weight_bytes() < s.f32_model.weight_bytes());
    let e = Bert::load(&s.gpu, &q, Precision::F32).err().expect("f32 from an int8 checkpoint");
    assert!(e.to_string().contains("float checkpoint"), "{e}");
}

/// A forward is one queue submission (inputs written with `Queue::write_buffer`, which rides
/// on it, and the readback copy recorded into the same encoder), and creates no GPU object:
/// the int8 layers' plans and bind groups were made by `Bert::plan`. Repeated forwards give
/// identical bits.
#[test]
fn one_submission_per_forward_and_nothing_created() {
    let s = shared_or_skip!();
    // A device of this test's own: resource counts are per device, and other tests share one.
    let gpu = Gpu::new().unwrap();
    let model = Bert::load(&gpu, &s.ckpt, Precision::Int8(DType::BF16)).unwrap();
    let plan = model.plan(s.batch.batch, s.batch.seq).unwrap();
    let (app, layers) = plan.counts();
    assert_eq!((app, layers), (2 + 6 * 5 + 2, 36), "app kernels and int8 layers per forward");
    let before = (model.submissions(), gpu.resource_counts());
    let first = model.embed(&plan, &s.batch).unwrap();
    for _ in 0..2 {
        assert_eq!(model.embed(&plan, &s.batch).unwrap(), first);
    }
    assert_eq!(model.submissions() - before.0, 3, "submissions for 3 forwards");
    assert_eq!(gpu.resource_counts(), before.1, "library objects created by 3 forwards");
}

/// Bad input is an error, not a panic: an id outside the vocabulary, a batch that does not
/// fit the plan, more tokens than positions.
#[test]
fn bad_inputs_are_errors() {
    let s = shared_or_skip!();
    let m = &s.f32_model;
    let plan = m.plan(1, 3).unwrap();
    let bad = Batch::from_ids(&[vec![101, 40000, 102]]).unwrap();
    assert!(m.embed(&plan, &bad).unwrap_err().to_string().contains("vocabulary"));
    let two = Batch::from_ids(&[vec![101, 102], vec![101, 7, 102]]).unwrap();
    assert!(m.embed(&plan, &two).unwrap_err().to_string().contains("plan"));
    assert!(m.plan(1, 513).is_err());
    assert!(m.plan(0, 3).is_err());
    assert!(Batch::from_ids(&[vec![]]).is_err());
}

/// Against sentence-transformers' own embeddings (`tests/fixtures/minilm_reference.json`,
/// made by the project's Python script): our tokenization gives its token ids for every
/// sentence (when it lists them), and on the first four sentences (kept short for CI) the f32
/// model is within cosine 0.999999 of its embeddings (measured 1 - 5e-10 or closer, Vulkan and
/// GL), the bf16 int8 model within 0.999 (measured 0.99945-0.99967).
/// Skipped while the fixture is absent.
#[test]
fn matches_sentence_transformers_fixture() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm_reference.json");
    // The fixture is committed: its absence is a broken checkout, so CI fails rather than skips.
    if !path.is_file() {
        assert!(std::env::var("CI").is_err(), "CI=true and no {}", path.display());
        eprintln!("SKIPPED: no {}", path.display());
        return;
    }
    let s = shared_or_skip!();
    let fixture: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let sentences: Vec<&str> = fixture["sentences"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let rows = |key: &str| -> Vec<Vec<f64>> {
        fixture[key]
            .as_array()
            .unwrap_or_else(|| panic!("fixture has no `{key}`"))
            .iter()
            .map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect())
            .collect()
    };
    let want = rows("embeddings");
    assert_eq!(sentences.len(), want.len());
    eprintln!("fixture made with: {}", fixture["made_with"]);
    if fixture.get("token_ids").is_some() {
        for (i, ids) in rows("token_ids").iter().enumerate() {
            let ours = Batch::tokenize(&s.tokenizer, &sentences[i..=i]).unwrap().ids;
            let theirs: Vec<u32> = ids.iter().map(|&v| v as u32).collect();
            assert_eq!(ours, theirs, "token ids of {:?}", sentences[i]);
        }
    }
    let n = sentences.len().min(4);
    let bf16_model = Bert::load(&s.gpu, &s.ckpt, Precision::Int8(DType::BF16)).unwrap();
    for (model, min) in [(&s.f32_model, 0.999999), (&bf16_model, 0.999)] {
        let got = model.embed_sentences(&s.tokenizer, &sentences[..n]).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let w: Vec<f32> = w.iter().map(|&v| v as f32).collect();
            assert_eq!(g.len(), w.len());
            let cos = cpu::cosine(g, &w);
            eprintln!("{}: {:?}: cosine to sentence-transformers {cos:.9}", model.precision(), sentences[i]);
            assert!(cos >= min, "{}: sentence {i}: cosine {cos} < {min}", model.precision());
        }
    }
}
