//! SmolLM2-135M on the GPU: prefill and decode speed per weight mode, the host's time to record
//! one token, GPU memory, and the int8 weight bytes each token reads against the device's read
//! limit; then where a token's time goes (its linear layers alone, timed one by one).
//!
//! `cargo run --release -p int8-wgpu-bench --example llm_speed` (after
//! `bash scripts/fetch-smollm2.sh`); `scripts/llm-speed.sh` runs it beside llama.cpp.
//! Environment: `INT8_LLM_MODES` (default `w8a16,w8a32,f32`; any `generate --weights` name),
//! `INT8_LLM_ROUNDS` (3), `INT8_LLM_PROMPT` (128 tokens), `INT8_LLM_DECODE` (32 tokens),
//! `INT8_LLM_MODEL` (a GGUF path; default the fetch script's file). Modes run interleaved
//! within each round; figures are medians over rounds.

use std::time::Instant;

use int8_wgpu::gguf::Gguf;
use int8_wgpu::{ActivationQuant, DType, Gpu, GpuTensor, Granularity, QuantScheme, QuantizedLinear};
use int8_wgpu_bench::{ReadLimit, time_forward};
use int8_wgpu_llm::{Model, Session, Tokenizer, WeightMode};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn env_usize(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|_| format!("{name}={v} is not a count").into()),
        Err(_) => Ok(default),
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// The prompt: the first `n` tokens of the GPL-3 text (the perplexity text), else a built-in one
/// repeated.
fn prompt(tokenizer: &Tokenizer, n: usize) -> Result<Vec<u32>> {
    let text = std::fs::read_to_string("/usr/share/common-licenses/GPL-3")
        .unwrap_or_else(|_| "The quick brown fox jumps over the lazy dog. ".repeat(64));
    let ids = tokenizer.encode(&text)?;
    if ids.len() < n {
        return Err(format!("the prompt text has {} tokens, fewer than {n}", ids.len()).into());
    }
    Ok(ids[..n].to_vec())
}

struct Figures {
    prefill: Vec<f64>,
    decode: Vec<f64>,
    record: Vec<f64>,
}

fn main() -> Result<()> {
    let path = std::env::var_os("INT8_LLM_MODEL").map(Into::into).unwrap_or_else(int8_wgpu_llm::model::default_path);
    let modes: Vec<String> = std::env::var("INT8_LLM_MODES")
        .unwrap_or_else(|_| "w8a16,w8a32,f32".into())
        .split(',')
        .map(str::to_owned)
        .collect();
    let rounds = env_usize("INT8_LLM_ROUNDS", 3)?.max(1);
    let (n_prompt, n_decode) = (env_usize("INT8_LLM_PROMPT", 128)?, env_usize("INT8_LLM_DECODE", 32)?);
    let gpu = Gpu::new()?;
    println!("adapter: {}", gpu.describe());
    println!("model: {}", path.display());
    println!("load average at start: {}", load_average());
    let gguf =
        Gguf::open(&path).map_err(|e| format!("{}: {e} (scripts/fetch-smollm2.sh fetches it)", path.display()))?;
    let tokenizer = Tokenizer::from_gguf(&gguf)?;
    let ids = prompt(&tokenizer, n_prompt)?;
    let mut models = Vec::new();
    for name in &modes {
        let model = Model::load(&gpu, &gguf, WeightMode::parse(name, None, false)?)?;
        let mut session = model.session(n_prompt + n_decode + 1)?;
        session.prefill(&ids)?; // plans made and pipelines compiled before the first timed round
        models.push((name.clone(), model));
    }
    drop(gguf);
    let mut figures: Vec<Figures> =
        modes.iter().map(|_| Figures { prefill: vec![], decode: vec![], record: vec![] }).collect();
    let mut sessions = Vec::new();
    for (_, model) in &models {
        sessions.push(model.session(n_prompt + n_decode + 1)?);
    }
    for _ in 0..rounds {
        for (session, f) in sessions.iter_mut().zip(&mut figures) {
            session.reset();
            let t = Instant::now();
            let mut next = argmax(&session.prefill(&ids)?);
            f.prefill.push(n_prompt as f64 / t.elapsed().as_secs_f64());
            let t = Instant::now();
            for _ in 0..n_decode {
                next = argmax(&session.step(next)?);
            }
            f.decode.push(n_decode as f64 / t.elapsed().as_secs_f64());
            let device = gpu.device();
            let mut times = Vec::new();
            for _ in 0..50 {
                let mut encoder = device.create_command_encoder(&Default::default());
                let t = Instant::now();
                session.record_step(&mut encoder)?;
                times.push(t.elapsed().as_secs_f64() * 1e6);
                drop(encoder);
            }
            f.record.push(median(&mut times));
        }
    }
    println!("load average after the rounds: {}\n", load_average());
    let blocks = models[0].1.config().params.block_count as f64;
    println!(
        "| weights | prefill {n_prompt} tokens (tokens/s) | decode (tokens/s) | record one token (µs; per block) | weights on GPU (MB) | KV cache (MB) |"
    );
    println!("|---|---|---|---|---|---|");
    for (((name, model), f), session) in models.iter().zip(&mut figures).zip(&sessions) {
        let rec = median(&mut f.record);
        println!(
            "| {name} | {:.1} | {:.2} | {rec:.1}; {:.2} | {:.1} | {:.1} |",
            median(&mut f.prefill),
            median(&mut f.decode),
            rec / blocks,
            model.weight_bytes() as f64 / 1e6,
            session.cache_bytes() as f64 / 1e6
        );
    }
    println!();
    for ((name, _), (session, f)) in models.iter().zip(sessions.iter().zip(&mut figures)) {
        profile(name, session, 1e3 / median(&mut f.decode))?;
    }
    linear_share(&gpu, &models, &mut figures)?;
    println!("\nload average at end: {}", load_average());
    Ok(())
}

