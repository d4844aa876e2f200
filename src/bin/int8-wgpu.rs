//! `int8-wgpu`: quantize a safetensors checkpoint to int8 (compressed-tensors `pack-quantized`)
//! and inspect checkpoints.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use int8_wgpu::checkpoint::{Checkpoint, PackFormat, natural_cmp};
use int8_wgpu::quantizer::{self, Method, Quantizer, describe_scheme, format_bytes};
use int8_wgpu::{Gpu, Granularity, QuantScheme};

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
    /// w8a32: f32 activations.
    #[arg(long, value_enum, default_value = "w8a16")]
    method: MethodArg,
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
    /// Quantize on the CPU reference instead of the GPU (the files are byte-identical).
    #[arg(long)]
    cpu: bool,
    /// Replace the output folder if it exists (or appears during the run); without it, nothing at
    /// the output path is ever replaced.
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
    };
    let mut q = Quantizer::new(&args.input, &args.output)
        .method(method)
        .scheme(scheme)
        .default_excludes(!args.no_default_excludes)
        .eval_rows(args.eval_rows)
        .overwrite(args.force);
    for p in &args.include {
        q = q.include(p);
    }
    for p in &args.exclude {
        q = q.exclude(p);
    }
    if args.cpu {
        q = q.cpu();
    } else {
        let gpu = Gpu::new()?;
        q = q.gpu(gpu.clone());
        // Never dropped: destroying the last device unloads the Vulkan driver, and Mesa's
        // lavapipe leaves an exit handler behind that then crashes the process at exit
        // (SIGSEGV after a successful run, ~5% of runs on a loaded machine).
        std::mem::forget(gpu);
    }
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
    println!("{}", report?);
    Ok(())
}

/// On SIGINT, SIGTERM or SIGHUP, removes the unfinished output and exits with 128 + the signal's
/// number, the status a shell reports for a process the signal killed. Without this, the
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
        let Some(sig) = signals.forever().next() else { return };
        let name = match sig {
            SIGINT => "SIGINT",
            SIGTERM => "SIGTERM",
            _ => "SIGHUP",
        };
        match quantizer::remove_temp_folders() {
            Ok(()) => eprintln!("\ninterrupted by {name}; the unfinished output was removed"),
            Err(e) => eprintln!("\ninterrupted by {name}; could not remove the unfinished output: {e}"),
        }
        // _exit, not exit: no atexit handlers (the GPU driver's) may run on this thread while the
        // main thread is still inside the driver.
        // SAFETY: ends the process; nothing is touched afterwards.
        unsafe { libc::_exit(128 + sig) }
    });
}

