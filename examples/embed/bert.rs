//! all-MiniLM-L6-v2 (a 6-layer BERT) on the GPU, as an application writes it on int8-wgpu:
//! loading, buffers, and recording a whole batch forward into one command encoder.
//!
//! The linear layers are int8-wgpu's [`QuantizedLinear`] (W8A16 bf16 or f16, W8A32, W8A8 or
//! LLM.int8()), or,
//! for the f32 baseline, the example's own dense f32 kernel; everything else (embeddings,
//! LayerNorm, attention, GELU, pooling, normalisation) is the example's own kernels
//! (`kernels.wgsl`). A [`Plan`] holds every buffer, parameter and bind group of a forward for
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

use int8_wgpu::{Checkpoint, DType, Gpu, GpuTensor, QuantScheme, QuantizedLinear};

pub use super::config::{Config, Precision};
use super::kernels::{self, Dispatch, Kernel, Kernels, Params, Result, Variant, slot};
use super::tokens::Batch;

/// One linear layer of the model.
enum Linear {
    Int8(Arc<QuantizedLinear>),
    /// The baseline: `[out, in]` f32 weight and `[out]` bias for the example's `dense` kernel.
    Dense {
        weight: wgpu::Buffer,
        bias: wgpu::Buffer,
        out: usize,
        inp: usize,
    },
}

/// LayerNorm weight and bias.
struct Norm {
    gamma: wgpu::Buffer,
    beta: wgpu::Buffer,
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    inter: Linear,
    out: Linear,
    out_norm: Norm,
}

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

/// Loads the float tensors and linear layers of one checkpoint, counting the bytes placed on
/// the GPU.
struct Loader<'a> {
    gpu: &'a Gpu,
    ckpt: &'a Checkpoint,
    prefix: &'static str,
    quantized: bool,
    precision: Precision,
    /// How a float checkpoint's linear weights are quantized at load.
    scheme: QuantScheme,
    bytes: u64,
}

impl Loader<'_> {
    fn floats(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let full = format!("{}{name}", self.prefix);
        let info = self.ckpt.info(&full).ok_or_else(|| format!("the checkpoint has no tensor `{full}`"))?;
        if info.shape != shape {
            return Err(format!("`{full}` has shape {:?}; this config needs {shape:?}", info.shape).into());
        }
        let v = self.ckpt.tensor_f32(&full)?;
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(format!("`{full}` holds a non-finite value at flat index {i}").into());
        }
        Ok(v)
    }

    fn upload(&mut self, name: &str, shape: &[usize]) -> Result<wgpu::Buffer> {
        let v = self.floats(name, shape)?;
        self.bytes += 4 * v.len() as u64;
        kernels::storage(self.gpu, name, 4 * v.len() as u64, Some(bytemuck::cast_slice(&v)))
    }

    fn norm(&mut self, name: &str, n: usize) -> Result<Norm> {
        Ok(Norm {
            gamma: self.upload(&format!("{name}.weight"), &[n])?,
            beta: self.upload(&format!("{name}.bias"), &[n])?,
        })
    }

    fn linear(&mut self, name: &str, out: usize, inp: usize) -> Result<Linear> {
        let act = match self.precision {
            Precision::F32 => {
                let weight = self.upload(&format!("{name}.weight"), &[out, inp])?;
                let bias = self.upload(&format!("{name}.bias"), &[out])?;
                return Ok(Linear::Dense { weight, bias, out, inp });
            }
            p => p.activation(),
        };
        let full = format!("{}{name}", self.prefix);
        let layer = if self.quantized {
            // Written by `int8-wgpu quantize` (or any 8-bit compressed-tensors checkpoint): the
            // stored ints and scales, the bias converted to the activation dtype.
            self.ckpt.linear_with(self.gpu, &full, act)?
        } else {
            // A float checkpoint: quantized on the GPU now, with the loader's scheme.
            let w = self.floats(&format!("{name}.weight"), &[out, inp])?;
            let b = self.floats(&format!("{name}.bias"), &[out])?;
            QuantizedLinear::from_float(self.gpu, &w, [out, inp], Some(&b), self.scheme, act)?
        };
        // A checkpoint that records W8A8 or LLM.int8() loads that way; the precision asked for
        // here overrides it only when it names one.
        let layer = match self.precision.activation_quant() {
            Some(a) => layer.with_activation_quant(a)?,
            None => layer,
        };
        if (layer.out_features(), layer.in_features()) != (out, inp) {
            return Err(format!(
                "`{full}` is [{}, {}]; this config needs [{out}, {inp}]",
                layer.out_features(),
                layer.in_features()
            )
            .into());
        }
        self.bytes += layer.weight().nbytes() + layer.bias().map_or(0, |b| b.buffer().size());
        Ok(Linear::Int8(Arc::new(layer)))
    }
}

