//! Sentence embeddings with all-MiniLM-L6-v2, the whole model on the GPU: int8 linear layers
//! (int8-wgpu's `QuantizedLinear`) against the dense f32 model, one submission per batch.
//!
//! ```sh
//! bash scripts/fetch-minilm.sh      # the checkpoint, into ~/.cache/int8-wgpu (never committed)
//! cargo run --release --example embed -- "A man is eating food." "A man is eating pasta."
//! ```
//!
//! Prints each model's similarity matrix, the cosine between the f32 and int8 embeddings, the
//! model's memory on the GPU and the time per batch. Options:
//!
//! - `--model DIR`: the float checkpoint (default: the fetch script's folder).
//! - `--quantized DIR`: also run an 8-bit checkpoint that int8-wgpu reads (compressed-tensors,
//!   from `int8-wgpu quantize` or another tool, or bitsandbytes), as its layers record: W8A16,
//!   W8A8 or LLM.int8().
//! - `--int8 bf16,f16,w8a32,w8a8,llm-int8` (or `all`): the int8 flavours to run (default `bf16`); the float
//!   checkpoint is quantized on the GPU at load, symmetric per output channel.
//! - `--iters N`: timed forwards per model and batch (default 3), interleaved across models.
//! - `--bench`: time batches of 1 and 8 sentences (cycling the sentences given), and
//!   `--bench-batch N` more, plus the host time to record one forward.
//! - `--check`: also run the f32 forward on the CPU in f64 and print the GPU's cosine to it.
//! - `--json FILE`: also write every model's embeddings as JSON (`{"sentences": [...],
//!   "tokens": [...], "models": [{"name", "embeddings": [[...]]}]}`), for
//!   `scripts/web-page.sh --test`.
//! - `--quality`: the scheme comparison against the sentence-transformers reference
//!   (tests/fixtures/minilm_reference.json): mean and min cosine, retrieval, LLM.int8()'s
//!   outlier columns; markdown, printed and written to `docs/quality.md` (the README's copy).
//!
//! LLM.int8() picks its outlier columns over every row of a batch, so its models embed each
//! sentence in a batch of its own ([`Bert::batches`]): padding and other sentences never change
//! a sentence's embedding. The other models' rows are independent: one padded batch.

// Shared with tests/minilm_model.rs (by `#[path]`), which uses items this CLI does not.
#[allow(dead_code)]
mod bert;
#[allow(dead_code)]
mod config;
#[allow(dead_code)]
mod cpu;
/// A forward's buffers and dispatches, and its recording.
#[allow(dead_code)]
mod forward;
#[allow(dead_code)]
mod ops;
mod quality;
#[allow(dead_code)]
mod tokens;
#[allow(dead_code)]
mod weights;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bert::{Bert, Precision};
use forward::ForwardPlan;
use int8_wgpu::checkpoint::Checkpoint;
use int8_wgpu::{DType, Gpu};
use ops::Result;
use tokens::Batch;

