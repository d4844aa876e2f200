//! A forward of the MiniLM example: every buffer, parameter and bind group of a forward over one
//! (batch, sequence length), made once ([`Bert::plan`]), and its recording into an app's
//! encoder ([`Bert::record`]), which creates no GPU object.

use std::sync::Arc;

use int8_wgpu::{DType, GpuTensor, QuantizedLinear};

use super::bert::Bert;
use super::ops::{self, Dispatch, Kernel, Params, Result, Variant, slot};
use super::weights::Linear;

impl Bert {
    /// Makes every buffer, parameter and bind group of a forward over `batch` sentences of
    /// `seq` tokens (padded), and prepares the int8 layers' dispatches for them, so that
    /// recording the plan creates no GPU object. Blocks on [`Bert::plan_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn plan(&self, batch: usize, seq: usize) -> Result<ForwardPlan> {
        pollster::block_on(self.plan_async(batch, seq))
    }

    /// Async form of [`Bert::plan`].
    pub async fn plan_async(&self, batch: usize, seq: usize) -> Result<ForwardPlan> {
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
        // Allocates `len` elements of `size` bytes, counted in the plan's bytes.
        macro_rules! buffer {
            ($label:expr, $len:expr, $size:expr) => {{
                let b = ops::storage_async(gpu, $label, ($len * $size) as u64, None).await?;
                bytes += b.size();
                b
            }};
        }
        let ids = buffer!("token ids", m, 4);
        let types = buffer!("token type ids", m, 4);
        let mask = buffer!("attention mask", m, 4);
        let emb = buffer!("embeddings", m * h, 4);
        let hs = buffer!("hidden states", m * h, 4);
        let h1 = buffer!("attention block output", m * h, 4);
        // With f32 linear layers the f32 results are their inputs; else 16-bit copies.
        let (hs_act, h1_act) = if act == DType::F32 {
            (hs.clone(), h1.clone())
        } else {
            (
                buffer!("hidden states (act)", m * h, act.size()),
                buffer!("attention block output (act)", m * h, act.size()),
            )
        };
        let q = buffer!("query", m * h, act.size());
        let k = buffer!("key", m * h, act.size());
        let v = buffer!("value", m * h, act.size());
        let ctx = buffer!("attention context", m * h, act.size());
        let proj = buffer!("projection", m * h, act.size());
        let probs = buffer!("attention probabilities", probs_len, 4);
        let inter = buffer!("mlp", m * inner, act.size());
        let gelu = buffer!("mlp gelu", m * inner, act.size());
        let pooled = buffer!("pooled", batch * h, 4);
        let out = buffer!("sentence embeddings", batch * h, 4);
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
        app(kn
            .dispatch_async(
                Kernel::Embed,
                Variant::default(),
                base,
                &[(i0, &ids), (i1, &types), (i2, &self.word), (i3, &self.position), (i4, &self.token_type), (o0, &emb)],
            )
            .await?);
        app(kn
            .dispatch_async(
                Kernel::LayerNorm,
                to_act,
                base,
                &[(i0, &emb), (i2, &self.norm.gamma), (i3, &self.norm.beta), (o0, &hs), (o1, &hs_act)]
                    [..if act == DType::F32 { 4 } else { 5 }],
            )
            .await?);
        for layer in &self.layers {
            self.linear_step(&mut steps, &layer.query, m, &hs_act, &q).await?;
            self.linear_step(&mut steps, &layer.key, m, &hs_act, &k).await?;
            self.linear_step(&mut steps, &layer.value, m, &hs_act, &v).await?;
            let mut app = |d: Dispatch| steps.push(Step::App(d));
            app(kn
                .dispatch_async(Kernel::AttentionProbs, act_in, base, &[(i0, &q), (i1, &k), (i3, &mask), (o0, &probs)])
                .await?);
            app(kn
                .dispatch_async(Kernel::AttentionContext, act_in, base, &[(i0, &probs), (i2, &v), (o0, &ctx)])
                .await?);
            self.linear_step(&mut steps, &layer.attn_out, m, &ctx, &proj).await?;
            let n = &layer.attn_norm;
            let mut binds = vec![(i0, &proj), (i1, &hs), (i2, &n.gamma), (i3, &n.beta), (o0, &h1)];
            if act != DType::F32 {
                binds.push((o1, &h1_act));
            }
            steps.push(Step::App(kn.dispatch_async(Kernel::LayerNorm, act_norm, base, &binds).await?));
            self.linear_step(&mut steps, &layer.inter, m, &h1_act, &inter).await?;
            let wide = Params { n: inner as u32, ..base };
            steps.push(Step::App(kn.dispatch_async(Kernel::Gelu, act_in, wide, &[(i0, &inter), (o0, &gelu)]).await?));
            self.linear_step(&mut steps, &layer.out, m, &gelu, &proj).await?;
            let n = &layer.out_norm;
            let mut binds = vec![(i0, &proj), (i1, &h1), (i2, &n.gamma), (i3, &n.beta), (o0, &hs)];
            if act != DType::F32 {
                binds.push((o1, &hs_act));
            }
            steps.push(Step::App(kn.dispatch_async(Kernel::LayerNorm, act_norm, base, &binds).await?));
        }
        let mut app = |d: Dispatch| steps.push(Step::App(d));
        app(kn
            .dispatch_async(Kernel::MeanPool, Variant::default(), base, &[(i0, &hs), (i3, &mask), (o0, &pooled)])
            .await?);
        let rows = Params { m: batch as u32, ..base };
        app(kn.dispatch_async(Kernel::L2Normalize, Variant::default(), rows, &[(i0, &pooled), (o0, &out)]).await?);

        let plan = ForwardPlan { batch, seq, ids, types, mask, out, staging, steps, bytes };
        // Recording once, into an encoder that is dropped unsubmitted, makes the int8 layers'
        // bind groups for these buffers now rather than in the first forward.
        self.record(&plan, &mut gpu.device().create_command_encoder(&Default::default()))?;
        ops::settle(gpu).await?;
        Ok(plan)
    }

    async fn linear_step(
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
                Step::App(self.kernels.dispatch_async(Kernel::Dense, Variant::default(), p, &binds).await?)
            }
        });
        Ok(())
    }

    /// Records the whole forward of `plan` into `encoder` — one compute pass of every kernel and
    /// layer in order, then the copy of the sentence embeddings into the plan's readback
    /// buffer — without submitting anything. Creates no GPU object.
    pub fn record(&self, plan: &ForwardPlan, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
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
}

pub(super) enum Step {
    App(Dispatch),
    Int8 { layer: Arc<QuantizedLinear>, x: GpuTensor, y: GpuTensor },
}

/// Everything a forward over one (batch, sequence length) needs on the GPU, made once by
/// [`Bert::plan`].
pub struct ForwardPlan {
    pub(super) batch: usize,
    pub(super) seq: usize,
    pub(super) ids: wgpu::Buffer,
    pub(super) types: wgpu::Buffer,
    pub(super) mask: wgpu::Buffer,
    pub(super) out: wgpu::Buffer,
    pub(super) staging: wgpu::Buffer,
    pub(super) steps: Vec<Step>,
    pub(super) bytes: u64,
}

impl ForwardPlan {
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
