//! all-MiniLM-L6-v2 (a 6-layer BERT) on the GPU, as an application writes it on int8-wgpu:
//! loading, buffers, and recording a whole batch forward into one command encoder.
//!
//! The linear layers are int8-wgpu's [`QuantizedLinear`](int8_wgpu::QuantizedLinear) (W8A16
//! bf16 or f16, W8A32, W8A8 or LLM.int8()), or, for the f32 baseline, the example's own dense f32
//! kernel; everything else (embeddings, LayerNorm, attention, GELU, pooling, normalisation) is
//! the example's own kernels (`ops.wgsl`). A [`ForwardPlan`] (`forward.rs`) holds every buffer,
//! parameter and bind group of a forward for one (batch, sequence length), made once;
//! [`Bert::embed`] writes the token ids, records the plan and its readback copy into one encoder,
//! and submits it once.
//!
//! Activations between the example's kernels are f32. A W8A16 model's linear layers take and
//! give 16-bit activations: the kernels around them read and write that dtype directly
//! (LayerNorm also writes a 16-bit copy of its f32 result, attention reads 16-bit q, k, v and
//! writes a 16-bit context, GELU maps 16-bit to 16-bit), so no conversion kernels run, while the
//! residual stream, LayerNorm statistics and softmax stay f32, as mixed-precision inference
//! does.

use std::sync::atomic::{AtomicU64, Ordering};

use int8_wgpu::checkpoint::Checkpoint;
use int8_wgpu::{ActivationQuant, Gpu, QuantScheme};

pub use super::config::{Config, Precision};
use super::forward::ForwardPlan;
use super::ops::{self, Kernels, Result};
use super::tokens::Batch;
use super::weights::{Layer, Linear, Loader, Norm};

/// The model on the GPU.
pub struct Bert {
    pub(super) gpu: Gpu,
    pub(super) kernels: Kernels,
    pub(super) config: Config,
    pub(super) precision: Precision,
    pub(super) word: wgpu::Buffer,
    pub(super) position: wgpu::Buffer,
    pub(super) token_type: wgpu::Buffer,
    pub(super) norm: Norm,
    pub(super) layers: Vec<Layer>,
    pub(super) weight_bytes: u64,
    pub(super) submissions: AtomicU64,
}