const HELP: &str = "usage: embed [OPTIONS] SENTENCE...
  --model DIR        the float checkpoint (default: scripts/fetch-minilm.sh's folder)
  --quantized DIR    also run an 8-bit checkpoint int8-wgpu reads (compressed-tensors, from
                     `int8-wgpu quantize` or another tool, or bitsandbytes), as its layers
                     record: W8A16, W8A8 or LLM.int8()
  --int8 LIST        bf16,f16,w8a32,w8a8,llm-int8 or all: the float checkpoint quantized at load
                     (default bf16)
  --iters N          timed runs per model (default 3)
  --bench            time batches of 1 and 8 sentences; --bench-batch N adds a size
  --check            also compare with a CPU f64 forward
  --json FILE        also write every model's embeddings as JSON
  --quality          the scheme comparison against sentence-transformers; writes docs/quality.md";

struct Args {
    model: PathBuf,
    quantized: Option<PathBuf>,
    int8: Vec<Precision>,
    iters: usize,
    bench: bool,
    bench_batches: Vec<usize>,
    check: bool,
    json: Option<PathBuf>,
    quality: bool,
    sentences: Vec<String>,
}

fn default_model() -> PathBuf {
    let cache = std::env::var_os("INT8_WGPU_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/int8-wgpu"));
    cache.join("all-MiniLM-L6-v2")
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        model: default_model(),
        quantized: None,
        int8: vec![Precision::Int8(DType::BF16)],
        iters: 3,
        bench: false,
        bench_batches: vec![1, 8],
        check: false,
        json: None,
        quality: false,
        sentences: vec![],
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--model" => a.model = value("--model")?.into(),
            "--quantized" => a.quantized = Some(value("--quantized")?.into()),
            "--int8" => {
                let v = value("--int8")?;
                let list = if v == "all" { "bf16,f16,w8a32,w8a8,llm-int8".to_string() } else { v };
                a.int8 = list
                    .split(',')
                    .map(|s| match Precision::parse(s.trim())? {
                        Precision::F32 => Err("--int8 takes bf16, f16, w8a32, w8a8 or llm-int8".into()),
                        p => Ok(p),
                    })
                    .collect::<Result<_>>()?;
            }
            "--iters" => a.iters = value("--iters")?.parse::<usize>()?.max(1),
            "--bench" => a.bench = true,
            "--bench-batch" => a.bench_batches.push(value("--bench-batch")?.parse()?),
            "--check" => a.check = true,
            "--json" => a.json = Some(value("--json")?.into()),
            "--quality" => a.quality = true,
            "-h" | "--help" => {
                println!("{HELP}");
                std::process::exit(0);
            }
            s if s.starts_with("--") => return Err(format!("unknown option {s} (see --help)").into()),
            _ => a.sentences.push(arg),
        }
    }
    if a.sentences.is_empty() {
        a.sentences = [
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The new movie is awesome.",
            "A cheetah is running behind its prey.",
        ]
        .map(String::from)
        .to_vec();
    }
    Ok(a)
}

fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn print_similarity(labels: &[String], e: &[Vec<f32>]) {
    print!("{:>8}", "");
    for j in 0..e.len() {
        print!("{:>9}", format!("s{}", j + 1));
    }
    println!();
    for (i, a) in e.iter().enumerate() {
        print!("{:>8}", format!("s{}", i + 1));
        for b in e {
            print!("{:>9.4}", cpu::cosine(a, b));
        }
        println!("   {}", labels[i]);
    }
}

/// One loaded model and its plans.
struct Run {
    name: String,
    bert: Bert,
    load: Duration,
}