fn inspect(path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let ckpt = Checkpoint::open(path)?;
    let layers = ckpt.quantized_layers();
    let mut infos = std::collections::HashMap::new();
    for l in &layers {
        infos.insert(l.clone(), ckpt.quantized_layer_info(l)?);
    }
    let mut names: Vec<&str> = ckpt.names().collect();
    names.sort_by(|a, b| natural_cmp(a, b));
    let w = names.iter().map(|n| n.len()).max().unwrap_or(6).max(6);
    println!("{:<w$}  {:>14}  {:>5}  {:>12}  {:>10}", "tensor", "shape", "dtype", "scheme", "bytes");
    for name in &names {
        let t = ckpt.info(name).expect("listed");
        let layer = name.strip_suffix(".weight_packed").or_else(|| name.strip_suffix(".weight"));
        let scheme = match layer.and_then(|l| infos.get(l)) {
            Some(i) if i.format == PackFormat::PackQuantized && name.ends_with(".weight_packed") => {
                describe_scheme(i.scheme)
            }
            Some(i) if i.format == PackFormat::IntQuantized && name.ends_with(".weight") => describe_scheme(i.scheme),
            _ => String::new(),
        };
        println!(
            "{:<w$}  {:>14}  {:>5}  {:>12}  {:>10}",
            name,
            format!("{:?}", t.shape),
            t.dtype.to_string(),
            scheme,
            format_bytes(t.nbytes())
        );
    }
    println!();
    let total = ckpt.nbytes();
    println!("{} tensors in {} file(s)", names.len(), ckpt.files().len());
    for f in ckpt.unlisted_files() {
        let why = if ckpt.is_sharded() {
            format!("not in `{}`", int8_wgpu::checkpoint::INDEX_FILE)
        } else {
            format!("not `{}`", int8_wgpu::checkpoint::MODEL_FILE)
        };
        println!("warning: `{f}` is in the folder but {why}: it is not read, its tensors are not listed above");
    }
    // Shapes come from the file: every size below is checked arithmetic, an error on overflow.
    let overflow =
        |what: &str| format!("the size estimate of {what} overflows; the checkpoint's shapes are implausible");
    if layers.is_empty() {
        // A float checkpoint: what the default quantization (sym, per channel) would make of it.
        let plan = Quantizer::new(path, "").plan(&ckpt)?;
        let (mut before, mut after) = (0usize, 0usize);
        for name in &plan.targets {
            let t = ckpt.info(name).expect("planned");
            let (out, inn) = (t.shape[0], t.shape[1]);
            // Packed rows of ceil(in/4) words, one scale per row, the [2] I64 weight_shape.
            let int8 = inn
                .div_ceil(4)
                .checked_mul(4)
                .and_then(|row| row.checked_mul(out))
                .and_then(|packed| packed.checked_add(out.checked_mul(t.dtype.bitsize() / 8)?))
                .and_then(|b| b.checked_add(16));
            before = before.checked_add(t.nbytes()).ok_or_else(|| overflow("the linear weights"))?;
            after = int8.and_then(|b| after.checked_add(b)).ok_or_else(|| overflow(&format!("`{name}`")))?;
        }
        let model =
            total.checked_sub(before).and_then(|rest| rest.checked_add(after)).ok_or_else(|| overflow("the model"))?;
        println!("not quantized; int8 estimate: symmetric per channel, default excludes");
        println!("{:<20} {:>10} {:>12}", "", "now", "as int8");
        footprint_rows(&format!("linear weights ({})", plan.targets.len()), before, after);
        footprint_rows("model", total, model);
    } else {
        let (mut float, mut stored) = (0usize, 0usize);
        for i in infos.values() {
            let layer = i.shape[0].checked_mul(i.shape[1]).and_then(|n| n.checked_mul(i.scale_dtype.bitsize() / 8));
            float = layer.and_then(|b| float.checked_add(b)).ok_or_else(|| overflow(&format!("`{}`", i.name)))?;
            stored = stored.checked_add(i.nbytes).ok_or_else(|| overflow("the quantized layers"))?;
        }
        let method = ckpt.method().map_or("not recorded".into(), |m| m.to_string());
        let format = ckpt
            .quantization_config()
            .map(|q| {
                let get = |k: &str| q.get(k).and_then(|v| v.as_str()).unwrap_or("?").to_string();
                format!("{}, {}", get("quant_method"), get("format"))
            })
            .unwrap_or_else(|| "no quantization_config".into());
        println!(
            "{} quantized linear layers ({format}; method {method}, activations {})",
            layers.len(),
            ckpt.activation_dtype()
        );
        println!("{:<20} {:>10} {:>12}", "", "as float", "now");
        let model =
            total.checked_sub(stored).and_then(|rest| rest.checked_add(float)).ok_or_else(|| overflow("the model"))?;
        footprint_rows(&format!("linear weights ({})", layers.len()), float, stored);
        footprint_rows("model", model, total);
    }
    Ok(())
}

/// One footprint line: `label  before  after  (ratio x smaller)`.
fn footprint_rows(label: &str, before: usize, after: usize) {
    println!(
        "{label:<20} {:>10} {:>12}   {:.2}x smaller",
        format_bytes(before),
        format_bytes(after),
        before as f64 / after.max(1) as f64
    );
}
