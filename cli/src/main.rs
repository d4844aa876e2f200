//! `int8-wgpu`: quantize a safetensors checkpoint to int8 (compressed-tensors `pack-quantized`)
//! and inspect checkpoints.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use int8_wgpu::checkpoint::Checkpoint;
use int8_wgpu::quantizer::{self, Inspection, Quantizer};
use int8_wgpu::{Gpu, Granularity, Method, QuantScheme};

#[derive(Parser)]
#[command(name = "int8-wgpu", version, about = "8-bit weight quantization of safetensors checkpoints on wgpu")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Quantize every linear layer of a checkpoint to int8 and write a compressed-tensors folder.
    Quantize(QuantizeArgs),
    /// Print a checkpoint's tensors (shape, dtype, scheme, bytes) and its memory footprint.
    Inspect {
        /// A checkpoint folder (model.safetensors or shards + index) or a .safetensors file.
        ckpt: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum MethodArg {
    W8a16,
    W8a32,
    W8a8,
    LlmInt8,
}

#[derive(Clone, Copy, ValueEnum)]
enum SchemeArg {
    /// Symmetric (absmax), no zero point.
    Sym,
    /// Asymmetric, with zero points.
    Asym,
}

#[derive(Clone, Copy, ValueEnum)]
enum GranularityArg {
    /// One scale per output row.
    Channel,
    /// One scale per --group-size inputs of a row.
    Group,
    /// One scale per tensor.
    Tensor,
}

#[derive(clap::Args)]
struct QuantizeArgs {
    /// Input checkpoint: a folder (model.safetensors or shards + model.safetensors.index.json)
    /// or a .safetensors file.
    input: PathBuf,
    /// Output folder (must not exist unless --force).
    output: PathBuf,
    /// w8a16: 16-bit activations at load (the checkpoint's f16/bf16, bf16 for f32 models);
    /// w8a32: f32 activations; w8a8: 16-bit activations quantized to int8 per token at run time
    /// (written as compressed-tensors int-quantized W8A8); llm-int8: w8a8 with the feature columns
    /// at or above --outlier-threshold kept in float. w8a8 and llm-int8 need the default
    /// symmetric per-channel scheme (or --granularity tensor).
    #[arg(long, value_enum, default_value = "w8a16")]
    method: MethodArg,
    /// LLM.int8() outlier threshold for --method llm-int8 (default 6.0, bitsandbytes' default):
    /// columns with any |x| >= X run in float.
    // Negative numbers parse, so that the library's check says what is wrong with them.
    #[arg(long, value_name = "X", allow_negative_numbers = true, value_parser = parse_threshold)]
    outlier_threshold: Option<f32>,
    /// Symmetric or asymmetric quantization.
    #[arg(long, value_enum, default_value = "sym")]
    scheme: SchemeArg,
    /// Which weights share a scale. --group-size alone implies `group`.
    #[arg(long, value_enum)]
    granularity: Option<GranularityArg>,
    /// Inputs per group for --granularity group (must divide every quantized layer's in_features).
    #[arg(long, value_name = "G")]
    group_size: Option<usize>,
    /// Glob over full tensor names (`*`, `?`) to leave in float; repeatable.
    #[arg(long, value_name = "PAT", num_args = 1..)]
    exclude: Vec<String>,
    /// Glob over full tensor names: quantize only matching linear weights; repeatable.
    #[arg(long, value_name = "PAT", num_args = 1..)]
    include: Vec<String>,
    /// Do not apply the default excludes (embeddings, norms, position/type tables, lm_head).
    #[arg(long)]
    no_default_excludes: bool,
    /// Quantize on the CPU reference (the files are byte-identical). The default when the only
    /// GPU adapter is a CPU adapter (llvmpipe, lavapipe, WARP), where the reference is faster,
    /// or when there is no GPU adapter.
    #[arg(long, conflicts_with = "gpu")]
    cpu: bool,
    /// Quantize on the GPU adapter even when it is a CPU adapter (the default on a real GPU).
    #[arg(long)]
    gpu: bool,
    /// Replace the output folder if it exists (or appears during the run) and looks like a
    /// checkpoint (a *.safetensors file, otherwise only weights, configs, tokenizer files, model
    /// cards); any other folder is refused.
    /// Without it, nothing at the output path is ever replaced.
    #[arg(long)]
    force: bool,
    /// Random activation rows per layer for the output-error column (0 skips it; at most 4096).
    #[arg(long, value_name = "N", default_value_t = 8)]
    eval_rows: usize,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("error")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Quantize(args) => quantize(args),
        Command::Inspect { ckpt } => inspect(&ckpt),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// An f32 threshold, refusing what f32 cannot hold (Rust's parse would make 1e39 `inf` and 1e-50
/// `0`, and the message would then quote those instead of the value given).
fn parse_threshold(s: &str) -> Result<f32, String> {
    // Parsed as f32 directly (through f64 it could round twice); f64 only tells the range.
    let t: f32 = s.parse().map_err(|e| format!("`{s}` is not a number ({e})"))?;
    let wide: f64 = s.parse().map_err(|e| format!("`{s}` is not a number ({e})"))?;
    if t.is_infinite() && wide.is_finite() {
        return Err(format!("outlier threshold {s} is beyond f32's range (max {:e})", f32::MAX));
    }
    if t == 0.0 && wide != 0.0 {
        return Err(format!("outlier threshold {s} is below f32's smallest positive value ({:e})", f32::from_bits(1)));
    }
    Ok(t)
}

fn scheme_of(args: &QuantizeArgs) -> Result<QuantScheme, String> {
    let granularity = match (args.granularity, args.group_size) {
        (None | Some(GranularityArg::Group), Some(0)) => return Err("--group-size must be at least 1".into()),
        (None | Some(GranularityArg::Group), Some(size)) => Granularity::PerGroup { size },
        (Some(GranularityArg::Group), None) => return Err("--granularity group needs --group-size G".into()),
        (None | Some(GranularityArg::Channel), None) => Granularity::PerChannel { axis: 0 },
        (Some(GranularityArg::Tensor), None) => Granularity::PerTensor,
        (Some(_), Some(_)) => return Err("--group-size only applies to --granularity group".into()),
    };
    Ok(match args.scheme {
        SchemeArg::Sym => QuantScheme::symmetric(granularity),
        SchemeArg::Asym => QuantScheme::asymmetric(granularity),
    })
}

fn quantize(args: QuantizeArgs) -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(unix)]
    remove_temp_folders_on_signals();
    let scheme = scheme_of(&args)?;
    if scheme.granularity == Granularity::PerTensor {
        eprintln!(
            "warning: --granularity tensor has no vLLM kernel (vLLM runs int8 weight-only checkpoints with \
             channel or group scales); transformers loads it (README: \"What loads where\")"
        );
    }
    let method = match args.method {
        MethodArg::W8a16 => Method::W8A16,
        MethodArg::W8a32 => Method::W8A32,
        MethodArg::W8a8 => Method::W8A8,
        MethodArg::LlmInt8 => Method::LlmInt8,
    };
    let mut q = Quantizer::new(&args.input, &args.output)
        .method(method)
        .scheme(scheme)
        .default_excludes(!args.no_default_excludes)
        .eval_rows(args.eval_rows)
        .overwrite(args.force);
    if let Some(t) = args.outlier_threshold {
        q = q.outlier_threshold(t);
    }
    for p in &args.include {
        q = q.include(p);
    }
    for p in &args.exclude {
        q = q.exclude(p);
    }
    // Why the CPU reference runs though no --cpu was given; the report says it.
    let mut cpu_because = None;
    if args.cpu {
        q = q.cpu();
    } else {
        let gpu = match Gpu::new() {
            Ok(gpu) => gpu,
            // The reference needs no adapter: without --gpu it runs instead, and says why.
            Err(int8_wgpu::Error::NoAdapter { backends, detail }) if !args.gpu => {
                q = q.cpu();
                cpu_because = Some(format!("no GPU adapter for backends {backends} ({detail})"));
                return run(q, cpu_because);
            }
            Err(e @ int8_wgpu::Error::NoAdapter { .. }) => {
                return Err(format!("{e}; or quantize on the CPU reference with --cpu (the same bytes)").into());
            }
            Err(e) => return Err(e.into()),
        };
        if gpu.capabilities().cpu_adapter && !args.gpu {
            // An emulated GPU runs the same work slower than the reference, with the same bytes.
            q = q.cpu();
            let which = if std::env::var_os("WGPU_ADAPTER_NAME").is_some() { "chosen" } else { "only" };
            cpu_because = Some(format!(
                "the {which} GPU adapter, {}, is a CPU adapter, slower than the reference; --gpu uses it",
                gpu.describe()
            ));
        } else {
            q = q.gpu(gpu.clone());
        }
        // Never dropped: destroying the last device unloads the Vulkan driver, and Mesa's
        // lavapipe leaves an exit handler behind that then crashes the process at exit
        // (SIGSEGV after a successful run, ~5% of runs on a loaded machine).
        std::mem::forget(gpu);
    }
    run(q, cpu_because)
}