fn main() -> Result<()> {
    env_logger::init();
    let args = parse_args()?;
    if !args.model.join("model.safetensors").is_file() && args.quantized.is_none() {
        return Err(format!(
            "no checkpoint in {}: run `bash scripts/fetch-minilm.sh`, or pass --model DIR",
            args.model.display()
        )
        .into());
    }
    let gpu = Gpu::new()?;
    println!("adapter: {}", gpu.describe());
    let tok_dir = if args.model.join("tokenizer.json").is_file() {
        &args.model
    } else {
        args.quantized.as_ref().unwrap_or(&args.model)
    };
    let tokenizer = tokens::load_tokenizer(tok_dir, tokens::max_seq_length(tok_dir))?;
    if args.quality {
        let ckpt = Checkpoint::open(&args.model)?;
        let md = quality::report(&gpu, &ckpt, &tokenizer)?;
        print!("{md}");
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(quality::DOC);
        std::fs::write(&path, &md).map_err(|e| format!("writing {}: {e}", path.display()))?;
        println!("\nwritten to {}: copy its tables into README.md (tests/docs_quality.rs checks)", path.display());
        return Ok(());
    }
    let sentences: Vec<&str> = args.sentences.iter().map(String::as_str).collect();
    let batch = Batch::tokenize(&tokenizer, &sentences)?;
    let lengths: Vec<usize> = batch.mask.chunks(batch.seq).map(|m| m.iter().filter(|&&v| v == 1).count()).collect();
    println!("{} sentences, {lengths:?} tokens, padded to {}", batch.batch, batch.seq);

    // Load every model first: f32 dense, then each int8 flavour, then a quantized checkpoint.
    let mut runs = Vec::new();
    let float = match args.model.join("model.safetensors").is_file() {
        true => Some(Checkpoint::open(&args.model)?),
        false => None,
    };
    if let Some(ckpt) = &float {
        let mut precisions = vec![Precision::F32];
        precisions.extend(args.int8.iter().copied());
        for p in precisions {
            let t = Instant::now();
            let bert = Bert::load(&gpu, ckpt, p)?;
            gpu.synchronize()?;
            let how = if p == Precision::F32 { "" } else { ", quantized on the GPU at load" };
            runs.push(Run { name: format!("{p}{how}"), bert, load: t.elapsed() });
        }
    }
    if let Some(dir) = &args.quantized {
        let ckpt = Checkpoint::open(dir)?;
        let t = Instant::now();
        let bert = Bert::load(&gpu, &ckpt, Precision::Int8(ckpt.activation_dtype()))?;
        gpu.synchronize()?;
        runs.push(Run { name: format!("{} from {}", bert.describe(), dir.display()), bert, load: t.elapsed() });
    }

    let work: Vec<Work> = runs.iter().map(|r| r.bert.batches(&tokenizer, &sentences)).collect::<Result<_>>()?;
    let mut embeddings = Vec::new();
    for (r, w) in runs.iter().zip(&work) {
        embeddings.push(embed(&r.bert, w)?); // also warms up
    }
    // Timed forwards, interleaved across models so that load on the machine hits all alike.
    let mut times = vec![Vec::new(); runs.len()];
    for _ in 0..args.iters {
        for (i, (r, w)) in runs.iter().zip(&work).enumerate() {
            let t = Instant::now();
            embed(&r.bert, w)?;
            times[i].push(t.elapsed());
        }
    }

    let labels: Vec<String> = args.sentences.iter().map(|s| format!("{s:?}")).collect();
    let reference = (runs.first().is_some_and(|r| r.bert.precision() == Precision::F32)).then(|| embeddings[0].clone());
    for (i, r) in runs.iter().enumerate() {
        let (app, layers) = work[i][0].0.counts();
        let largest = work[i].iter().map(|(p, _)| p).max_by_key(|p| p.bytes()).ok_or("no batch")?;
        println!("\n== {} (loaded in {})", r.name, ms(r.load));
        println!(
            "GPU memory: weights {}, activations {} (batch {} x {} tokens)",
            mb(r.bert.weight_bytes()),
            mb(largest.bytes()),
            largest.batch(),
            largest.seq()
        );
        let per = if work[i].len() > 1 { "batches (one per sentence: LLM.int8())" } else { "batch" };
        println!(
            "time for the {} sentences: {} (median of {}; {} {per}, each {app} app kernels + {layers} linear layers recorded, {} submissions in {} runs)",
            sentences.len(),
            ms(median(times[i].clone())),
            args.iters,
            work[i].len(),
            r.bert.submissions(),
            args.iters + 1
        );
        print_similarity(&labels, &embeddings[i]);
        if let Some(reference) = &reference
            && i > 0
        {
            let cos: Vec<String> =
                reference.iter().zip(&embeddings[i]).map(|(a, b)| format!("{:.6}", cpu::cosine(a, b))).collect();
            println!("cosine to f32, per sentence: {}", cos.join(" "));
        }
    }

    if let Some(path) = &args.json {
        let models: Vec<serde_json::Value> =
            runs.iter().zip(&embeddings).map(|(r, e)| serde_json::json!({ "name": r.name, "embeddings": e })).collect();
        let doc = serde_json::json!({
            "adapter": gpu.describe(),
            "sentences": args.sentences,
            "tokens": lengths,
            "models": models
        });
        std::fs::write(path, doc.to_string()).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }

    if args.check {
        let ckpt = float.ok_or("--check needs the float checkpoint")?;
        let h = runs.first().ok_or("no model loaded")?.bert.config().hidden;
        let t = Instant::now();
        let cpu_e = cpu::CpuBert::new(ckpt)?.forward(&batch)?;
        let cpu_rows: Vec<Vec<f32>> = cpu_e.chunks(h).map(|r| r.iter().map(|&v| v as f32).collect()).collect();
        println!("\nCPU f64 reference forward ({}):", ms(t.elapsed()));
        for (r, e) in runs.iter().zip(&embeddings) {
            let cos: Vec<String> = cpu_rows.iter().zip(e).map(|(a, b)| format!("{:.7}", cpu::cosine(a, b))).collect();
            println!("  {}: cosine {}", r.name, cos.join(" "));
        }
    }

    if args.bench {
        bench(&runs, &tokenizer, &sentences, &args)?;
    }
    Ok(())
}

