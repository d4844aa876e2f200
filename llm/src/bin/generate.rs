//! Generates text from SmolLM2 on the GPU, streaming it to stdout token by token:
//!
//! `generate [--model PATH] [--weights f32|w8a16|w8a16-f16|w8a32|w8a8|llm-int8|q8_0] [--group N]
//! [--asym] [--temperature T] [--top-p P] [--seed S] [--max-tokens N] [--chat] "prompt"`
//!
//! Greedy unless a temperature above 0 is given. The prompt is prefilled in one submission,
//! then each token is one submission; prefill and decode speeds go to stderr.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use int8_wgpu::Gpu;
use int8_wgpu::gguf::Gguf;
use int8_wgpu_llm::chat::{self, Message};
use int8_wgpu_llm::{Model, Result, Sampler, Tokenizer, WeightMode};

const USAGE: &str = "usage: generate [--model PATH] [--weights f32|w8a16|w8a16-f16|w8a32|w8a8|llm-int8|q8_0] \
[--group N (0: per tensor)] [--asym] [--temperature T] [--top-p P] [--seed S] [--max-tokens N] [--chat] \"prompt\"";

struct Args {
    model: PathBuf,
    weights: String,
    group: Option<usize>,
    asym: bool,
    temperature: f32,
    top_p: f32,
    seed: u64,
    max_tokens: usize,
    chat: bool,
    prompt: String,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        model: int8_wgpu_llm::model::default_path(),
        weights: "w8a16".into(),
        group: None,
        asym: false,
        temperature: 0.0,
        top_p: 1.0,
        seed: 0,
        max_tokens: 128,
        chat: false,
        prompt: String::new(),
    };
    let mut prompt = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value\n{USAGE}"));
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T> {
            v.parse().map_err(|_| format!("{name}: `{v}` is not a valid number").into())
        }
        match arg.as_str() {
            "--model" => a.model = PathBuf::from(value("--model")?),
            "--weights" => a.weights = value("--weights")?,
            "--group" => a.group = Some(num("--group", value("--group")?)?),
            "--asym" => a.asym = true,
            "--temperature" => a.temperature = num("--temperature", value("--temperature")?)?,
            "--top-p" => a.top_p = num("--top-p", value("--top-p")?)?,
            "--seed" => a.seed = num("--seed", value("--seed")?)?,
            "--max-tokens" => a.max_tokens = num("--max-tokens", value("--max-tokens")?)?,
            "--chat" => a.chat = true,
            "-h" | "--help" => return Err(USAGE.into()),
            s if s.starts_with("--") => return Err(format!("unknown option {s}\n{USAGE}").into()),
            _ if prompt.is_some() => return Err(format!("one prompt, quoted\n{USAGE}").into()),
            _ => prompt = Some(arg),
        }
    }
    a.prompt = prompt.ok_or_else(|| format!("no prompt\n{USAGE}"))?;
    Ok(a)
}

fn run() -> Result<()> {
    let a = parse()?;
    let mode = WeightMode::parse(&a.weights, a.group, a.asym)?;
    let mut sampler = Sampler::new(a.temperature, a.top_p, a.seed)?;
    if !a.model.is_file() {
        return Err(format!("no model file at {} (scripts/fetch-smollm2.sh fetches it)", a.model.display()).into());
    }
    let gguf = Gguf::open(&a.model).map_err(|e| format!("{}: {e}", a.model.display()))?;
    let tokenizer = Tokenizer::from_gguf(&gguf)?;
    let text = if a.chat {
        chat::check(&gguf)?;
        chat::render(&[Message { role: "user", content: &a.prompt }], true)
    } else {
        a.prompt.clone()
    };
    let ids = tokenizer.encode(&text)?;
    if ids.is_empty() {
        return Err("the prompt is empty".into());
    }
    let gpu = Gpu::new()?;
    let t = Instant::now();
    let model = Model::load(&gpu, &gguf, mode)?;
    drop(gguf);
    let context = model.config().params.context_length;
    if ids.len() >= context {
        return Err(format!("the prompt is {} tokens; the model's context is {context}", ids.len()).into());
    }
    let max_len = (ids.len() + a.max_tokens).min(context);
    let mut session = model.session(max_len)?;
    eprintln!(
        "{} on {}: {mode}, {:.1} MB of weights, loaded in {:.2} s; prompt {} tokens",
        a.model.file_name().unwrap_or_default().to_string_lossy(),
        gpu.describe(),
        model.weight_bytes() as f64 / 1e6,
        t.elapsed().as_secs_f64(),
        ids.len()
    );
    let t = Instant::now();
    let mut logits = session.prefill(&ids)?;
    let prefill = t.elapsed().as_secs_f64();
    let mut out = std::io::stdout().lock();
    if !a.chat {
        write!(out, "{}", a.prompt)?;
    }
    let mut stream = tokenizer.stream();
    let (t, mut generated, mut steps) = (Instant::now(), 0, 0);
    while generated < a.max_tokens {
        let id = sampler.sample(&logits);
        generated += 1;
        if tokenizer.is_end(id) {
            break;
        }
        if let Some(piece) = stream.push(id)? {
            write!(out, "{piece}")?;
            out.flush()?;
        }
        if generated == a.max_tokens || session.position() == session.max_len() {
            break;
        }
        logits = session.step(id)?;
        steps += 1;
    }
    if let Some(rest) = stream.finish() {
        write!(out, "{rest}")?;
    }
    writeln!(out)?;
    let decode = t.elapsed().as_secs_f64();
    eprintln!(
        "prefill: {} tokens in {prefill:.3} s ({:.1} tokens/s); decode: {steps} steps in {decode:.3} s ({:.2} tokens/s); {generated} tokens generated",
        ids.len(),
        ids.len() as f64 / prefill,
        steps as f64 / decode
    );
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
