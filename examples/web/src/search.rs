//! What the page calls: [`SemanticSearch::load`] opens WebGPU, reads the checkpoint from the
//! fetched bytes and embeds the corpus; [`SemanticSearch::query`] embeds a query and ranks the
//! corpus by cosine similarity. Every GPU wait is awaited (a page's main thread cannot block).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use int8_wgpu::checkpoint::Checkpoint;
use int8_wgpu::{Gpu, GpuOptions, QuantScheme};
use serde_json::json;
use wasm_bindgen::prelude::*;

use crate::minilm::bert::{Bert, Precision};
use crate::minilm::forward::ForwardPlan;
use crate::minilm::ops::Result;
use crate::minilm::tokens::{self, Batch};

/// The model on the page's GPU, its tokenizer, and the corpus with its embeddings.
#[wasm_bindgen]
pub struct SemanticSearch {
    inner: Rc<Inner>,
}

struct Inner {
    bert: Bert,
    tokenizer: tokenizers::Tokenizer,
    corpus: Vec<String>,
    corpus_embeddings: Vec<Vec<f32>>,
    /// A query's forward plan per token count, made by the first query of that length (a plan
    /// allocates its buffers and bind groups; a forward then creates no GPU object).
    plans: RefCell<HashMap<usize, Rc<ForwardPlan>>>,
}

#[wasm_bindgen]
impl SemanticSearch {
    /// Opens the GPU, reads the checkpoint from the bytes of its `model.safetensors` and the
    /// text of its `config.json` (`Checkpoint::from_bytes`), loads the model as its layers
    /// record (an `int8-wgpu quantize` checkpoint: W8A16), builds the tokenizer from
    /// `tokenizer.json` (truncating at `sentence_bert_config.json`'s `max_seq_length`, as
    /// sentence-transformers does), and embeds `corpus`.
    pub async fn load(
        model: Vec<u8>,
        config_json: String,
        tokenizer_json: Vec<u8>,
        sentence_bert_config: Option<String>,
        corpus: Vec<String>,
    ) -> std::result::Result<SemanticSearch, JsError> {
        Inner::load(model, &config_json, &tokenizer_json, sentence_bert_config.as_deref(), corpus)
            .await
            .map(|inner| SemanticSearch { inner: Rc::new(inner) })
            .map_err(|e| JsError::new(&e.to_string()))
    }

    /// The adapter as wgpu reports it: its backend and type (wgpu's WebGPU backend leaves the
    /// name and driver empty; the page asks the browser for those).
    pub fn adapter(&self) -> String {
        let gpu = self.inner.bert.gpu();
        match gpu.adapter_info() {
            Some(i) if i.name.is_empty() => format!("{:?}, {:?}", i.backend, i.device_type),
            _ => gpu.describe(),
        }
    }

    /// What the linear layers run, e.g. `int8 w8a16 (bf16 in and out)`.
    pub fn precision(&self) -> String {
        self.inner.bert.describe()
    }

    /// Bytes of weights on the GPU.
    pub fn weight_bytes(&self) -> f64 {
        self.inner.bert.weight_bytes() as f64
    }

    /// The corpus' embeddings as a JSON array of arrays (one per sentence, in order).
    pub fn corpus_embeddings_json(&self) -> String {
        json!(self.inner.corpus_embeddings).to_string()
    }

    /// Embeds `text` and ranks the corpus: resolves to a JSON text `{"tokens", "embedding",
    /// "ranking": [{"index", "sentence", "score"}]}`, best first (score: cosine similarity).
    pub fn query(&self, text: String) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            match inner.query(&text).await {
                Ok(json) => Ok(JsValue::from_str(&json)),
                Err(e) => Err(JsError::new(&e.to_string()).into()),
            }
        })
    }
}

impl Inner {
    async fn load(
        model: Vec<u8>,
        config_json: &str,
        tokenizer_json: &[u8],
        sentence_bert_config: Option<&str>,
        corpus: Vec<String>,
    ) -> Result<Self> {
        let tokenizer = tokens::tokenizer_from_bytes(tokenizer_json, tokens::max_seq_length_in(sentence_bert_config))?;
        let ckpt = Checkpoint::from_bytes(model, Some(config_json))?;
        let gpu = Gpu::with_options_async(GpuOptions::default()).await?;
        let precision = Precision::Int8(ckpt.activation_dtype());
        let bert = Bert::load_async(&gpu, &ckpt, precision, QuantScheme::default()).await?;
        let sentences: Vec<&str> = corpus.iter().map(String::as_str).collect();
        let corpus_embeddings = bert.embed_sentences_async(&tokenizer, &sentences).await?;
        Ok(Self { bert, tokenizer, corpus, corpus_embeddings, plans: RefCell::default() })
    }

    async fn plan(&self, seq: usize) -> Result<Rc<ForwardPlan>> {
        let kept = self.plans.borrow().get(&seq).cloned();
        if let Some(plan) = kept {
            return Ok(plan);
        }
        let plan = Rc::new(self.bert.plan_async(1, seq).await?);
        self.plans.borrow_mut().insert(seq, plan.clone());
        Ok(plan)
    }

    async fn query(&self, text: &str) -> Result<String> {
        let batch = Batch::tokenize(&self.tokenizer, &[text])?;
        let plan = self.plan(batch.seq).await?;
        let embedding = self.bert.embed_async(&plan, &batch).await?.pop().ok_or("the forward returned no embedding")?;
        let mut ranking: Vec<(usize, f64)> =
            self.corpus_embeddings.iter().map(|e| cosine(e, &embedding)).enumerate().collect();
        ranking.sort_by(|a, b| b.1.total_cmp(&a.1));
        let ranking: Vec<_> = ranking
            .iter()
            .map(|&(i, score)| json!({ "index": i, "sentence": self.corpus[i], "score": score }))
            .collect();
        Ok(json!({ "tokens": batch.seq, "embedding": embedding, "ranking": ranking }).to_string())
    }
}

/// Cosine similarity, in f64.
fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(&p, &q)| f64::from(p) * f64::from(q)).sum::<f64>();
    dot(a, b) / (dot(a, a) * dot(b, b)).sqrt().max(f64::MIN_POSITIVE)
}