/// Runs `q` with a progress bar and prints its report; `cpu_because` says why the CPU reference
/// ran though no --cpu was given.
fn run(q: Quantizer, cpu_because: Option<String>) -> Result<(), Box<dyn std::error::Error>> {
    let mut bar: Option<ProgressBar> = None;
    let report = q.run_with_progress(|p| {
        let b = bar.get_or_insert_with(|| {
            let b = ProgressBar::new(p.total as u64);
            b.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {wide_msg}")
                    .expect("valid template"),
            );
            b
        });
        b.set_position(p.done as u64);
        match p.layer {
            Some(layer) => b.set_message(layer.to_string()),
            None => b.finish_and_clear(),
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let mut report = report?;
    if let Some(why) = cpu_because {
        report.backend = format!("the {}: {why}", report.backend);
    }
    println!("{report}");
    Ok(())
}

/// On SIGINT, SIGTERM or SIGHUP, removes the unfinished output and exits with 128 + the signal's
/// number, the status a shell reports for a process the signal killed; once the output is in
/// place, the run finishes instead ([`on_signal`]). Without this, the
/// temporary folder stays until the next run into the same parent folder removes it.
#[cfg(unix)]
fn remove_temp_folders_on_signals() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("warning: cannot handle SIGINT/SIGTERM ({e}); an interrupted run leaves its temporary folder");
            return;
        }
    };
    std::thread::spawn(move || {
        for sig in signals.forever() {
            let name = match sig {
                SIGINT => "SIGINT",
                SIGTERM => "SIGTERM",
                _ => "SIGHUP",
            };
            let (message, exit) = on_signal(name, quantizer::remove_temp_folders());
            eprintln!("\n{message}");
            if exit {
                // _exit, not exit: no atexit handlers (the GPU driver's) may run on this thread
                // while the main thread is still inside the driver.
                // SAFETY: ends the process; nothing is touched afterwards.
                unsafe { libc::_exit(128 + sig) }
            }
        }
    });
}

