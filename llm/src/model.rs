//! The model ([`Model`]: config, weights, kernels) and a generation session over a KV cache
//! ([`Session`]): prefill in one submission, one submission per generated token.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use int8_wgpu::Gpu;
use int8_wgpu::gguf::Gguf;

use crate::Result;
use crate::forward::{Cache, Plan};
use crate::mode::WeightMode;
use crate::ops::{self, Kernels};
use crate::profile::Profile;
use crate::weights::{self, Config, Weights};

/// Where `scripts/fetch-smollm2.sh` puts SmolLM2-135M-Instruct:
/// `$INT8_WGPU_CACHE/SmolLM2-135M-Instruct.Q4_1.gguf`, the cache defaulting to
/// `$HOME/.cache/int8-wgpu`.
pub fn default_path() -> PathBuf {
    let cache = std::env::var_os("INT8_WGPU_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/int8-wgpu"));
    cache.join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// A Llama decoder on the GPU.
pub struct Model {
    gpu: Gpu,
    config: Config,
    mode: WeightMode,
    weights: Weights,
    kernels: Kernels,
}

impl Model {
    /// Loads the model of a GGUF file already read, its linear layers as `mode` says.
    pub fn load(gpu: &Gpu, gguf: &Gguf, mode: WeightMode) -> Result<Self> {
        let config = Config::new(gguf.llama_params()?)?;
        let kernels = Kernels::new(gpu)?;
        let weights = weights::load(gpu, gguf, &config, mode)?;
        Ok(Model { gpu: gpu.clone(), config, mode, weights, kernels })
    }

    /// Reads the GGUF file at `path` and loads its model ([`Model::load`]).
    pub fn open(gpu: &Gpu, path: &Path, mode: WeightMode) -> Result<Self> {
        if !path.is_file() {
            return Err(format!("no model file at {} (scripts/fetch-smollm2.sh fetches it)", path.display()).into());
        }
        let gguf = Gguf::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::load(gpu, &gguf, mode)
    }

    /// The device.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The model's shape.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// How the linear layers run.
    pub fn mode(&self) -> WeightMode {
        self.mode
    }

    /// Logits per position.
    pub fn vocab(&self) -> usize {
        self.config.params.vocab_size
    }

    /// Bytes of weights on the GPU.
    pub fn weight_bytes(&self) -> u64 {
        self.weights.bytes
    }

    /// The embedding rows of `ids`, `[ids.len(), hidden]` f32 flat: what the forward's first
    /// kernel writes into the residual stream, whichever way the table is stored.
    pub fn embeddings(&self, ids: &[u32]) -> Result<Vec<f32>> {
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.vocab()) {
            return Err(format!("token id {id} is outside the vocabulary of {}", self.vocab()).into());
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let (gpu, h) = (&self.gpu, self.config.params.embedding_length);
        let n = ids.len();
        let ids_buf = ops::storage(gpu, "token ids", 4 * n as u64, Some(bytemuck::cast_slice(ids)))?;
        let out = ops::storage(gpu, "embeddings", (4 * n * h) as u64, None)?;
        let params = ops::Params { m: ids.len() as u32, n: h as u32, ..Default::default() };
        let lookup = self.weights.embed.dispatch(&self.kernels, params, &ids_buf, &out)?;
        let staging = gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("embeddings readback"),
            size: out.size(),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = gpu.device().create_command_encoder(&Default::default());
        lookup.record(&mut encoder.begin_compute_pass(&Default::default()));
        encoder.copy_buffer_to_buffer(&out, 0, &staging, 0, out.size());
        gpu.queue().submit([encoder.finish()]);
        let bytes = ops::read_mapped(gpu, &staging, (4 * ids.len() * h) as u64)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    pub(crate) fn weights(&self) -> &Weights {
        &self.weights
    }

    pub(crate) fn kernels(&self) -> &Kernels {
        &self.kernels
    }

    /// A session that generates up to `max_len` tokens (prompt included).
    pub fn session(&self, max_len: usize) -> Result<Session<'_>> {
        let limit = self.config.params.context_length;
        if max_len == 0 || max_len > limit {
            return Err(format!("a context of {max_len} tokens; the model has positions for 1 to {limit}").into());
        }
        let cache = Cache::new(self, max_len)?;
        let step = Plan::new(self, &cache, 1, false)?;
        Ok(Session { model: self, cache, step, prefill: HashMap::new(), pos: 0 })
    }