impl Bert {
    /// Loads a BERT checkpoint onto the GPU.
    ///
    /// A float checkpoint runs as `precision` says: [`Precision::F32`] keeps its weights,
    /// [`Precision::Int8`] quantizes each linear weight on the GPU now (symmetric, per output
    /// channel). A quantized checkpoint (any that [`Checkpoint::linear`] reads) runs its stored
    /// int8 layers, W8A8 or LLM.int8() as it records, with the activation dtype of `precision`,
    /// which must not be `F32`; `W8A8` or `LlmInt8` override its activation scheme. The pooler
    /// (`pooler.dense`) is not loaded: sentence embeddings mean-pool the last hidden states.
    ///
    /// Blocks on [`Bert::load_async`] (a browser awaits that).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(gpu: &Gpu, ckpt: &Checkpoint, precision: Precision) -> Result<Self> {
        Self::load_with(gpu, ckpt, precision, QuantScheme::default())
    }

    /// [`Bert::load`] quantizing a float checkpoint's linear weights with `scheme`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_with(gpu: &Gpu, ckpt: &Checkpoint, precision: Precision, scheme: QuantScheme) -> Result<Self> {
        pollster::block_on(Self::load_async(gpu, ckpt, precision, scheme))
    }

    /// Async form of [`Bert::load_with`]. In a browser the library's allocation and pipeline
    /// errors arrive at its next awaited readback, which [`ops::settle`] makes before returning.
    pub async fn load_async(gpu: &Gpu, ckpt: &Checkpoint, precision: Precision, scheme: QuantScheme) -> Result<Self> {
        let config = Config::from_json(ckpt.config().ok_or("the checkpoint has no config.json")?)?;
        let prefix = if ckpt.info("embeddings.word_embeddings.weight").is_some() {
            ""
        } else if ckpt.info("bert.embeddings.word_embeddings.weight").is_some() {
            "bert."
        } else {
            return Err("no `embeddings.word_embeddings.weight` in the checkpoint: not a BERT model".into());
        };
        let quantized = !ckpt.quantized_layers().is_empty();
        if quantized && precision == Precision::F32 {
            return Err(
                "this checkpoint's linear layers are int8; the dense f32 baseline needs the float checkpoint".into()
            );
        }
        let kernels = Kernels::new_async(gpu).await?;
        let mut l = Loader { gpu, ckpt, prefix, quantized, precision, scheme, bytes: 0 };
        let h = config.hidden;
        let word = l.upload("embeddings.word_embeddings.weight", &[config.vocab, h]).await?;
        let position = l.upload("embeddings.position_embeddings.weight", &[config.max_positions, h]).await?;
        let token_type = l.upload("embeddings.token_type_embeddings.weight", &[config.type_vocab, h]).await?;
        let norm = l.norm("embeddings.LayerNorm", h).await?;
        let mut layers = Vec::with_capacity(config.layers);
        for n in 0..config.layers {
            layers.push(l.layer(n, &config).await?);
        }
        let weight_bytes = l.bytes;
        ops::settle(gpu).await?;
        Ok(Self {
            gpu: gpu.clone(),
            kernels,
            config,
            precision,
            word,
            position,
            token_type,
            norm,
            layers,
            weight_bytes,
            submissions: AtomicU64::new(0),
        })
    }

    /// The device.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// LLM.int8(): each linear layer's outlier columns in the last forward (empty for the other
    /// precisions), as `(layer index, layer name, columns)`. Reads back from the GPU.
    pub fn outlier_columns(&self) -> Result<Vec<(usize, &'static str, Vec<usize>)>> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            for (name, lin) in l.linears() {
                if let Linear::Int8(q) = lin {
                    out.push((i, name, q.last_outlier_columns()?));
                }
            }
        }
        Ok(out)
    }

    /// How the linear layers quantize their activations: a quantized checkpoint's own W8A8 or
    /// LLM.int8() included, which [`Bert::precision`] (`Int8`: as the checkpoint says) does not name.
    pub fn activation_quant(&self) -> Option<ActivationQuant> {
        self.layers.first().and_then(Layer::activation_quant)
    }

    /// What the linear layers run, e.g. `int8 w8a8 (bf16 in and out)`.
    pub fn describe(&self) -> String {
        self.precision.describe(self.activation_quant())
    }

    /// Whether a token's result depends on the other rows of its batch: LLM.int8() picks its
    /// outlier columns over all rows, so padding rows and other sentences would change it.
    pub fn rows_interact(&self) -> bool {
        self.activation_quant().is_some_and(|a| a.outlier_threshold().is_some())
    }

    /// The model's shape.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// How its linear layers run.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Bytes of weights on the GPU: embedding tables, norms, linear weights (int8 with their
    /// scales, or f32) and biases.
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    /// Queue submissions made by [`Bert::embed`] so far: one per forward.
    pub fn submissions(&self) -> u64 {
        self.submissions.load(Ordering::Relaxed)
    }

    /// Embeds a tokenized batch with one queue submission: the token ids are written into the
    /// plan's buffers (`Queue::write_buffer`, carried by that same submission), the forward
    /// and its readback copy are recorded into one encoder and submitted, and the L2-normalised
    /// sentence embeddings are read back, one `Vec` of `hidden` values per sentence. Blocks on
    /// [`Bert::embed_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn embed(&self, plan: &ForwardPlan, batch: &Batch) -> Result<Vec<Vec<f32>>> {
        pollster::block_on(self.embed_async(plan, batch))
    }

    /// Async form of [`Bert::embed`].
    pub async fn embed_async(&self, plan: &ForwardPlan, batch: &Batch) -> Result<Vec<Vec<f32>>> {
        if (batch.batch, batch.seq) != (plan.batch, plan.seq) {
            return Err(format!(
                "the batch is {} x {} tokens; the plan was made for {} x {}",
                batch.batch, batch.seq, plan.batch, plan.seq
            )
            .into());
        }
        batch.check(&self.config)?;
        if self.rows_interact() && batch.mask.contains(&0) {
            return Err(
                "LLM.int8() picks its outlier columns over every row of a batch, so padding rows would change \
                        the sentences' embeddings: embed sentences of one length per batch (Bert::batches does)"
                    .into(),
            );
        }
        let queue = self.gpu.queue();
        queue.write_buffer(&plan.ids, 0, bytemuck::cast_slice(&batch.ids));
        queue.write_buffer(&plan.types, 0, bytemuck::cast_slice(&batch.types));
        queue.write_buffer(&plan.mask, 0, bytemuck::cast_slice(&batch.mask));
        let mut encoder = self.gpu.device().create_command_encoder(&Default::default());
        self.record(plan, &mut encoder)?;
        queue.submit([encoder.finish()]);
        self.submissions.fetch_add(1, Ordering::Relaxed);
        let bytes = ops::read_mapped_async(&self.gpu, &plan.staging, plan.staging.size()).await?;
        let values: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        Ok(values.chunks(self.config.hidden).map(<[f32]>::to_vec).collect())
    }

    /// The batches, each with its plan, that embed `sentences`: one batch padded to the longest,
    /// or under LLM.int8() ([`Bert::rows_interact`]) one per sentence, so that its embedding
    /// depends neither on padding nor on the other sentences. Blocks on
    /// [`Bert::batches_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn batches(&self, tokenizer: &tokenizers::Tokenizer, sentences: &[&str]) -> Result<Vec<(ForwardPlan, Batch)>> {
        pollster::block_on(self.batches_async(tokenizer, sentences))
    }

    /// Async form of [`Bert::batches`].
    pub async fn batches_async(
        &self,
        tokenizer: &tokenizers::Tokenizer,
        sentences: &[&str],
    ) -> Result<Vec<(ForwardPlan, Batch)>> {
        let groups: Vec<&[&str]> = if self.rows_interact() { sentences.chunks(1).collect() } else { vec![sentences] };
        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            let b = Batch::tokenize(tokenizer, g)?;
            out.push((self.plan_async(b.batch, b.seq).await?, b));
        }
        Ok(out)
    }

    /// Tokenizes, plans and embeds `sentences` ([`Bert::batches`]; loops should keep those).
    /// Blocks on [`Bert::embed_sentences_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn embed_sentences(&self, tokenizer: &tokenizers::Tokenizer, sentences: &[&str]) -> Result<Vec<Vec<f32>>> {
        pollster::block_on(self.embed_sentences_async(tokenizer, sentences))
    }

    /// Async form of [`Bert::embed_sentences`].
    pub async fn embed_sentences_async(
        &self,
        tokenizer: &tokenizers::Tokenizer,
        sentences: &[&str],
    ) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(sentences.len());
        for (plan, batch) in self.batches_async(tokenizer, sentences).await? {
            out.extend(self.embed_async(&plan, &batch).await?);
        }
        Ok(out)
    }
}
