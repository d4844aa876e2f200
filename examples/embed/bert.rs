//! all-MiniLM-L6-v2 (a 6-layer BERT) on the GPU, as an application writes it on int8-wgpu:
//! loading, buffers, and recording a whole batch forward into one command encoder.
//!
//! The linear layers are int8-wgpu's [`QuantizedLinear`] (W8A16 bf16 or f16, W8A32, W8A8 or
//! LLM.int8()), or,
//! for the f32 baseline, the example's own dense f32 kernel; everything else (embeddings,
//! LayerNorm, attention, GELU, pooling, normalisation) is the example's own kernels
//! (`ops.wgsl`). A [`Plan`] holds every buffer, parameter and bind group of a forward for
//! one (batch, sequence length), made once; [`Bert::embed`] writes the token ids, records the
//! plan and its readback copy into one encoder, and submits it once.
//!
//! Activations between the example's kernels are f32. A W8A16 model's linear layers take and
//! give 16-bit activations: the kernels around them read and write that dtype directly
//! (LayerNorm also writes a 16-bit copy of its f32 result, attention reads 16-bit q, k, v and
//! writes a 16-bit context, GELU maps 16-bit to 16-bit), so no conversion kernels run, while the
//! residual stream, LayerNorm statistics and softmax stay f32, as mixed-precision inference
//! does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use int8_wgpu::checkpoint::Checkpoint;
use int8_wgpu::{ActivationQuant, DType, Gpu, GpuTensor, QuantScheme, QuantizedLinear};

pub use super::config::{Config, Precision};
use super::ops::{self, Dispatch, Kernel, Kernels, Params, Result, Variant, slot};
use super::tokens::Batch;
use super::weights::{Layer, Linear, Loader, Norm};

/// The model on the GPU.
pub struct Bert {
    gpu: Gpu,
    kernels: Kernels,
    config: Config,
    precision: Precision,
    word: wgpu::Buffer,
    position: wgpu::Buffer,
    token_type: wgpu::Buffer,
    norm: Norm,
    layers: Vec<Layer>,
    weight_bytes: u64,
    submissions: AtomicU64,
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
    pub fn load(gpu: &Gpu, ckpt: &Checkpoint, precision: Precision) -> Result<Self> {
        Self::load_with(gpu, ckpt, precision, QuantScheme::default())
    }