    /// The logits of every position of `ids` (a fresh context), one `Vec` of [`Model::vocab`]
    /// values per token: one pass, one submission.
    pub fn logits(&self, ids: &[u32]) -> Result<Vec<Vec<f32>>> {
        let cache = Cache::new(self, ids.len().max(1))?;
        let plan = Plan::new(self, &cache, ids.len(), true)?;
        let v = run(self, &cache, &plan, 0, ids)?;
        Ok(v.chunks(self.vocab()).map(<[f32]>::to_vec).collect())
    }
}

/// Writes the token ids and start position, records `plan` into one encoder, submits it once
/// and reads the logits back.
fn run(model: &Model, cache: &Cache, plan: &Plan, start: usize, ids: &[u32]) -> Result<Vec<f32>> {
    if ids.len() != plan.n {
        return Err(format!("{} token ids for a plan of {}", ids.len(), plan.n).into());
    }
    if start + ids.len() > cache.max_len {
        return Err(format!(
            "{} tokens after {start} exceed the session's context of {} tokens",
            ids.len(),
            cache.max_len
        )
        .into());
    }
    if let Some(&id) = ids.iter().find(|&&id| id as usize >= model.vocab()) {
        return Err(format!("token id {id} is outside the vocabulary of {}", model.vocab()).into());
    }
    let gpu = model.gpu();
    let queue = gpu.queue();
    queue.write_buffer(&plan.ids, 0, bytemuck::cast_slice(ids));
    queue.write_buffer(&cache.meta, 0, bytemuck::bytes_of(&(start as u32)));
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    plan.record(&mut encoder)?;
    queue.submit([encoder.finish()]);
    let bytes = ops::read_mapped(gpu, &plan.staging, plan.staging.size())?;
    let logits: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
    if let Some(i) = logits.iter().position(|x| !x.is_finite()) {
        return Err(format!("logit {i} is not finite (overflow in the forward)").into());
    }
    Ok(logits)
}

/// Generation over one KV cache: [`Session::prefill`] appends a prompt in one submission,
/// [`Session::step`] one token per submission, creating no GPU object.
pub struct Session<'a> {
    model: &'a Model,
    cache: Cache,
    step: Plan,
    /// Plans per prompt length, made on the first prefill of that length.
    prefill: HashMap<usize, Plan>,
    pos: usize,
}

impl Session<'_> {
    /// Tokens in the cache: the position of the next token.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Positions the session holds.
    pub fn max_len(&self) -> usize {
        self.cache.max_len
    }

    /// Appends `ids` (a prompt, or its continuation) in one submission; the logits of the last.
    pub fn prefill(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        if ids.is_empty() {
            return Err("an empty prompt: prefill needs at least one token".into());
        }
        if self.pos + ids.len() > self.cache.max_len {
            return Err(format!(
                "a prompt of {} tokens after {} does not fit the context of {} tokens",
                ids.len(),
                self.pos,
                self.cache.max_len
            )
            .into());
        }
        if ids.len() == 1 {
            return self.step(ids[0]);
        }
        if !self.prefill.contains_key(&ids.len()) {
            let plan = Plan::new(self.model, &self.cache, ids.len(), false)?;
            self.prefill.insert(ids.len(), plan);
        }
        let logits = run(self.model, &self.cache, &self.prefill[&ids.len()], self.pos, ids)?;
        self.pos += ids.len();
        Ok(logits)
    }

    /// Appends one token in one submission; its logits.
    pub fn step(&mut self, id: u32) -> Result<Vec<f32>> {
        let logits = run(self.model, &self.cache, &self.step, self.pos, &[id])?;
        self.pos += 1;
        Ok(logits)
    }

    /// Empties the cache for a new text (a new conversation), keeping every plan and buffer.
    pub fn reset(&mut self) {
        self.pos = 0;
    }

    /// Records one token's whole forward (every block and the logits) into `encoder` without
    /// writing the token or submitting: what [`Session::step`] submits, for an app that owns
    /// the submission (or times the host's share of a token).
    pub fn record_step(&self, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        self.step.record(encoder)
    }

    /// Where a token's GPU time goes: [`Session::step`]'s dispatches grouped by kernel, each
    /// group timed alone (`iters` repetitions in one pass), and the whole pass timed the same
    /// way; at the session's current position (attention reads that many cached tokens).
    pub fn profile_step(&self, iters: u32) -> Result<Profile> {
        self.step.profile(self.model.gpu(), iters)
    }

    /// Bytes of the KV cache on the GPU.
    pub fn cache_bytes(&self) -> u64 {
        self.cache.kv.iter().map(|(k, v)| k.size() + v.size()).sum()
    }
}