/// What the signal handler says after [`quantizer::remove_temp_folders`], and whether it ends
/// the process. A signal after the output moved into place leaves the run to finish and report
/// success: the output is complete and kept, and must not be called removed.
#[cfg(unix)]
fn on_signal(name: &str, cleanup: int8_wgpu::Result<quantizer::Cleanup>) -> (String, bool) {
    match cleanup {
        Err(e) => (format!("interrupted by {name}; could not remove the unfinished output: {e}"), true),
        Ok(c) if c.unfinished > 0 => (format!("interrupted by {name}; the unfinished output was removed"), true),
        Ok(c) if c.finished > 0 => (format!("{name} came after the output was complete; it was kept"), false),
        Ok(_) => (format!("interrupted by {name} before any output was written"), true),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_signal_after_the_move_keeps_the_output() {
        let c = |unfinished, finished| Ok(quantizer::Cleanup { unfinished, finished });
        assert_eq!(
            on_signal("SIGINT", c(1, 0)),
            ("interrupted by SIGINT; the unfinished output was removed".into(), true)
        );
        assert_eq!(
            on_signal("SIGINT", c(0, 1)),
            ("SIGINT came after the output was complete; it was kept".into(), false)
        );
        assert_eq!(
            on_signal("SIGTERM", c(0, 0)),
            ("interrupted by SIGTERM before any output was written".into(), true)
        );
    }
}

fn inspect(path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    println!("{}", Inspection::new(&Checkpoint::open(path)?)?);
    Ok(())
}