    /// [`Bert::load`] quantizing a float checkpoint's linear weights with `scheme`.
    pub fn load_with(gpu: &Gpu, ckpt: &Checkpoint, precision: Precision, scheme: QuantScheme) -> Result<Self> {
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
        let kernels = Kernels::new(gpu)?;
        let mut l = Loader { gpu, ckpt, prefix, quantized, precision, scheme, bytes: 0 };
        let h = config.hidden;
        let word = l.upload("embeddings.word_embeddings.weight", &[config.vocab, h])?;
        let position = l.upload("embeddings.position_embeddings.weight", &[config.max_positions, h])?;
        let token_type = l.upload("embeddings.token_type_embeddings.weight", &[config.type_vocab, h])?;
        let norm = l.norm("embeddings.LayerNorm", h)?;
        let layers = (0..config.layers).map(|n| l.layer(n, &config)).collect::<Result<Vec<_>>>()?;
        let weight_bytes = l.bytes;
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

    /// Makes every buffer, parameter and bind group of a forward over `batch` sentences of
    /// `seq` tokens (padded), and prepares the int8 layers' dispatches for them, so that
    /// recording the plan creates no GPU object.
    pub fn plan(&self, batch: usize, seq: usize) -> Result<Plan> {
        let c = &self.config;
        if batch == 0 || seq == 0 {
            return Err(format!("a batch of {batch} sentences of {seq} tokens is empty").into());
        }
        if seq > c.max_positions {
            return Err(format!("{seq} tokens; the model has positions for {}", c.max_positions).into());
        }
        let (h, inner, heads) = (c.hidden, c.intermediate, c.heads);
        let widest = h.max(inner);
        let m = batch.checked_mul(seq).filter(|&m| m.checked_mul(widest).is_some_and(|x| x < u32::MAX as usize));
        let m = m.ok_or_else(|| format!("{batch} x {seq} tokens is too many for 32-bit indexing"))?;
        let probs_len = (batch * heads).checked_mul(seq * seq).filter(|&x| x < u32::MAX as usize);
        let probs_len = probs_len.ok_or("the attention probabilities need 32-bit indexing")?;
        let act = self.precision.activation();
        let gpu = &self.gpu;
        let mut bytes = 0u64;
        let mut buffer = |label: &str, len: usize, size: usize| -> Result<wgpu::Buffer> {
            let b = ops::storage(gpu, label, (len * size) as u64, None)?;
            bytes += b.size();
            Ok(b)
        };
        let ids = buffer("token ids", m, 4)?;
        let types = buffer("token type ids", m, 4)?;
        let mask = buffer("attention mask", m, 4)?;
        let emb = buffer("embeddings", m * h, 4)?;
        let hs = buffer("hidden states", m * h, 4)?;
        let h1 = buffer("attention block output", m * h, 4)?;
        // With f32 linear layers the f32 results are their inputs; else 16-bit copies.
        let (hs_act, h1_act) = if act == DType::F32 {
            (hs.clone(), h1.clone())
        } else {
            (
                buffer("hidden states (act)", m * h, act.size())?,
                buffer("attention block output (act)", m * h, act.size())?,
            )
        };
        let q = buffer("query", m * h, act.size())?;
        let k = buffer("key", m * h, act.size())?;
        let v = buffer("value", m * h, act.size())?;
        let ctx = buffer("attention context", m * h, act.size())?;
        let proj = buffer("projection", m * h, act.size())?;
        let probs = buffer("attention probabilities", probs_len, 4)?;
        let inter = buffer("mlp", m * inner, act.size())?;
        let gelu = buffer("mlp gelu", m * inner, act.size())?;
        let pooled = buffer("pooled", batch * h, 4)?;
        let out = buffer("sentence embeddings", batch * h, 4)?;
        let staging = gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("sentence embeddings readback"),
            size: (batch * h * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        bytes += staging.size();

        let base = Params {
            m: m as u32,
            n: h as u32,
            k: c.max_positions as u32,
            seq: seq as u32,
            heads: heads as u32,
            head_dim: c.head_dim() as u32,
            eps: c.eps,
            scale: 1.0 / (c.head_dim() as f32).sqrt(),
        };
        let [i0, i1, i2, i3, i4] = slot::IN;
        let [o0, o1] = slot::OUT;
        let kn = &self.kernels;
        let to_act = Variant { out_dt: act, write_act: act != DType::F32, ..Variant::default() };
        let act_in = Variant { in_dt: act, out_dt: act, ..Variant::default() };
        let act_norm = Variant { in_dt: act, residual: true, ..to_act };
        let mut steps = Vec::new();
        let mut app = |d: Dispatch| steps.push(Step::App(d));
        app(kn.dispatch(
            Kernel::Embed,
            Variant::default(),
            base,
            &[(i0, &ids), (i1, &types), (i2, &self.word), (i3, &self.position), (i4, &self.token_type), (o0, &emb)],
        )?);
        app(kn.dispatch(
            Kernel::LayerNorm,
            to_act,
            base,
            &[(i0, &emb), (i2, &self.norm.gamma), (i3, &self.norm.beta), (o0, &hs), (o1, &hs_act)]
                [..if act == DType::F32 { 4 } else { 5 }],
        )?);
        for layer in &self.layers {
            self.linear_step(&mut steps, &layer.query, m, &hs_act, &q)?;
            self.linear_step(&mut steps, &layer.key, m, &hs_act, &k)?;
            self.linear_step(&mut steps, &layer.value, m, &hs_act, &v)?;
            let mut app = |d: Dispatch| steps.push(Step::App(d));
            app(kn.dispatch(Kernel::AttentionProbs, act_in, base, &[(i0, &q), (i1, &k), (i3, &mask), (o0, &probs)])?);
            app(kn.dispatch(Kernel::AttentionContext, act_in, base, &[(i0, &probs), (i2, &v), (o0, &ctx)])?);
            self.linear_step(&mut steps, &layer.attn_out, m, &ctx, &proj)?;
            let n = &layer.attn_norm;
            let mut binds = vec![(i0, &proj), (i1, &hs), (i2, &n.gamma), (i3, &n.beta), (o0, &h1)];
            if act != DType::F32 {
                binds.push((o1, &h1_act));
            }
            steps.push(Step::App(kn.dispatch(Kernel::LayerNorm, act_norm, base, &binds)?));
            self.linear_step(&mut steps, &layer.inter, m, &h1_act, &inter)?;
            let wide = Params { n: inner as u32, ..base };
            steps.push(Step::App(kn.dispatch(Kernel::Gelu, act_in, wide, &[(i0, &inter), (o0, &gelu)])?));
            self.linear_step(&mut steps, &layer.out, m, &gelu, &proj)?;
            let n = &layer.out_norm;
            let mut binds = vec![(i0, &proj), (i1, &h1), (i2, &n.gamma), (i3, &n.beta), (o0, &hs)];
            if act != DType::F32 {
                binds.push((o1, &hs_act));
            }
            steps.push(Step::App(kn.dispatch(Kernel::LayerNorm, act_norm, base, &binds)?));
        }
        let mut app = |d: Dispatch| steps.push(Step::App(d));
        app(kn.dispatch(Kernel::MeanPool, Variant::default(), base, &[(i0, &hs), (i3, &mask), (o0, &pooled)])?);
        let rows = Params { m: batch as u32, ..base };
        app(kn.dispatch(Kernel::L2Normalize, Variant::default(), rows, &[(i0, &pooled), (o0, &out)])?);

        let plan = Plan { batch, seq, ids, types, mask, out, staging, steps, bytes };
        // Recording once, into an encoder that is dropped unsubmitted, makes the int8 layers'
        // bind groups for these buffers now rather than in the first forward.
        self.record(&plan, &mut gpu.device().create_command_encoder(&Default::default()))?;
        Ok(plan)
    }

    fn linear_step(
        &self,
        steps: &mut Vec<Step>,
        linear: &Linear,
        m: usize,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Result<()> {
        steps.push(match linear {
            Linear::Int8(layer) => {
                let act = layer.activation_dtype();
                // The application's buffers, wrapped: no copies.
                let x = GpuTensor::from_buffer(&self.gpu, x.clone(), &[m, layer.in_features()], act)?;
                let y = GpuTensor::from_buffer(&self.gpu, y.clone(), &[m, layer.out_features()], act)?;
                Step::Int8 { layer: layer.clone(), x, y }
            }
            Linear::Dense { weight, bias, out, inp } => {
                let p = Params { m: m as u32, n: *out as u32, k: *inp as u32, ..Params::default() };
                let [i0, i1, i2, _, _] = slot::IN;
                let binds = [(i0, x), (i1, weight), (i2, bias), (slot::OUT[0], y)];
                Step::App(self.kernels.dispatch(Kernel::Dense, Variant::default(), p, &binds)?)
            }
        });
        Ok(())
    }

    /// Records the whole forward of `plan` into `encoder` — one compute pass of every kernel and
    /// layer in order, then the copy of the sentence embeddings into the plan's readback
    /// buffer — without submitting anything. Creates no GPU object.
    pub fn record(&self, plan: &Plan, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("minilm forward"),
                timestamp_writes: None,
            });
            for step in &plan.steps {
                match step {
                    Step::App(d) => d.record(&mut pass),
                    Step::Int8 { layer, x, y } => layer.record(&mut pass, x, y)?,
                }
            }
        }
        encoder.copy_buffer_to_buffer(&plan.out, 0, &plan.staging, 0, plan.staging.size());
        Ok(())
    }