impl Bert {
    /// Loads a BERT checkpoint onto the GPU.
    ///
    /// A float checkpoint runs as `precision` says: [`Precision::F32`] keeps its weights,
    /// [`Precision::Int8`] quantizes each linear weight on the GPU now (symmetric, per output
    /// channel). A quantized checkpoint (from `int8-wgpu quantize`) runs its stored int8 layers
    /// with the activation dtype of `precision`, which must then be `Int8`. The pooler
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
        let (h, i) = (config.hidden, config.intermediate);
        let word = l.upload("embeddings.word_embeddings.weight", &[config.vocab, h])?;
        let position = l.upload("embeddings.position_embeddings.weight", &[config.max_positions, h])?;
        let token_type = l.upload("embeddings.token_type_embeddings.weight", &[config.type_vocab, h])?;
        let norm = l.norm("embeddings.LayerNorm", h)?;
        let mut layers = Vec::with_capacity(config.layers);
        for n in 0..config.layers {
            let p = format!("encoder.layer.{n}");
            layers.push(Layer {
                query: l.linear(&format!("{p}.attention.self.query"), h, h)?,
                key: l.linear(&format!("{p}.attention.self.key"), h, h)?,
                value: l.linear(&format!("{p}.attention.self.value"), h, h)?,
                attn_out: l.linear(&format!("{p}.attention.output.dense"), h, h)?,
                attn_norm: l.norm(&format!("{p}.attention.output.LayerNorm"), h)?,
                inter: l.linear(&format!("{p}.intermediate.dense"), i, h)?,
                out: l.linear(&format!("{p}.output.dense"), h, i)?,
                out_norm: l.norm(&format!("{p}.output.LayerNorm"), h)?,
            });
        }
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
            for (name, lin) in [
                ("attention.self.query", &l.query),
                ("attention.self.key", &l.key),
                ("attention.self.value", &l.value),
                ("attention.output.dense", &l.attn_out),
                ("intermediate.dense", &l.inter),
                ("output.dense", &l.out),
            ] {
                if let Linear::Int8(q) = lin {
                    out.push((i, name, q.last_outlier_columns()?));
                }
            }
        }
        Ok(out)
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
            let b = kernels::storage(gpu, label, (len * size) as u64, None)?;
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
        let queue = self.gpu.queue();
        queue.write_buffer(&plan.ids, 0, bytemuck::cast_slice(&batch.ids));
        queue.write_buffer(&plan.types, 0, bytemuck::cast_slice(&batch.types));
        queue.write_buffer(&plan.mask, 0, bytemuck::cast_slice(&batch.mask));
        let mut encoder = self.gpu.device().create_command_encoder(&Default::default());
        self.record(plan, &mut encoder)?;
        queue.submit([encoder.finish()]);
        self.submissions.fetch_add(1, Ordering::Relaxed);
        let bytes = kernels::read_mapped(&self.gpu, &plan.staging, plan.staging.size())?;
        let values: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        Ok(values.chunks(self.config.hidden).map(<[f32]>::to_vec).collect())
    }

    /// Tokenizes, plans and embeds `sentences` in one batch (a plan per call: loops should keep
    /// their [`Plan`]).
    pub fn embed_sentences(&self, tokenizer: &tokenizers::Tokenizer, sentences: &[&str]) -> Result<Vec<Vec<f32>>> {
        let batch = Batch::tokenize(tokenizer, sentences)?;
        self.embed(&self.plan(batch.batch, batch.seq)?, &batch)
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
