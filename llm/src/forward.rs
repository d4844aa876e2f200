//! A forward pass over `n` new tokens: every buffer, parameter and bind group made once
//! ([`Plan::new`]), and its recording into an encoder ([`Plan::record`]), which creates no GPU
//! object.

use std::sync::Arc;

use int8_wgpu::{DType, GpuTensor, QuantizedLinear};

use crate::Result;
use crate::model::Model;
use crate::ops::{self, Dispatch, Kernel, Params, Variant, slot};
use crate::weights::Linear;

/// The GPU state a session keeps between passes: the KV cache and the position of the next
/// token.
pub struct Cache {
    /// Per block: keys and values `[max_len, kv_heads · head_dim]` f32, RoPE applied to keys.
    pub kv: Vec<(wgpu::Buffer, wgpu::Buffer)>,
    /// `[start]`: the position of the pass's first token, written before each submission.
    pub meta: wgpu::Buffer,
    /// Rows of the cache.
    pub max_len: usize,
}

impl Cache {
    /// A zeroed cache of `max_len` positions.
    pub fn new(model: &Model, max_len: usize) -> Result<Self> {
        let c = model.config();
        let bytes = (max_len * c.kv_dim() * 4) as u64;
        let gpu = model.gpu();
        let kv = (0..c.params.block_count)
            .map(|b| {
                Ok((
                    ops::storage(gpu, &format!("keys {b}"), bytes, None)?,
                    ops::storage(gpu, &format!("values {b}"), bytes, None)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let meta = ops::storage(gpu, "start position", 4, None)?;
        Ok(Cache { kv, meta, max_len })
    }
}

pub(crate) enum Step {
    App(Dispatch),
    Int8 { layer: Arc<QuantizedLinear>, x: GpuTensor, y: GpuTensor },
}

/// Everything one pass over `n` tokens needs on the GPU, bound to one [`Cache`].
pub struct Plan {
    pub(crate) n: usize,
    pub(crate) ids: wgpu::Buffer,
    pub(crate) blocks: Vec<Step>,
    /// Each block step's kernel (`labels[i]` names `blocks[i]`).
    pub(crate) labels: Vec<String>,
    /// The final norm's output, and the last row of it when only that row's logits are made.
    normed: wgpu::Buffer,
    last: Option<wgpu::Buffer>,
    pub(crate) head: Step,
    pub(crate) head_label: String,
    logits: wgpu::Buffer,
    pub(crate) staging: wgpu::Buffer,
}

struct Builder<'a> {
    model: &'a Model,
    m: usize,
    steps: Vec<Step>,
    /// Each step's kernel, for [`Plan::profile`].
    labels: Vec<String>,
}

impl Builder<'_> {
    fn app(&mut self, kernel: Kernel, v: Variant, p: Params, binds: &[(u32, &wgpu::Buffer)]) -> Result<()> {
        self.steps.push(Step::App(self.model.kernels().dispatch(kernel, v, p, binds)?));
        self.labels.push(kernel.entry().to_string());
        Ok(())
    }

    fn linear(&mut self, linear: &Linear, x: &wgpu::Buffer, y: &wgpu::Buffer) -> Result<()> {
        let step = linear_step(self.model, linear, self.m, x, y)?;
        self.labels.push(linear_label(linear));
        self.steps.push(step);
        Ok(())
    }
}

/// A linear layer's kernel and shape, e.g. `int8 [1536, 576]`.
fn linear_label(linear: &Linear) -> String {
    match linear {
        Linear::Int8(layer) => format!("int8 [{}, {}]", layer.out_features(), layer.in_features()),
        Linear::Dense { out, inp, .. } => format!("dense f32 [{out}, {inp}]"),
    }
}

/// Records one step into a pass.
pub(crate) fn record_step(pass: &mut wgpu::ComputePass<'_>, step: &Step) -> int8_wgpu::Result<()> {
    match step {
        Step::App(d) => d.record(pass),
        Step::Int8 { layer, x, y } => layer.record(pass, x, y)?,
    }
    Ok(())
}

fn linear_step(model: &Model, linear: &Linear, m: usize, x: &wgpu::Buffer, y: &wgpu::Buffer) -> Result<Step> {
    Ok(match linear {
        Linear::Int8(layer) => {
            let (act, gpu) = (layer.activation_dtype(), model.gpu());
            // The app's buffers, wrapped: no copies.
            let x = GpuTensor::from_buffer(gpu, x.clone(), &[m, layer.in_features()], act)?;
            let y = GpuTensor::from_buffer(gpu, y.clone(), &[m, layer.out_features()], act)?;
            Step::Int8 { layer: layer.clone(), x, y }
        }
        Linear::Dense { weight, out, inp } => {
            let p = Params { m: m as u32, n: *out as u32, k: *inp as u32, ..Params::default() };
            let [i0, i1, ..] = slot::IN;
            let binds = [(i0, x), (i1, weight), (slot::OUT[0], y)];
            Step::App(model.kernels().dispatch(Kernel::Dense, Variant::default(), p, &binds)?)
        }
    })
}

impl Plan {
    /// Makes the buffers and dispatches of a pass over `n` tokens appended to `cache`, with the
    /// logits of every row (`all_logits`) or of the last.
    pub fn new(model: &Model, cache: &Cache, n: usize, all_logits: bool) -> Result<Plan> {
        let c = model.config();
        let p = &c.params;
        let (h, kv, ffn, vocab) = (p.embedding_length, c.kv_dim(), p.feed_forward_length, p.vocab_size);
        if n == 0 || n > cache.max_len {
            return Err(format!("a pass over {n} tokens with a cache of {} positions", cache.max_len).into());
        }
        let rows = if all_logits { n } else { 1 };
        let big = [n * p.head_count * cache.max_len, rows * vocab, n * ffn];
        if big.iter().any(|&x| x >= (u32::MAX / 4) as usize) {
            return Err(format!("{n} tokens over {} positions is too many for 32-bit indexing", cache.max_len).into());
        }
        let gpu = model.gpu();
        let act = model.mode().activation();
        let buffer = |label: &str, len: usize, dt: DType| ops::storage(gpu, label, (len * dt.size()) as u64, None);
        let f32_ = DType::F32;
        let ids = buffer("token ids", n, f32_)?;
        let x = buffer("residual stream", n * h, f32_)?;
        let xa = buffer("normed", n * h, act)?;
        let (q, k, v) = (buffer("query", n * h, act)?, buffer("key", n * kv, act)?, buffer("value", n * kv, act)?);
        let qr = buffer("rotated query", n * h, f32_)?;
        let scores = buffer("attention scores", n * p.head_count * cache.max_len, f32_)?;
        let ctx = buffer("attention context", n * h, act)?;
        let proj = buffer("block output", n * h, act)?;
        let (gate, up) = (buffer("gate", n * ffn, act)?, buffer("up", n * ffn, act)?);
        let mid = buffer("swiglu", n * ffn, act)?;
        let normed = buffer("final norm", n * h, f32_)?;
        let last = if all_logits || n == 1 { None } else { Some(buffer("final norm, last row", h, f32_)?) };
        let logits = buffer("logits", rows * vocab, f32_)?;
        let staging = gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("logits readback"),
            size: logits.size(),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });

        let base = Params {
            m: n as u32,
            n: h as u32,
            k: cache.max_len as u32,
            heads: p.head_count as u32,
            kv_heads: p.head_count_kv as u32,
            head_dim: c.head_dim as u32,
            eps: p.rms_norm_eps,
            scale: 1.0 / (c.head_dim as f32).sqrt(),
        };
        let [i0, i1, i2, i3, i4] = slot::IN;
        let [o0, o1, o2] = slot::OUT;
        let w = model.weights();
        let mut b = Builder { model, m: n, steps: Vec::new(), labels: Vec::new() };
        b.steps.push(Step::App(w.embed.dispatch(model.kernels(), base, &ids, &x)?));
        b.labels.push("embedding".into());
        let first = Variant { out_dt: act, ..Variant::default() };
        b.app(Kernel::RmsNorm, first, base, &[(i1, &w.blocks[0].attn_norm), (o0, &x), (o1, &xa)])?;
        let add_norm = Variant { in_dt: act, out_dt: act, residual: true };
        for (i, blk) in w.blocks.iter().enumerate() {
            b.linear(&blk.q, &xa, &q)?;
            b.linear(&blk.k, &xa, &k)?;
            b.linear(&blk.v, &xa, &v)?;
            let (kc, vc) = &cache.kv[i];
            let rope = Variant { in_dt: act, ..Variant::default() };
            let binds = [(i0, &q), (i1, &k), (i2, &v), (i3, &cache.meta), (i4, &w.rope), (o0, &qr), (o1, kc), (o2, vc)];
            b.app(Kernel::RopeKv, rope, base, &binds)?;
            let attn = Variant { out_dt: act, ..Variant::default() };
            let binds = [(i0, &qr), (i1, kc), (i2, vc), (i3, &cache.meta), (o0, &ctx), (o1, &scores)];
            b.app(Kernel::Attention, attn, base, &binds)?;
            b.linear(&blk.o, &ctx, &proj)?;
            b.app(Kernel::RmsNorm, add_norm, base, &[(i0, &proj), (i1, &blk.ffn_norm), (o0, &x), (o1, &xa)])?;
            b.linear(&blk.gate, &xa, &gate)?;
            b.linear(&blk.up, &xa, &up)?;
            let wide = Params { n: ffn as u32, ..base };
            b.app(
                Kernel::Swiglu,
                Variant { in_dt: act, out_dt: act, residual: false },
                wide,
                &[(i0, &gate), (i1, &up), (o0, &mid)],
            )?;
            b.linear(&blk.down, &mid, &proj)?;
            // The next block's attention norm, or the final norm (f32 out: the output projection
            // runs on f32 activations in every mode).
            let (gamma, out, v) = match w.blocks.get(i + 1) {
                Some(next) => (&next.attn_norm, &xa, add_norm),
                None => (&w.output_norm, &normed, Variant { out_dt: f32_, ..add_norm }),
            };
            b.app(Kernel::RmsNorm, v, base, &[(i0, &proj), (i1, gamma), (o0, &x), (o1, out)])?;
        }
        let head = linear_step(model, &w.output, rows, last.as_ref().unwrap_or(&normed), &logits)?;
        let head_label = format!("{} (output projection)", linear_label(&w.output));
        let plan = Plan { n, ids, blocks: b.steps, labels: b.labels, normed, last, head, head_label, logits, staging };
        // Recording once, into an encoder dropped unsubmitted, makes the int8 layers' bind
        // groups now rather than in the first pass.
        plan.record(&mut gpu.device().create_command_encoder(&Default::default()))?;
        Ok(plan)
    }

    /// Records the pass into `encoder`: the blocks in one compute pass, the output projection
    /// (of the last row only, copied out, unless every row's logits are wanted), and the copy of
    /// the logits into the readback buffer. Creates no GPU object.
    pub fn record(&self, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        let run = |pass: &mut wgpu::ComputePass<'_>, step: &Step| -> Result<()> { Ok(record_step(pass, step)?) };
        {
            let mut pass = encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("llm blocks"), timestamp_writes: None });
            for step in &self.blocks {
                run(&mut pass, step)?;
            }
        }
        if let Some(last) = &self.last {
            let row = last.size();
            encoder.copy_buffer_to_buffer(&self.normed, (self.n as u64 - 1) * row, last, 0, row);
        }
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("llm output projection"),
                timestamp_writes: None,
            });
            run(&mut pass, &self.head)?;
        }
        encoder.copy_buffer_to_buffer(&self.logits, 0, &self.staging, 0, self.staging.size());
        Ok(())
    }
}
