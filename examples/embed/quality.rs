//! `--quality`: the course's comparison of quantization schemes on this model, against the
//! reference embeddings sentence-transformers made in f32 (tests/fixtures/minilm_reference.json).
//!
//! For each scheme the float checkpoint is quantized on the GPU at load and run with bf16
//! activations (W8A16, or W8A8 / LLM.int8() with int8 activations inside each linear layer);
//! the table gives the mean and minimum cosine of its embeddings to the reference and the
//! retrieval check: how many queries still rank their paired passage first among all other
//! sentences, and by how much at least. W8A16 and W8A8 rows are independent, so those models
//! run padded batches of 8; LLM.int8() picks outlier columns over a batch's rows, so it runs
//! each sentence alone ([`Bert::batches`]) and its outlier columns come from real tokens only.

use std::collections::BTreeMap;

use int8_wgpu::checkpoint::Checkpoint;
use int8_wgpu::{ActivationQuant, DType, Gpu, Granularity, QuantScheme};

use crate::bert::{Bert, Precision};
use crate::ops::Result;

/// The fixture: sentences, (query, passage) index pairs, reference embeddings.
pub struct Reference {
    pub sentences: Vec<String>,
    pub pairs: Vec<(usize, usize)>,
    pub embeddings: Vec<Vec<f32>>,
    pub made_with: String,
}