/// One model's batches for a list of sentences, with their plans ([`Bert::batches`]).
type Work = Vec<(ForwardPlan, Batch)>;

/// Embeds every batch of `work`, in order.
fn embed(bert: &Bert, work: &Work) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::new();
    for (plan, batch) in work {
        out.extend(bert.embed(plan, batch)?);
    }
    Ok(out)
}

/// Times several batch sizes for every model, interleaved, and the host time to record them
/// (LLM.int8() models run a forward per sentence: [`Bert::batches`]).
fn bench(runs: &[Run], tokenizer: &tokenizers::Tokenizer, sentences: &[&str], args: &Args) -> Result<()> {
    println!("\n== timing: median of {} runs each, models interleaved; `uptime`: {}", args.iters, uptime());
    println!("| model | batch | tokens | batch ms | per sentence ms | record µs | submissions/batch |");
    println!("|---|---|---|---|---|---|---|");
    for &b in &args.bench_batches {
        let picked: Vec<&str> = sentences.iter().cycle().take(b).copied().collect();
        let work: Vec<Work> = runs.iter().map(|r| r.bert.batches(tokenizer, &picked)).collect::<Result<_>>()?;
        let before: Vec<u64> = runs.iter().map(|r| r.bert.submissions()).collect();
        for (r, w) in runs.iter().zip(&work) {
            embed(&r.bert, w)?;
        }
        let mut times = vec![Vec::new(); runs.len()];
        for _ in 0..args.iters {
            for (i, (r, w)) in runs.iter().zip(&work).enumerate() {
                let t = Instant::now();
                embed(&r.bert, w)?;
                times[i].push(t.elapsed());
            }
        }
        for (i, (r, w)) in runs.iter().zip(&work).enumerate() {
            let device = r.bert.gpu().device();
            let mut rec = Vec::new();
            for _ in 0..20 {
                let t = Instant::now();
                let mut cbs = Vec::new();
                for (plan, _) in w {
                    let mut enc = device.create_command_encoder(&Default::default());
                    r.bert.record(plan, &mut enc)?;
                    cbs.push(enc.finish());
                }
                rec.push(t.elapsed());
                drop(cbs); // recorded only, never submitted
            }
            let fwd = median(times[i].clone());
            let subs = (r.bert.submissions() - before[i]) as f64 / (args.iters + 1) as f64;
            println!(
                "| {} | {b} | {} | {:.1} | {:.1} | {:.0} | {subs} |",
                r.bert.describe().replace('|', "\\|"),
                w.iter().map(|(p, _)| p.seq()).max().unwrap_or(0),
                fwd.as_secs_f64() * 1e3,
                fwd.as_secs_f64() * 1e3 / b as f64,
                median(rec).as_secs_f64() * 1e6
            );
        }
    }
    Ok(())
}

fn uptime() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map_or_else(|_| "n/a".into(), |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}
