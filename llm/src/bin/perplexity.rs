//! Perplexity of SmolLM2 on a fixed English text for each weight mode, with the top-1
//! next-token agreement with the f32 baseline; prints a markdown table.
//!
//! `perplexity [--model PATH] [--text PATH] [--tokens N] [--window W] [--modes a,b,...]`:
//! the first N tokens (default 4096) of the text (default /usr/share/common-licenses/GPL-3,
//! on every Debian system), in windows of W tokens (default 512), each window a fresh context
//! scored in one pass: the perplexity is exp of the mean negative log-likelihood of every token
//! after a window's first. Modes (default all): f32, w8a16, w8a16-asym, w8a16-gN (groups of N),
//! tensor-absmax, tensor-zeropoint, w8a8, llm-int8, q8_0. The q8_0 row reads `--q8-0-model`
//! (default: `SmolLM2-135M-Instruct.Q8_0.gguf` beside the model, which llama.cpp's
//! `llama_model_quantize` makes from it, see scripts/llama-cpp-bench.py): its linear tensors as
//! llama.cpp stores them, no requantizing; skipped when that file is missing.

use std::path::PathBuf;
use std::time::Instant;

use int8_wgpu::Gpu;
use int8_wgpu::gguf::Gguf;
use int8_wgpu_llm::sampling::argmax;
use int8_wgpu_llm::{Model, Result, Tokenizer, WeightMode};

/// Every mode of the table. Groups of 64, not 128: the library's groups tile a row, and 128
/// does not divide SmolLM2's hidden size 576 (64 divides 576 and 1536).
const ALL: &str = "f32,w8a16,w8a16-asym,w8a16-g32,w8a16-g64,tensor-absmax,tensor-zeropoint,w8a8,llm-int8,q8_0";

/// A mode of the table by its name (`w8a16-gN`: symmetric groups of N), as
/// [`WeightMode::parse`]'s `(weights, group, asym)`.
fn mode(name: &str) -> Result<WeightMode> {
    let (w, g, a) = match name {
        "w8a16-asym" => ("w8a16", None, true),
        "tensor-absmax" => ("w8a16", Some(0), false),
        "tensor-zeropoint" => ("w8a16", Some(0), true),
        _ => match name.strip_prefix("w8a16-g") {
            Some(n) => {
                ("w8a16", Some(n.parse().map_err(|_| format!("mode `{name}`: `{n}` is not a group size"))?), false)
            }
            None => (name, None, false),
        },
    };
    WeightMode::parse(w, g, a).map_err(|e| format!("mode `{name}`: {e} (modes: {ALL})").into())
}

/// Natural-log likelihood sum of each position's next token, and the argmax per position.
fn score(logits: &[Vec<f32>], ids: &[u32]) -> (f64, Vec<u32>) {
    let mut nll = 0.0;
    for (row, &next) in logits.iter().zip(&ids[1..]) {
        let max = f64::from(row[argmax(row)]);
        let lse = max + row.iter().map(|&l| (f64::from(l) - max).exp()).sum::<f64>().ln();
        nll += lse - f64::from(row[next as usize]);
    }
    (nll, logits.iter().map(|r| argmax(r) as u32).collect())
}

fn run() -> Result<()> {
    let mut model_path = int8_wgpu_llm::model::default_path();
    let mut q8_path = None;
    let mut text = PathBuf::from("/usr/share/common-licenses/GPL-3");
    let (mut tokens, mut window, mut modes) = (4096usize, 512usize, ALL.to_string());
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--model" => model_path = PathBuf::from(value()?),
            "--q8-0-model" => q8_path = Some(PathBuf::from(value()?)),
            "--text" => text = PathBuf::from(value()?),
            "--tokens" => tokens = value()?.parse().map_err(|_| "--tokens: not a number")?,
            "--window" => window = value()?.parse().map_err(|_| "--window: not a number")?,
            "--modes" => modes = value()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if window < 2 {
        return Err("--window must be at least 2 tokens".into());
    }
    if !model_path.is_file() {
        return Err(format!("no model file at {} (scripts/fetch-smollm2.sh fetches it)", model_path.display()).into());
    }
    let gguf = Gguf::open(&model_path)?;
    let q8_path = q8_path.unwrap_or_else(|| model_path.with_file_name("SmolLM2-135M-Instruct.Q8_0.gguf"));
    let body = std::fs::read_to_string(&text).map_err(|e| format!("{}: {e}", text.display()))?;
    let mut ids = Tokenizer::from_gguf(&gguf)?.encode(&body)?;
    if ids.len() < tokens {
        eprintln!("{} has {} tokens; scoring all of them", text.display(), ids.len());
    }
    ids.truncate(tokens - tokens % window);
    if ids.is_empty() {
        return Err(format!("fewer than {window} tokens of text").into());
    }
    let modes: Vec<(String, WeightMode)> =
        modes.split(',').map(|m| Ok((m.to_string(), mode(m)?))).collect::<Result<_>>()?;
    let gpu = Gpu::new()?;
    eprintln!("{} tokens of {} in windows of {window}, on {}", ids.len(), text.display(), gpu.describe());
    let mut baseline: Option<Vec<u32>> = None;
    let mut rows = Vec::new();
    for (name, m) in modes {
        let loaded = match m {
            WeightMode::Q8_0 { .. } => Model::open(&gpu, &q8_path, m),
            _ => Model::load(&gpu, &gguf, m),
        };
        let model = match loaded {
            Ok(model) => model,
            Err(e) => {
                eprintln!("{name}: skipped ({e})");
                continue;
            }
        };
        let (mut nll, mut top, mut count) = (0.0, Vec::new(), 0usize);
        for (w, chunk) in ids.chunks(window).enumerate() {
            let t = Instant::now();
            let logits = model.logits(chunk)?;
            let (n, t1) = score(&logits[..chunk.len() - 1], chunk);
            nll += n;
            count += chunk.len() - 1;
            top.extend_from_slice(&t1[..chunk.len() - 1]);
            eprintln!(
                "{name}: window {w}: ppl so far {:.4}, {:.2} s",
                (nll / count as f64).exp(),
                t.elapsed().as_secs_f64()
            );
        }
        let ppl = (nll / count as f64).exp();
        let agree = match &baseline {
            None if m == WeightMode::F32 => {
                baseline = Some(top);
                "(baseline)".to_string()
            }
            None => "-".to_string(),
            Some(b) => {
                let same = b.iter().zip(&top).filter(|(a, c)| a == c).count();
                format!("{:.2} %", 100.0 * same as f64 / b.len() as f64)
            }
        };
        rows.push(format!("| {name} | {m} | {ppl:.4} | {agree} |"));
    }
    println!("| mode | linear layers | perplexity | top-1 agreement with f32 |");
    println!("|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