    /// Embeds a tokenized batch with one queue submission: the token ids are written into the
    /// plan's buffers (`Queue::write_buffer`, carried by that same submission), the forward
    /// and its readback copy are recorded into one encoder and submitted, and the L2-normalised
    /// sentence embeddings are read back, one `Vec` of `hidden` values per sentence.
    pub fn embed(&self, plan: &Plan, batch: &Batch) -> Result<Vec<Vec<f32>>> {
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
        let bytes = ops::read_mapped(&self.gpu, &plan.staging, plan.staging.size())?;
        let values: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        Ok(values.chunks(self.config.hidden).map(<[f32]>::to_vec).collect())
    }

    /// The batches, each with its plan, that embed `sentences`: one batch padded to the longest,
    /// or under LLM.int8() ([`Bert::rows_interact`]) one per sentence, so that its embedding
    /// depends neither on padding nor on the other sentences.
    pub fn batches(&self, tokenizer: &tokenizers::Tokenizer, sentences: &[&str]) -> Result<Vec<(Plan, Batch)>> {
        let groups: Vec<&[&str]> = if self.rows_interact() { sentences.chunks(1).collect() } else { vec![sentences] };
        let batch = |g: &[&str]| Batch::tokenize(tokenizer, g).and_then(|b| Ok((self.plan(b.batch, b.seq)?, b)));
        groups.into_iter().map(batch).collect()
    }

    /// Tokenizes, plans and embeds `sentences` ([`Bert::batches`]; loops should keep those).
    pub fn embed_sentences(&self, tokenizer: &tokenizers::Tokenizer, sentences: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(sentences.len());
        for (plan, batch) in self.batches(tokenizer, sentences)? {
            out.extend(self.embed(&plan, &batch)?);
        }
        Ok(out)
    }
}

enum Step {
    App(Dispatch),
    Int8 { layer: Arc<QuantizedLinear>, x: GpuTensor, y: GpuTensor },
}

/// Everything a forward over one (batch, sequence length) needs on the GPU, made once by
/// [`Bert::plan`].
pub struct Plan {
    batch: usize,
    seq: usize,
    ids: wgpu::Buffer,
    types: wgpu::Buffer,
    mask: wgpu::Buffer,
    out: wgpu::Buffer,
    staging: wgpu::Buffer,
    steps: Vec<Step>,
    bytes: u64,
}

impl Plan {
    /// Sentences per forward.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Tokens per (padded) sentence.
    pub fn seq(&self) -> usize {
        self.seq
    }

    /// Bytes of activation, input and readback buffers this plan holds on the GPU.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Dispatches recorded per forward: the example's kernels, and the int8 layers (each of
    /// which may record more than one dispatch).
    pub fn counts(&self) -> (usize, usize) {
        let app = self.steps.iter().filter(|s| matches!(s, Step::App(_))).count();
        (app, self.steps.len() - app)
    }
}