impl Reference {
    /// Reads the fixture committed with the repository.
    pub fn load() -> Result<Self> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/minilm_reference.json");
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
        let floats = |row: &serde_json::Value| -> Vec<f32> {
            row.as_array().map_or(vec![], |r| r.iter().filter_map(|x| x.as_f64()).map(|x| x as f32).collect())
        };
        let sentences = v["sentences"].as_array().ok_or("fixture: no sentences")?;
        let embeddings: Vec<Vec<f32>> =
            v["embeddings"].as_array().ok_or("fixture: no embeddings")?.iter().map(floats).collect();
        let pairs = v["pairs"]
            .as_array()
            .ok_or("fixture: no pairs")?
            .iter()
            .filter_map(|p| Some((p[0].as_u64()? as usize, p[1].as_u64()? as usize)))
            .collect();
        Ok(Self {
            sentences: sentences.iter().filter_map(|s| s.as_str().map(str::to_string)).collect(),
            pairs,
            embeddings,
            made_with: v["made_with"].as_str().unwrap_or("").to_string(),
        })
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
    let norm = |v: &[f32]| v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// Queries whose paired passage has the highest cosine among all other sentences.
fn retrieval(embeddings: &[Vec<f32>], pairs: &[(usize, usize)]) -> usize {
    pairs
        .iter()
        .filter(|&&(q, p)| {
            let best = (0..embeddings.len()).filter(|&i| i != q).max_by(|&i, &j| {
                cosine(&embeddings[q], &embeddings[i]).total_cmp(&cosine(&embeddings[q], &embeddings[j]))
            });
            best == Some(p)
        })
        .count()
}

/// Per pair, by how much the passage beats the best of all other sentences (the retrieval
/// criterion): `cos(q, p) - max cos(q, i)` over `i` not `q` or `p`; negative is a miss.
fn margins(embeddings: &[Vec<f32>], pairs: &[(usize, usize)]) -> Vec<f64> {
    let cos = |a: usize, b: usize| cosine(&embeddings[a], &embeddings[b]);
    let others = |q: usize, p: usize| {
        (0..embeddings.len()).filter(|&i| i != q && i != p).map(|i| cos(q, i)).fold(f64::NEG_INFINITY, f64::max)
    };
    pairs.iter().map(|&(q, p)| cos(q, p) - others(q, p)).collect()
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// Per (layer index, linear layer name): per outlier column, the sentences in which LLM.int8()
/// found it.
type Outliers = BTreeMap<(usize, &'static str), BTreeMap<usize, usize>>;

/// Embeds every fixture sentence with `bert`, in padded batches of 8, or one per sentence
/// where rows interact (LLM.int8(): [`Bert::batches`]), collecting the outlier columns of each
/// such forward (none for the other precisions).
fn embed_all(bert: &Bert, tokenizer: &tokenizers::Tokenizer, sentences: &[&str]) -> Result<(Vec<Vec<f32>>, Outliers)> {
    let mut out = Vec::with_capacity(sentences.len());
    let mut outliers = Outliers::new();
    for chunk in sentences.chunks(8) {
        for (plan, batch) in bert.batches(tokenizer, chunk)? {
            out.extend(bert.embed(&plan, &batch)?);
            if bert.rows_interact() {
                for (layer, name, cols) in bert.outlier_columns()? {
                    let seen = outliers.entry((layer, name)).or_default();
                    cols.into_iter().for_each(|c| *seen.entry(c).or_default() += 1);
                }
            }
        }
    }
    Ok((out, outliers))
}

/// The outlier columns of each layer's linear inputs, as markdown: query, key and value share
/// their input, so one column stands for the three.
fn outlier_table(outliers: &Outliers, sentences: usize) -> String {
    let mut s = format!(
        "LLM.int8() outlier columns (|x| >= {} in any token of the sentence; bf16 activations), each sentence \
         its own batch, per linear layer's input: how many columns, and each column with the number of the \
         {sentences} sentences in which it was one.\n\n| layer | query/key/value (384 inputs) | \
         attention.output.dense (384) | intermediate.dense (384) | output.dense (1536) |\n|---|---|---|---|---|\n",
        ActivationQuant::DEFAULT_THRESHOLD
    );
    let layers = outliers.keys().map(|k| k.0 + 1).max().unwrap_or(0);
    for l in 0..layers {
        let cell = |name: &'static str| {
            let cols = outliers.get(&(l, name)).cloned().unwrap_or_default();
            let list: Vec<String> = cols.iter().map(|(c, n)| format!("{c} ({n})")).collect();
            if cols.is_empty() { "0".to_string() } else { format!("{}: {}", cols.len(), list.join(", ")) }
        };
        s.push_str(&format!(
            "| {l} | {} | {} | {} | {} |\n",
            cell("attention.self.query"),
            cell("attention.output.dense"),
            cell("intermediate.dense"),
            cell("output.dense")
        ));
    }
    s
}

/// Where `--quality` writes its report, under the repository root; README.md carries its
/// tables verbatim (tests/docs_quality.rs compares them).
pub const DOC: &str = "docs/quality.md";

/// The commit the example was built from, as `git` says; marked when sources differ from it.
fn commit() -> String {
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git").args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output();
        out.ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(head) = git(&["rev-parse", "--short=7", "HEAD"]) else { return "unknown (no git)".into() };
    let changed = ["status", "--porcelain", "--", "src", "shaders", "examples", "Cargo.toml", "Cargo.lock"];
    match git(&changed) {
        Some(s) if s.is_empty() => head,
        _ => format!("{head} with uncommitted changes"),
    }
}

/// 1 − cosine of each sentence.
fn losses(cos: &[f64]) -> Vec<f64> {
    cos.iter().map(|c| 1.0 - c).collect()
}

/// The comparison report, as markdown: the schemes' table, W8A8's loss against W8A16's and
/// the retrieval margins, and LLM.int8()'s outlier columns.
pub fn report(gpu: &Gpu, ckpt: &Checkpoint, tokenizer: &tokenizers::Tokenizer) -> Result<String> {
    let reference = Reference::load()?;
    let sentences: Vec<&str> = reference.sentences.iter().map(String::as_str).collect();
    let bf16 = Precision::Int8(DType::BF16);
    let schemes: [(&str, Precision, Option<QuantScheme>); 9] = [
        ("f32 (the example's model code, dense)", Precision::F32, None),
        ("per-tensor absmax (symmetric)", bf16, Some(QuantScheme::symmetric(Granularity::PerTensor))),
        ("per-tensor zero-point (asymmetric)", bf16, Some(QuantScheme::asymmetric(Granularity::PerTensor))),
        ("per-channel symmetric (default)", bf16, Some(QuantScheme::default())),
        ("per-channel asymmetric", bf16, Some(QuantScheme::asymmetric(Granularity::PerChannel { axis: 0 }))),
        ("groups of 32, symmetric", bf16, Some(QuantScheme::symmetric(Granularity::PerGroup { size: 32 }))),
        ("groups of 128, symmetric", bf16, Some(QuantScheme::symmetric(Granularity::PerGroup { size: 128 }))),
        (
            "W8A8: per-channel weights, per-token int8 activations",
            Precision::W8A8(DType::BF16),
            Some(QuantScheme::default()),
        ),
        (
            "LLM.int8(): W8A8 + outlier columns (\\|x\\| >= 6) in float",
            Precision::LlmInt8(DType::BF16),
            Some(QuantScheme::default()),
        ),
    ];
    let pairs = reference.pairs.len();
    let mut s = format!(
        "<!-- Written by `cargo run --release --example embed -- --quality`; README.md carries these tables. -->\n\n\
         Made by `cargo run --release --example embed -- --quality` at commit {}, adapter: {}.\n\n\
         {} sentences and {pairs} query/passage pairs of tests/fixtures/minilm_reference.json ({}); int8 rows are \
         W8A16 bf16 unless named W8A8 or LLM.int8() (bf16 in and out, int8 inside each linear), quantized on the \
         GPU at load. The retrieval margin is the paired passage's cosine minus the best of all other sentences.\n\n",
        commit(),
        gpu.describe(),
        sentences.len(),
        reference.made_with,
    );
    s.push_str(
        "| weights | mean cosine to reference | min cosine | retrieval (pair ranked first) | min retrieval margin \
         |\n|---|---|---|---|---|\n",
    );
    let ref_margins = margins(&reference.embeddings, &reference.pairs);
    s.push_str(&format!(
        "| sentence-transformers f32 (the reference) | 1 | 1 | {}/{pairs} | {:.2} |\n",
        retrieval(&reference.embeddings, &reference.pairs),
        min(&ref_margins)
    ));
    let mut outliers = Outliers::new();
    let mut cosines = BTreeMap::new();
    for (name, precision, scheme) in schemes {
        let bert = match scheme {
            None => Bert::load(gpu, ckpt, precision)?,
            Some(sc) => Bert::load_with(gpu, ckpt, precision, sc)?,
        };
        let (got, seen) = embed_all(&bert, tokenizer, &sentences)?;
        if !seen.is_empty() {
            outliers = seen;
        }
        let cos: Vec<f64> = got.iter().zip(&reference.embeddings).map(|(g, r)| cosine(g, r)).collect();
        let mean = cos.iter().sum::<f64>() / cos.len() as f64;
        let (hits, margin) = (retrieval(&got, &reference.pairs), min(&margins(&got, &reference.pairs)));
        s.push_str(&format!("| {name} | {mean:.5} | {:.5} | {hits}/{pairs} | {margin:.2} |\n", min(&cos)));
        cosines.insert(name, cos);
    }
    let loss = |i: usize| losses(&cosines[schemes[i].0]);
    s.push_str(&figures(&loss(3), &loss(7), &loss(8), &ref_margins));
    s.push('\n');
    s.push_str(&outlier_table(&outliers, sentences.len()));
    Ok(s)
}

/// What int8 activations cost against W8A16 (all three with per-channel symmetric weights,
/// bf16), from each sentence's 1 − cosine to the reference, and the reference's own margins.
fn figures(w8a16: &[f64], w8a8: &[f64], llm: &[f64], ref_margins: &[f64]) -> String {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let per_sentence: Vec<f64> = w8a8.iter().zip(w8a16).map(|(a, b)| a / b).collect();
    let rows = [
        (
            "mean 1 − cosine: W8A16 / W8A8 / LLM.int8() (per-channel symmetric weights, bf16)",
            format!("{:.5} / {:.5} / {:.5}", mean(w8a16), mean(w8a8), mean(llm)),
        ),
        ("W8A8 against W8A16: mean against mean", format!("{:.1}x", mean(w8a8) / mean(w8a16))),
        ("W8A8 against W8A16: worst sentence against worst sentence", format!("{:.1}x", max(w8a8) / max(w8a16))),
        ("W8A8 against W8A16: largest ratio on one sentence", format!("{:.1}x", max(&per_sentence))),
        ("LLM.int8() against W8A16: mean against mean", format!("{:.1}x", mean(llm) / mean(w8a16))),
        (
            "retrieval margins of the reference (f32), against all other sentences",
            format!("{:.2}-{:.2}", min(ref_margins), max(ref_margins)),
        ),
    ];
    let mut s = String::from("\n| figure | value |\n|---|---|\n");
    for (what, value) in rows {
        s.push_str(&format!("| {what} | {value} |\n"));
    }
    s
}