/// Where one token's GPU time goes (the session sits after the prompt and the decoded tokens):
/// each kernel's dispatches timed alone, the whole pass, and the wall clock's rest.
fn profile(name: &str, session: &Session<'_>, token_ms: f64) -> Result<()> {
    let p = session.profile_step(10)?;
    let whole = p.whole.as_secs_f64() * 1e3;
    println!("{name}: one token at position {}, timed by {:?}", session.position(), p.source);
    println!("| weights | kernel | dispatches | ms per token | share of the whole pass |");
    println!("|---|---|---|---|---|");
    for k in &p.kernels {
        let ms = k.time.as_secs_f64() * 1e3;
        println!("| {name} | {} | {} | {ms:.2} | {:.1} % |", k.kernel, k.dispatches, 100.0 * ms / whole);
    }
    let sum: f64 = p.kernels.iter().map(|k| k.time.as_secs_f64() * 1e3).sum();
    println!(
        "| {name} | every kernel alone, summed | {} | {sum:.2} | {:.1} % |",
        p.kernels.iter().map(|k| k.dispatches).sum::<usize>(),
        100.0 * sum / whole
    );
    println!(
        "| {name} | the whole pass | {} | {whole:.2} | 100 % |",
        p.kernels.iter().map(|k| k.dispatches).sum::<usize>()
    );
    println!(
        "| {name} | a decoded token, wall clock (median of the rounds) | | {token_ms:.2} | {:.1} % |\n",
        100.0 * token_ms / whole
    );
    Ok(())
}

/// One token's int8 linear layers timed alone (1 row each, the model's shapes, random weights in
/// the mode's scheme), their bytes, and the device's read limit over the same bytes.
fn linear_share(gpu: &Gpu, models: &[(String, Model)], figures: &mut [Figures]) -> Result<()> {
    let p = models[0].1.config().params;
    let (h, f, kv, vocab) = (p.embedding_length, p.feed_forward_length, models[0].1.config().kv_dim(), p.vocab_size);
    let block: [(usize, usize); 7] = [(h, h), (kv, h), (kv, h), (h, h), (f, h), (f, h), (h, f)];
    let shapes: Vec<((usize, usize), f64)> =
        block.iter().map(|&s| (s, p.block_count as f64)).chain([((vocab, h), 1.0)]).collect();
    let mut bytes_max = 0u64;
    println!(
        "| weights | linear layers of one token alone (ms) | bytes read (MB) | at the read limit (ms) | whole token (ms, median decode) |"
    );
    println!("|---|---|---|---|---|");
    let mut rows = Vec::new();
    for ((name, model), fig) in models.iter().zip(figures.iter_mut()) {
        let (mut ms, mut bytes) = (0.0, 0.0);
        for &((n, k), count) in &shapes {
            // The dense f32 mode runs the app's own matmul, which no yardstick here reproduces.
            let Some((scheme, activation, quant)) = int8_of(model.mode()) else { continue };
            let w: Vec<f32> = (0..n * k).map(|i| ((i * 7919 % 2003) as f32 - 1001.0) / 4000.0).collect();
            let iters = 20;
            // The output projection runs on f32 activations in every int8 mode.
            let output = (n, k) == (vocab, h);
            let act = if output { DType::F32 } else { activation };
            let mut layer = QuantizedLinear::from_float(gpu, &w, [n, k], None::<&[f32]>, scheme, act)?;
            if let (Some(q), false) = (quant, output) {
                layer = layer.with_activation_quant(q)?;
            }
            bytes += layer.weight().nbytes() as f64 * count;
            let x = GpuTensor::zeros(gpu, &[1, k], act)?;
            let per = time_forward(&layer, &x, iters)?.per_iter;
            ms += per.as_secs_f64() * 1e3 * count;
        }
        if bytes == 0.0 {
            continue;
        }
        bytes_max = bytes_max.max(bytes as u64);
        rows.push((name.clone(), ms, bytes, 1e3 / median(&mut fig.decode)));
    }
    let limit = ReadLimit::new(gpu, bytes_max.min(256 << 20))?.measure(8, 3)?;
    for (name, ms, bytes, token_ms) in rows {
        println!(
            "| {name} | {ms:.1} | {:.1} | {:.1} | {token_ms:.1} |",
            bytes / 1e6,
            bytes / (limit.gb_per_s * 1e9) * 1e3
        );
    }
    println!(
        "\nread limit: {:.2} GB/s ({}; median round {:.2}, slowest {:.2}, {} rounds)",
        limit.gb_per_s,
        limit.kernel.name(),
        limit.median,
        limit.slowest,
        limit.rounds
    );
    Ok(())
}

/// The int8 layers' scheme, activation dtype and activation quantization of a mode (Q8_0 as
/// stored: symmetric groups of 32); `None` for dense f32.
fn int8_of(mode: WeightMode) -> Option<(QuantScheme, DType, Option<ActivationQuant>)> {
    match mode {
        WeightMode::F32 => None,
        WeightMode::Int8 { scheme, activation, quant } => Some((scheme, activation, quant)),
        WeightMode::Q8_0 { activation } => {
            Some((QuantScheme::symmetric(Granularity::PerGroup { size: 32 }), activation, None))
        }
    }
}
