//! `--quality`: the course's comparison of quantization schemes on this model, against the
//! reference embeddings sentence-transformers made in f32 (tests/fixtures/minilm_reference.json).
//!
//! For each scheme the float checkpoint is quantized on the GPU at load and run with bf16
//! activations (W8A16, or W8A8 / LLM.int8() with int8 activations inside each linear layer);
//! the table gives the mean and minimum cosine of its embeddings to the
//! reference and the retrieval check: how many queries still rank their paired passage first
//! among all other sentences.

use std::collections::{BTreeMap, BTreeSet};

use int8_wgpu::{ActivationQuant, Checkpoint, DType, Gpu, Granularity, QuantScheme};

use crate::bert::{Bert, Precision};
use crate::kernels::Result;

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

/// Per (layer index, linear layer name): the outlier columns LLM.int8() saw in any batch.
type Outliers = BTreeMap<(usize, &'static str), BTreeSet<usize>>;

/// Embeds every fixture sentence with `bert`, in batches of 8, collecting the outlier columns
/// each LLM.int8() layer saw (none for the other precisions).
fn embed_all(bert: &Bert, tokenizer: &tokenizers::Tokenizer, sentences: &[&str]) -> Result<(Vec<Vec<f32>>, Outliers)> {
    let mut out = Vec::with_capacity(sentences.len());
    let mut outliers = Outliers::new();
    for chunk in sentences.chunks(8) {
        out.extend(bert.embed_sentences(tokenizer, chunk)?);
        if bert.precision().activation_quant().is_some_and(|a| a.outlier_threshold().is_some()) {
            for (layer, name, cols) in bert.outlier_columns()? {
                outliers.entry((layer, name)).or_default().extend(cols);
            }
        }
    }
    Ok((out, outliers))
}

/// The outlier columns of each layer's linear inputs, as markdown: query, key and value share
/// their input, so one column stands for the three.
fn outlier_table(outliers: &Outliers, batches: usize) -> String {
    let mut s = format!(
        "\nLLM.int8() outlier columns (|x| >= {} in any row of a batch; bf16 activations), the union over the {batches} \
         batches of 8 sentences, per linear layer's input:\n\n| layer | query/key/value (384 inputs) | attention.output.dense (384) | intermediate.dense (384) | output.dense (1536) |\n|---|---|---|---|---|\n",
        ActivationQuant::DEFAULT_THRESHOLD
    );
    let layers = outliers.keys().map(|k| k.0 + 1).max().unwrap_or(0);
    for l in 0..layers {
        let cell = |name: &'static str| {
            let cols = outliers.get(&(l, name)).cloned().unwrap_or_default();
            let list: Vec<String> = cols.iter().map(usize::to_string).collect();
            if cols.is_empty() { "0".to_string() } else { format!("{} ({})", cols.len(), list.join(", ")) }
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

/// The comparison table, as markdown.
pub fn table(gpu: &Gpu, ckpt: &Checkpoint, tokenizer: &tokenizers::Tokenizer) -> Result<String> {
    let reference = Reference::load()?;
    let sentences: Vec<&str> = reference.sentences.iter().map(String::as_str).collect();
    let bf16 = Precision::Int8(DType::BF16);
    let schemes: [(&str, Precision, Option<QuantScheme>); 9] = [
        ("f32 (this library's model code, dense)", Precision::F32, None),
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
            "LLM.int8(): W8A8 + outlier columns (|x| >= 6) in float",
            Precision::LlmInt8(DType::BF16),
            Some(QuantScheme::default()),
        ),
    ];
    let mut s = format!(
        "{} sentences and {} query/passage pairs of tests/fixtures/minilm_reference.json ({}); int8 rows are W8A16 bf16 \
         unless named W8A8 or LLM.int8() (bf16 in and out, int8 inside each linear), quantized on the GPU at load; \
         adapter: {}.\n\n",
        sentences.len(),
        reference.pairs.len(),
        reference.made_with,
        gpu.describe()
    );
    s.push_str(
        "| weights | mean cosine to reference | min cosine | retrieval (pair ranked first) |\n|---|---|---|---|\n",
    );
    let reference_hits = retrieval(&reference.embeddings, &reference.pairs);
    let mut outliers = Outliers::new();
    s.push_str(&format!(
        "| sentence-transformers f32 (the reference) | 1 | 1 | {reference_hits}/{} |\n",
        reference.pairs.len()
    ));
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
        let min = cos.iter().copied().fold(f64::INFINITY, f64::min);
        let hits = retrieval(&got, &reference.pairs);
        s.push_str(&format!("| {name} | {mean:.5} | {min:.5} | {hits}/{} |\n", reference.pairs.len()));
    }
    s.push_str(&outlier_table(&outliers, sentences.len().div_ceil(8)));
    Ok(s)
}
