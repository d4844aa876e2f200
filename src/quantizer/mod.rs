//! Model-level quantization: every linear layer of a safetensors checkpoint to int8, written in
//! the compressed-tensors `pack-quantized` layout, with a per-layer report.
//!
//! ```no_run
//! use int8_wgpu::quantizer::{Method, Quantizer};
//! use int8_wgpu::{Granularity, QuantScheme};
//!
//! # fn main() -> Result<(), int8_wgpu::Error> {
//! let report = Quantizer::new("all-MiniLM-L6-v2", "all-MiniLM-L6-v2-int8")
//!     .method(Method::W8A16)
//!     .scheme(QuantScheme::symmetric(Granularity::PerChannel { axis: 0 }))
//!     .exclude("*pooler*")
//!     .run_with_progress(|p| eprintln!("{}/{} {}", p.done, p.total, p.layer.unwrap_or("")))?;
//! println!("{report}");
//! # Ok(())
//! # }
//! ```
//!
//! # What is quantized
//!
//! Candidates are the 2-D F32 / F16 / BF16 tensors named `*.weight`. With `include` patterns,
//! only candidates matching one of them are quantized. A candidate matching an `exclude` pattern
//! or one of [`DEFAULT_EXCLUDES`] (embeddings, norms, position and token-type tables, `lm_head`;
//! switch them off with [`Quantizer::default_excludes`]) is copied unchanged and listed in the
//! report, as is every other tensor. Patterns are globs over the full tensor name (`*` any run of
//! characters, dots included; `?` one character; see [`glob_match`]). A user pattern that
//! matches no tensor is a warning in the report (and a `log::warn!`). A zero-size candidate
//! (a 0 in its shape) has nothing to quantize: it is copied and listed. A `.safetensors` file in
//! the input folder that the checkpoint does not read
//! ([`Checkpoint::unlisted_files`](crate::checkpoint::Checkpoint::unlisted_files)) is a warning.
//!
//! # Checks before any work
//!
//! [`Quantizer::run`] refuses, before reading any tensor data: `eval_rows` above
//! [`MAX_EVAL_ROWS`]; an input that [`Checkpoint::open`] refuses (files that are not regular
//! files, corrupt headers, an empty or inconsistent index, a `config.json` that is not an
//! object); an input already quantized or whose names would collide with ours; a scheme without
//! a compressed-tensors layout or a group size that does not divide a layer.
//!
//! # Method and activations
//!
//! The method is recorded in each file's `__metadata__` (`int8_wgpu.method`); it fixes the
//! activation dtype [`Checkpoint::linear`](crate::checkpoint::Checkpoint::linear) uses: `w8a32`
//! runs f32 activations; `w8a16` runs the checkpoint's own dtype when it is f16 or bf16, and bf16
//! for f32 checkpoints (bf16 keeps f32's range, so activations cannot overflow as in f16).
//!
//! # Output
//!
//! The input is only read. The output is written into a temporary folder beside it,
//! `.int8-wgpu-tmp-<pid>-<n>` (a short name, whatever the output's), and renamed into place only
//! when complete.
//!
//! - An existing output is an error unless [`Quantizer::overwrite`] is set, and so is one that
//!   appears while the run works (another program or run created it): the final rename never
//!   replaces anything (Linux `renameat2(RENAME_NOREPLACE)`, macOS `renamex_np(RENAME_EXCL)`,
//!   elsewhere creating the folder exclusively and renaming over it while it is empty). What
//!   appeared is left as it is and the run's result discarded.
//! - With `overwrite`, an output folder (never a file) is exchanged with the new one in one step
//!   (`RENAME_EXCHANGE`, `RENAME_SWAP`), so that the path holds the old or the new output at
//!   every instant; then the old copy is removed. A failure to remove it does not fail the run: the
//!   report warns, naming the folder. Where the file system cannot exchange two paths (NFS, some
//!   FUSE file systems, other OSes), the old output is first moved aside to
//!   `.int8-wgpu-old-<pid>-<n>`, so the path is empty for a moment; should the new output then not
//!   move in, the old one is put back.
//! - A process that stops on a signal leaves no temporary folder when it calls
//!   [`remove_temp_folders`] before exiting; the `int8-wgpu` CLI does, on SIGINT, SIGTERM and
//!   SIGHUP. On Unix, the temporary folders of runs killed outright (`kill -9`, a crash) are removed
//!   by the next run into the same parent folder: those whose process is gone (or whose pid is this
//!   process's own, reused, and not one of its runs), unless a live run holds the lock on the
//!   folder that each run keeps on its own (a run in another pid namespace or on another machine).
//!   Older versions' `.<output>.int8-wgpu-tmp-<pid>-<n>` folders are removed alike, but not their
//!   `<that>.old` folders, which may hold the only copy of a previous output; nor are
//!   `.int8-wgpu-old-*` folders. Elsewhere stale folders are left alone.
//!
//! # Other files
//!
//! The other files of an input folder (tokenizer, configs, sub-folders such as `1_Pooling`) are
//! copied, except safetensors files, the index, `config.json`, other weight formats (a warning)
//! and hidden folders (`.git`, `.cache`). Nothing outside the input folder is ever read:
//!
//! - A symbolic link to a folder is never followed, wherever it points (`tok -> /etc` and
//!   `self -> .` alike): it is not copied, and the report warns.
//! - A symbolic link to a file is copied, as a regular file, when the file it resolves to is in
//!   the input folder, or, for a Hugging Face hub cache snapshot
//!   (`models--<org>--<name>/snapshots/<revision>/`, whose entries all link to
//!   `../../blobs/<hash>`), in that model's `blobs/` folder. A link resolving anywhere else or
//!   nowhere is not copied, and the report warns, naming it and where it leads.
//! - FIFOs, sockets and devices are neither copied nor opened (reading a FIFO would wait
//!   forever); the report warns. Files are opened without following a link or blocking, and
//!   checked again once open, so an entry swapped in the meantime is not read either.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::checkpoint::{
    self, CONFIG_FILE, Checkpoint, INDEX_FILE, METHOD_METADATA_KEY, MODEL_FILE, OutTensor, TensorDtype, TensorInfo,
};
use crate::{DType, Element, Error, Gpu, QuantScheme, QuantizedTensor, Result, reference};

mod extra_files;
mod output;

pub use crate::scheme::Method;
pub use output::remove_temp_folders;

/// The most activation rows [`Quantizer::eval_rows`] accepts. The evaluation costs
/// rows × out × in multiply-adds per layer, in f64, on one CPU core, and rows × in f32 values of
/// memory; 4096 rows of a 4096×4096 layer are already 69 G multiply-adds. A larger value is an
/// [`Error::TooLarge`] when the run starts.
pub const MAX_EVAL_ROWS: usize = 4096;

/// Patterns excluded unless [`Quantizer::default_excludes`] is switched off: embeddings, norms,
/// position and token-type tables, and the output head (the course keeps `lm_head` in float).
pub const DEFAULT_EXCLUDES: &[&str] =
    &["*embeddings*", "*embed_tokens*", "*LayerNorm*", "*norm*", "*position*", "*token_type*", "*lm_head*"];

/// Whether `name` matches the glob `pattern` as a whole: `*` matches any run of characters
/// (dots included), `?` exactly one character, anything else itself (case-sensitive).
///
/// ```
/// use int8_wgpu::quantizer::glob_match;
/// assert!(glob_match("encoder.layer.*.attention.*", "encoder.layer.3.attention.self.query.weight"));
/// assert!(glob_match("*lm_head*", "lm_head.weight"));
/// assert!(!glob_match("layer.?.dense", "layer.10.dense"));
/// ```
pub fn glob_match(pattern: &str, name: &str) -> bool {
    // On bytes, without allocating (the planner calls this for every tensor and pattern: seven
    // default patterns over a million names). Comparing literal bytes matches exactly when
    // comparing characters does, UTF-8 being self-synchronising; `?` and a star's retry step
    // over a whole character.
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let char_len = |i: usize| match n[i] {
        0..0x80 => 1,
        0xF0.. => 4,
        0xE0.. => 3,
        _ => 2,
    };
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was, and the name position it is currently matched up to.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'?' {
            pi += 1;
            ni += char_len(ni);
        } else if pi < p.len() && p[pi] != b'*' && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            // Let the last star swallow one more character and retry.
            let sn = sn + char_len(sn);
            star = Some((sp, sn));
            pi = sp + 1;
            ni = sn;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Where quantization runs.
#[derive(Clone, Debug)]
pub enum Backend {
    /// On this GPU ([`Gpu::quantize`]).
    Gpu(Gpu),
    /// On the CPU reference ([`reference::quantize`]). Gives byte-identical files.
    Cpu,
}

/// One step of a running quantization, passed to the progress callback.
#[derive(Clone, Copy, Debug)]
pub struct Progress<'a> {
    /// Layers finished.
    pub done: usize,
    /// Layers to quantize in all.
    pub total: usize,
    /// The layer starting now; `None` in the final call (`done == total`).
    pub layer: Option<&'a str>,
}

/// A `*.weight` tensor that is not quantized, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Skipped {
    /// The tensor name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its dtype.
    pub dtype: TensorDtype,
    /// Why it is copied unchanged.
    pub reason: String,
}

/// What a [`Quantizer`] will do to a checkpoint, decided from the headers alone.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The tensors to quantize (`P.weight`), sorted.
    pub targets: Vec<String>,
    /// The `*.weight` tensors left in float, with the reason.
    pub skipped: Vec<Skipped>,
    /// Patterns that matched nothing, and the like.
    pub warnings: Vec<String>,
    /// Layer names for the config's `ignore` list: every 2-D `*.weight` tensor left in float,
    /// without the `.weight` suffix (compressed-tensors would otherwise expect every `Linear`
    /// quantized).
    pub ignore: Vec<String>,
}

/// The result for one quantized layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerReport {
    /// The layer name `P` (its weight was `P.weight`).
    pub name: String,
    /// `[out, in]`.
    pub shape: [usize; 2],
    /// The float weight's dtype (the scales are stored in it).
    pub dtype: DType,
    /// The scheme.
    pub scheme: QuantScheme,
    /// Bytes of the float weight.
    pub bytes_before: usize,
    /// Bytes of the layer's quantized tensors (packed weight, shape, scales, zero points).
    pub bytes_after: usize,
    /// Mean squared error of the dequantized weight (as stored, scales in the weight's dtype).
    pub mse: f64,
    /// Largest absolute error of the dequantized weight.
    pub max_abs: f64,
    /// `‖y_q − y‖₂ / ‖y‖₂` on random f32 activations in [-1, 1): `y_q` from the quantized
    /// layer ([`reference::linear`]), `y` from the float weight in f64. `None` when
    /// [`Quantizer::eval_rows`] is 0.
    pub output_rel_error: Option<f64>,
    /// Largest `|y_q − y|` of the same evaluation.
    pub output_max_abs: Option<f64>,
}

/// What a [`Quantizer`] did: per layer, totals, what was left in float, warnings.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantReport {
    /// The input checkpoint.
    pub input: PathBuf,
    /// The output folder.
    pub output: PathBuf,
    /// The method recorded.
    pub method: Method,
    /// The scheme used.
    pub scheme: QuantScheme,
    /// Where quantization ran (the GPU's description, or `CPU reference`).
    pub backend: String,
    /// The quantized layers, in file order.
    pub layers: Vec<LayerReport>,
    /// The `*.weight` tensors left in float.
    pub skipped: Vec<Skipped>,
    /// Warnings (patterns that matched nothing, files not copied).
    pub warnings: Vec<String>,
    /// Other files copied (tokenizer, configs), relative to the input folder.
    pub copied_files: Vec<PathBuf>,
    /// Bytes of all tensors in the input.
    pub total_before: usize,
    /// Bytes of all tensors in the output.
    pub total_after: usize,
}

impl QuantReport {
    /// Bytes of the quantized layers' float weights.
    pub fn linear_before(&self) -> usize {
        self.layers.iter().map(|l| l.bytes_before).sum()
    }

    /// Bytes of the quantized layers' tensors in the output.
    pub fn linear_after(&self) -> usize {
        self.layers.iter().map(|l| l.bytes_after).sum()
    }
}

/// Formats a byte count in decimal units (`kB`, `MB`, `GB`), as the course's footprint does.
pub fn format_bytes(bytes: usize) -> String {
    let b = bytes as f64;
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} kB", b / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2} MB", b / 1e6),
        _ => format!("{:.2} GB", b / 1e9),
    }
}

/// Describes a scheme briefly: `sym channel`, `asym group 32`, `sym tensor`.
pub fn describe_scheme(s: QuantScheme) -> String {
    let mode = if s.has_zero_point() { "asym" } else { "sym" };
    match s.granularity {
        crate::Granularity::PerTensor => format!("{mode} tensor"),
        crate::Granularity::PerChannel { axis: 0 } => format!("{mode} channel"),
        crate::Granularity::PerChannel { axis } => format!("{mode} channel(axis {axis})"),
        crate::Granularity::PerGroup { size } => format!("{mode} group {size}"),
    }
}

fn ratio(before: usize, after: usize) -> String {
    if after == 0 { "-".into() } else { format!("{:.2}x smaller", before as f64 / after as f64) }
}

impl fmt::Display for QuantReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.layers.iter().map(|l| l.name.len()).max().unwrap_or(5).max(5);
        writeln!(
            f,
            "{:<w$}  {:>11}  {:>5}  {:>10}  {:>10}  {:>10}  {:>9}  {:>11}",
            "layer", "shape", "dtype", "before", "after", "weight MSE", "max |err|", "out rel err"
        )?;
        for l in &self.layers {
            let rel = l.output_rel_error.map_or("-".into(), |e| format!("{e:.3e}"));
            writeln!(
                f,
                "{:<w$}  {:>11}  {:>5}  {:>10}  {:>10}  {:>10.3e}  {:>9.3e}  {:>11}",
                l.name,
                format!("{}x{}", l.shape[0], l.shape[1]),
                l.dtype.to_string(),
                format_bytes(l.bytes_before),
                format_bytes(l.bytes_after),
                l.mse,
                l.max_abs,
                rel
            )?;
        }
        writeln!(f)?;
        let n = self.layers.len().max(1) as f64;
        let mean_rel: f64 = self.layers.iter().filter_map(|l| l.output_rel_error).sum::<f64>() / n;
        let max_rel = self.layers.iter().filter_map(|l| l.output_rel_error).fold(0.0, f64::max);
        writeln!(
            f,
            "quantized {} linear layers ({}, {}, on {})",
            self.layers.len(),
            self.method,
            describe_scheme(self.scheme),
            self.backend
        )?;
        writeln!(
            f,
            "linear weights: {} -> {} ({})",
            format_bytes(self.linear_before()),
            format_bytes(self.linear_after()),
            ratio(self.linear_before(), self.linear_after())
        )?;
        writeln!(
            f,
            "all tensors:    {} -> {} ({})",
            format_bytes(self.total_before),
            format_bytes(self.total_after),
            ratio(self.total_before, self.total_after)
        )?;
        if self.layers.iter().any(|l| l.output_rel_error.is_some()) {
            writeln!(f, "layer output relative error: mean {mean_rel:.3e}, max {max_rel:.3e}")?;
        }
        if !self.skipped.is_empty() {
            writeln!(f, "left in float ({} weight tensors):", self.skipped.len())?;
            // Grouped by reason, in order of first appearance.
            let mut groups: Vec<(&str, Vec<&Skipped>)> = Vec::new();
            for s in &self.skipped {
                match groups.iter_mut().find(|(r, _)| *r == s.reason) {
                    Some((_, v)) => v.push(s),
                    None => groups.push((&s.reason, vec![s])),
                }
            }
            for (reason, v) in groups {
                let show = |s: &Skipped| format!("{} {:?}", s.name, s.shape);
                let list = match v.as_slice() {
                    [a] => show(a),
                    [a, b] => format!("{}, {}", show(a), show(b)),
                    [a, .., z] if v.len() > 4 => format!("{} tensors: {}, ..., {}", v.len(), show(a), show(z)),
                    _ => v.iter().map(|s| show(s)).collect::<Vec<_>>().join(", "),
                };
                writeln!(f, "  {reason}: {list}")?;
            }
        }
        if !self.copied_files.is_empty() {
            let names: Vec<String> = self.copied_files.iter().map(|p| p.display().to_string()).collect();
            writeln!(f, "copied files: {}", names.join(", "))?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        write!(f, "written to {}", self.output.display())
    }
}

/// Quantizes a safetensors checkpoint into a compressed-tensors folder (see the module docs).
#[derive(Clone, Debug)]
pub struct Quantizer {
    input: PathBuf,
    output: PathBuf,
    method: Method,
    scheme: QuantScheme,
    include: Vec<String>,
    exclude: Vec<String>,
    default_excludes: bool,
    backend: Option<Backend>,
    eval_rows: usize,
    overwrite: bool,
}

impl Quantizer {
    /// A quantizer from `input` (a checkpoint folder or a `.safetensors` file) to the folder
    /// `output`, with the defaults: `w8a16`, symmetric per output channel, default excludes,
    /// quantization on a GPU opened with [`Gpu::new`], 8 evaluation rows.
    pub fn new(input: impl Into<PathBuf>, output: impl Into<PathBuf>) -> Self {
        Self {
            input: input.into(),
            output: output.into(),
            method: Method::default(),
            scheme: QuantScheme::default(),
            include: Vec::new(),
            exclude: Vec::new(),
            default_excludes: true,
            backend: None,
            eval_rows: 8,
            overwrite: false,
        }
    }

    /// Sets the method (recorded in the output; fixes the activation dtype at load).
    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// Sets the scheme. Per channel must be along axis 0 (one scale per output row).
    pub fn scheme(mut self, scheme: QuantScheme) -> Self {
        self.scheme = scheme;
        self
    }

    /// Adds an include pattern: when any is given, only candidates matching one are quantized.
    pub fn include(mut self, pattern: impl Into<String>) -> Self {
        self.include.push(pattern.into());
        self
    }

    /// Adds an exclude pattern.
    pub fn exclude(mut self, pattern: impl Into<String>) -> Self {
        self.exclude.push(pattern.into());
        self
    }

    /// Whether [`DEFAULT_EXCLUDES`] apply (default: yes).
    pub fn default_excludes(mut self, on: bool) -> Self {
        self.default_excludes = on;
        self
    }

    /// Quantizes on this GPU.
    pub fn gpu(mut self, gpu: Gpu) -> Self {
        self.backend = Some(Backend::Gpu(gpu));
        self
    }

    /// Quantizes on the CPU reference instead of the GPU (byte-identical output).
    pub fn cpu(mut self) -> Self {
        self.backend = Some(Backend::Cpu);
        self
    }

    /// Sets the backend.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Activation rows for each layer's output-error evaluation (0 skips it; default 8; at most
    /// [`MAX_EVAL_ROWS`], checked when the run starts).
    pub fn eval_rows(mut self, rows: usize) -> Self {
        self.eval_rows = rows;
        self
    }

    /// Whether an existing output folder is replaced, also one that appears while the run works
    /// (default: no, either is an error). See the module docs, "Output".
    pub fn overwrite(mut self, yes: bool) -> Self {
        self.overwrite = yes;
        self
    }

    /// Decides what to quantize from the checkpoint's headers.
    pub fn plan(&self, ckpt: &Checkpoint) -> Result<Plan> {
        let mut plan = Plan::default();
        let defaults: &[&str] = if self.default_excludes { DEFAULT_EXCLUDES } else { &[] };
        let mut included_something = false;
        for (name, info) in ckpt.tensors() {
            if !name.ends_with(".weight") {
                continue;
            }
            let user_ex = self.exclude.iter().find(|p| glob_match(p, name));
            let default_ex = defaults.iter().find(|p| glob_match(p, name));
            let included = self.include.is_empty() || self.include.iter().any(|p| glob_match(p, name));
            let reason = if let Some(p) = user_ex {
                Some(format!("excluded by `{p}`"))
            } else if let Some(p) = default_ex {
                Some(format!("excluded by default pattern `{p}`"))
            } else if !included {
                Some("not matched by an include pattern".to_string())
            } else if info.shape.len() != 2 {
                Some(format!("{}-D, not a linear weight", info.shape.len()))
            } else if info.numel() == 0 {
                // Nothing to quantize, and a zero-size layer would abort the whole run.
                Some("zero-size, nothing to quantize".to_string())
            } else if info.float_dtype().is_none() {
                if !self.include.is_empty() {
                    return Err(Error::Checkpoint(format!(
                        "tensor `{name}` matches an include pattern but its dtype {} is not supported for \
                         quantization (F32, F16, BF16 are); exclude it",
                        info.dtype
                    )));
                }
                Some(format!("dtype {} is not quantized", info.dtype))
            } else {
                None
            };
            match reason {
                None => {
                    included_something = true;
                    plan.targets.push(name.to_string());
                }
                Some(reason) => {
                    // Every 2-D weight left in float may be a Linear the loader must not expect
                    // quantized (compressed-tensors targets all `Linear` modules).
                    if info.shape.len() == 2 {
                        plan.ignore.push(name.trim_end_matches(".weight").to_string());
                    }
                    plan.skipped.push(Skipped {
                        name: name.to_string(),
                        shape: info.shape.clone(),
                        dtype: info.dtype,
                        reason,
                    });
                }
            }
        }
        // Names are unique, so an unstable sort gives the same order without a merge buffer.
        plan.targets.sort_unstable_by(|a, b| checkpoint::natural_cmp(a, b));
        plan.skipped.sort_unstable_by(|a, b| checkpoint::natural_cmp(&a.name, &b.name));
        plan.ignore.sort_unstable_by(|a, b| checkpoint::natural_cmp(a, b));
        for (kind, pats) in [("exclude", &self.exclude), ("include", &self.include)] {
            for p in pats.iter().filter(|p| !ckpt.names().any(|n| glob_match(p, n))) {
                plan.warnings.push(format!("{kind} pattern `{p}` matches no tensor"));
            }
        }
        if !included_something {
            plan.warnings.push("no tensor is quantized: every linear weight is excluded or none exists".into());
        }
        for f in ckpt.unlisted_files() {
            plan.warnings.push(if ckpt.is_sharded() {
                format!(
                    "`{f}` is in the input folder but not in `{INDEX_FILE}`: it was not read and its tensors are not \
                     in the output"
                )
            } else {
                format!(
                    "`{f}` is in the input folder but is not `{MODEL_FILE}`: it was not read and its tensors are not \
                     in the output"
                )
            });
        }
        Ok(plan)
    }

    /// Runs the quantization.
    pub fn run(&self) -> Result<QuantReport> {
        self.run_with_progress(|_| {})
    }

    /// Runs the quantization, calling `progress` before each layer and once at the end.
    pub fn run_with_progress(&self, mut progress: impl FnMut(Progress<'_>)) -> Result<QuantReport> {
        // Settings first: they need no file, and a bad one must not cost a pass over the model.
        if self.eval_rows > MAX_EVAL_ROWS {
            return Err(Error::TooLarge {
                what: "eval_rows (activation rows per layer for the output error)".into(),
                size: u64::try_from(self.eval_rows).unwrap_or(u64::MAX),
                limit: MAX_EVAL_ROWS as u64,
            });
        }
        let ckpt = Checkpoint::open(&self.input)?;
        self.check_paths(&ckpt)?;
        self.check_input(&ckpt)?;
        let plan = self.plan(&ckpt)?;
        for w in &plan.warnings {
            log::warn!("{w}");
        }
        // Fail on an unusable scheme before any work.
        checkpoint::quantization_config(self.scheme, &[])?;
        if let crate::Granularity::PerGroup { size } = self.scheme.granularity {
            let bad: Vec<&String> = plan
                .targets
                .iter()
                .filter(|t| ckpt.info(t).is_some_and(|i| size == 0 || i.shape[1] % size != 0))
                .collect();
            if let Some(first) = bad.first() {
                return Err(Error::Scheme(format!(
                    "group size {size} does not divide the input size of {} layer(s), first `{first}` {:?}; choose a \
                     group size that divides every in_features, or exclude those layers",
                    bad.len(),
                    ckpt.info(first).map(|i| i.shape.clone()).unwrap_or_default()
                )));
            }
        }
        let backend = match &self.backend {
            Some(b) => b.clone(),
            None => Backend::Gpu(Gpu::new()?),
        };
        let backend_name = match &backend {
            Backend::Gpu(g) => g.describe(),
            Backend::Cpu => "CPU reference".to_string(),
        };
        let targets: BTreeSet<&str> = plan.targets.iter().map(String::as_str).collect();
        let total = targets.len();

        if self.output.file_name().is_none() {
            return Err(Error::Checkpoint(format!("output path `{}` has no folder name", self.output.display())));
        }
        let parent = self.output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        fs::create_dir_all(parent).map_err(|e| Error::io("creating folder", parent, e))?;
        // Absolute: the registered temporary folder must stay valid if the process changes directory.
        let parent = std::path::absolute(parent).map_err(|e| Error::io("resolving", parent, e))?;
        let stale_warnings = output::remove_stale(&parent);
        let tmp = output::TmpDir::create(&parent)?;

        let mut layers = Vec::new();
        let mut weight_map = BTreeMap::new();
        let mut total_after = 0usize;
        for (i, file) in ckpt.files().iter().enumerate() {
            let data = ckpt.read_file(i)?;
            let file_name = if ckpt.is_sharded() {
                file.file_name().expect("shard files have names").to_string_lossy().into_owned()
            } else {
                MODEL_FILE.to_string()
            };
            let mut out = Vec::new();
            let mut names: Vec<(&str, &TensorInfo)> = ckpt.tensors().filter(|(_, t)| t.file == i).collect();
            names.sort_by(|a, b| checkpoint::natural_cmp(a.0, b.0));
            for (name, info) in names {
                let bytes = ckpt.slice(info, &data);
                if targets.contains(name) {
                    let layer = name.trim_end_matches(".weight");
                    progress(Progress { done: layers.len(), total, layer: Some(layer) });
                    let (report, tensors) =
                        self.quantize_layer(&backend, layer, info, bytes).map_err(|e| e.in_tensor(name))?;
                    for (suffix, t) in tensors {
                        out.push((format!("{layer}.{suffix}"), t));
                    }
                    layers.push(report);
                } else {
                    out.push((
                        name.to_string(),
                        OutTensor { dtype: info.dtype, shape: info.shape.clone(), data: bytes.into() },
                    ));
                }
            }
            for (name, t) in &out {
                weight_map.insert(name.clone(), file_name.clone());
                total_after += t.data.len();
            }
            let mut metadata = ckpt.file_metadata(i).cloned().unwrap_or_default();
            metadata.entry("format".into()).or_insert_with(|| "pt".into());
            metadata.insert(METHOD_METADATA_KEY.into(), self.method.to_string());
            tmp.ensure_live()?;
            checkpoint::write_safetensors(&tmp.path().join(&file_name), out, Some(metadata))?;
        }
        progress(Progress { done: layers.len(), total, layer: None });

        let mut warnings = plan.warnings.clone();
        warnings.extend(stale_warnings);
        let mut copied_files = Vec::new();
        tmp.ensure_live()?;
        if ckpt.is_sharded() {
            let index = json!({ "metadata": { "total_size": total_after }, "weight_map": weight_map });
            checkpoint::write_json(&tmp.path().join(INDEX_FILE), &index)?;
        }
        if let Some(dir) = ckpt.folder() {
            if let Some(config) = ckpt.config() {
                let mut config = config.clone();
                let Some(obj) = config.as_object_mut() else {
                    return Err(Error::Checkpoint(format!(
                        "`{}` is not a JSON object",
                        dir.join(CONFIG_FILE).display()
                    )));
                };
                obj.insert("quantization_config".into(), checkpoint::quantization_config(self.scheme, &plan.ignore)?);
                checkpoint::write_json(&tmp.path().join(CONFIG_FILE), &config)?;
            }
            extra_files::copy_extra_files(dir, tmp.path(), &mut copied_files, &mut warnings)?;
        }

        warnings.extend(output::commit(tmp, &self.output, self.overwrite)?);
        Ok(QuantReport {
            input: self.input.clone(),
            output: self.output.clone(),
            method: self.method,
            scheme: self.scheme,
            backend: backend_name,
            layers,
            skipped: plan.skipped,
            warnings,
            copied_files,
            total_before: ckpt.nbytes(),
            total_after,
        })
    }

    /// The output must not be the input, inside it, or hold it; it may exist only with `overwrite`.
    fn check_paths(&self, ckpt: &Checkpoint) -> Result<()> {
        let input = fs::canonicalize(ckpt.path()).map_err(|e| Error::io("opening checkpoint", ckpt.path(), e))?;
        let output = absolute(&self.output)?;
        if output.starts_with(&input) || input.starts_with(&output) {
            return Err(Error::Checkpoint(format!(
                "output `{}` would overwrite or be inside the input `{}`; choose a separate output folder",
                self.output.display(),
                self.input.display()
            )));
        }
        if self.output.exists() && !self.overwrite {
            return Err(Error::Checkpoint(format!(
                "output `{}` already exists; remove it, choose another folder, or allow overwriting (--force)",
                self.output.display()
            )));
        }
        if self.output.exists() && !self.output.is_dir() {
            return Err(Error::Checkpoint(format!("output `{}` exists and is not a folder", self.output.display())));
        }
        Ok(())
    }

    /// Refuses inputs that are already quantized or whose names would collide with ours.
    fn check_input(&self, ckpt: &Checkpoint) -> Result<()> {
        if ckpt.quantization_config().is_some() {
            return Err(Error::Checkpoint(format!(
                "`{}` is already quantized (its config.json has a quantization_config); quantize the float checkpoint",
                self.input.display()
            )));
        }
        if let Some(n) = ckpt.names().find(|n| n.ends_with(".weight_packed")) {
            return Err(Error::Checkpoint(format!(
                "`{}` is already quantized (it holds `{n}`); quantize the float checkpoint",
                self.input.display()
            )));
        }
        for (name, info) in ckpt.tensors() {
            let Some(p) = name.strip_suffix(".weight") else { continue };
            if info.shape.len() != 2 || info.float_dtype().is_none() {
                continue;
            }
            for suffix in ["weight_packed", "weight_shape", "weight_scale", "weight_zero_point"] {
                let other = format!("{p}.{suffix}");
                if ckpt.info(&other).is_some() {
                    return Err(Error::Checkpoint(format!(
                        "tensor name collision: quantizing `{name}` would write `{other}`, which the input already \
                         holds; rename or exclude it"
                    )));
                }
            }
        }
        Ok(())
    }

    fn quantize_layer(
        &self,
        backend: &Backend,
        layer: &str,
        info: &TensorInfo,
        bytes: &[u8],
    ) -> Result<(LayerReport, Vec<(&'static str, OutTensor<'static>)>)> {
        let dtype = info.float_dtype().expect("targets are float");
        let shape = [info.shape[0], info.shape[1]];
        let (q, w) = match dtype {
            DType::F32 => quantize_as::<f32>(backend, bytes, shape, self.scheme)?,
            DType::F16 => quantize_as::<half::f16>(backend, bytes, shape, self.scheme)?,
            DType::BF16 => quantize_as::<half::bf16>(backend, bytes, shape, self.scheme)?,
        };
        let q = checkpoint::exported(&q, dtype)?;
        let tensors = checkpoint::layer_tensors(&q, dtype)?;
        let err = q.error(&w)?;
        let (rel, max) = match self.eval_rows {
            0 => (None, None),
            rows => {
                let (r, m) = output_error(&q, &w, rows, seed_of(layer))?;
                (Some(r), Some(m))
            }
        };
        let report = LayerReport {
            name: layer.to_string(),
            shape,
            dtype,
            scheme: self.scheme,
            bytes_before: bytes.len(),
            bytes_after: tensors.iter().map(|(_, t)| t.data.len()).sum(),
            mse: err.mse,
            max_abs: err.max_abs,
            output_rel_error: rel,
            output_max_abs: max,
        };
        Ok((report, tensors))
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if let Ok(c) = fs::canonicalize(p) {
        return Ok(c);
    }
    // Not there yet: canonicalize the nearest existing ancestor and append the rest.
    let abs = std::path::absolute(p).map_err(|e| Error::io("resolving", p, e))?;
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        rest.push(existing.file_name().map(ToOwned::to_owned).unwrap_or_default());
        existing = match existing.parent() {
            Some(p) => p,
            None => return Ok(abs),
        };
    }
    let mut out = fs::canonicalize(existing).map_err(|e| Error::io("resolving", existing, e))?;
    out.extend(rest.iter().rev());
    Ok(out)
}

fn quantize_as<T: Element>(
    backend: &Backend,
    bytes: &[u8],
    shape: [usize; 2],
    scheme: QuantScheme,
) -> Result<(QuantizedTensor, Vec<f32>)> {
    let x: Vec<T> = bytemuck::pod_collect_to_vec(bytes);
    let q = match backend {
        Backend::Gpu(g) => g.quantize(&x, &shape, scheme)?.to_host()?,
        Backend::Cpu => reference::quantize(&x, &shape, scheme)?,
    };
    Ok((q, x.iter().map(|v| v.to_f32()).collect()))
}

/// FNV-1a of the layer name: each layer gets its own reproducible activations.
fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The deterministic activations a layer's output error is measured on: `n` values in [-1, 1)
/// from xorshift64 seeded with `seed` (each layer's seed is the FNV-1a hash of its name), so a
/// report can be reproduced. The crate's tests and benches draw their data from it too.
pub fn random_activations(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Relative L2 and max abs error of the quantized layer's output against the float layer in f64.
fn output_error(q: &QuantizedTensor, w: &[f32], rows: usize, seed: u64) -> Result<(f64, f64)> {
    let [n, k] = [q.shape()[0], q.shape()[1]];
    // Bounded by MAX_EVAL_ROWS in a run, but checked here too: the sizes come from the file.
    let too_large = || Error::TooLarge {
        what: format!("the output-error evaluation ({rows} rows of a [{n}, {k}] layer)"),
        size: (rows as u128 * n.max(k) as u128).try_into().unwrap_or(u64::MAX),
        limit: usize::MAX as u64,
    };
    let len = rows.checked_mul(k).ok_or_else(too_large)?;
    rows.checked_mul(n).ok_or_else(too_large)?;
    let x = random_activations(len, seed);
    let yq = reference::linear::<f32>(&x, q, None)?;
    let (mut num, mut den, mut max) = (0f64, 0f64, 0f64);
    for (m, xrow) in x.chunks_exact(k).enumerate() {
        for j in 0..n {
            let y: f64 = xrow.iter().zip(&w[j * k..(j + 1) * k]).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
            let d = f64::from(yq[m * n + j]) - y;
            num += d * d;
            den += y * y;
            max = max.max(d.abs());
        }
    }
    let rel = if den > 0.0 {
        (num / den).sqrt()
    } else if num == 0.0 {
        0.0
    } else {
        f64::INFINITY
    };
    Ok((rel, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_basics() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "a.b.c"));
        assert!(glob_match("a*c", "abc"));
        assert!(glob_match("a*c", "ac"));
        assert!(glob_match("a*c", "abcbc"));
        assert!(!glob_match("a*c", "abcb"));
        assert!(glob_match("?", "x"));
        assert!(!glob_match("?", ""));
        assert!(!glob_match("?", "xy"));
        assert!(glob_match("*lm_head*", "model.lm_head.weight"));
        assert!(glob_match("encoder.layer.*.attention.*", "encoder.layer.11.attention.output.dense.weight"));
        assert!(!glob_match("encoder.layer.*.attention.*", "encoder.layer.11.output.dense.weight"));
        assert!(glob_match("layer.?.dense", "layer.1.dense"));
        assert!(!glob_match("layer.?.dense", "layer.12.dense"));
        assert!(glob_match("**a**", "xax"));
        assert!(!glob_match("abc", "abcd"));
        assert!(!glob_match("*LayerNorm*", "layernorm"));
        assert!(glob_match("*.weight", "x.weight"));
        assert!(!glob_match("*.weight", "x.weight_scale"));
    }

    /// `glob_match` as first written, on `Vec<char>`s: the specification of the byte version.
    fn glob_match_chars(pattern: &str, name: &str) -> bool {
        let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
        let (mut pi, mut ni) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ni < n.len() {
            if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == n[ni])) {
                pi += 1;
                ni += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some((pi, ni));
                pi += 1;
            } else if let Some((sp, sn)) = star {
                star = Some((sp, sn + 1));
                pi = sp + 1;
                ni = sn + 1;
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&c| c == '*')
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config { cases: 20_000, ..Default::default() })]

        #[test]
        fn glob_match_agrees_with_the_char_version(
            // Multi-byte characters sharing a lead byte (é, è), a 3- and a 4-byte one, so `?`
            // and the star's retry must step over whole characters.
            pattern in "[ab.*?éè€😀]{0,7}",
            name in "[ab.*?éè€😀]{0,9}",
        ) {
            proptest::prop_assert_eq!(glob_match(&pattern, &name), glob_match_chars(&pattern, &name));
        }
    }

    #[test]
    fn glob_matches_whole_characters() {
        assert!(glob_match("?", "é") && glob_match("?", "😀") && !glob_match("??", "é"));
        assert!(glob_match("a*€b", "a😀é€b") && !glob_match("a*€b", "a😀éb"));
        assert!(glob_match("*?", "€") && glob_match("*è", "éè"));
    }

    #[test]
    fn byte_formatting() {
        assert_eq!(format_bytes(999), "999 B");
        assert_eq!(format_bytes(1_500), "1.5 kB");
        assert_eq!(format_bytes(90_868_376), "90.87 MB");
    }

    #[test]
    fn output_error_is_zero_for_exact_weights() {
        // Weights that quantize exactly (multiples of the scale) give a tiny relative error.
        let q8 = [127.0f32, -5.0, 3.0, 0.0, 64.0, -127.0, 1.0, 2.0];
        let w: Vec<f32> = (0..4 * 8).map(|i| q8[(i + i / 8) % 8] * 0.5).collect();
        let q = reference::quantize(&w, &[4, 8], QuantScheme::default()).unwrap();
        let (rel, _) = output_error(&q, &w, 3, 7).unwrap();
        assert!(rel < 1e-6, "{rel}");
    }

    #[test]
    fn output_error_checks_rows_times_in_features() {
        let w = [1.0f32; 2 * 8];
        let q = reference::quantize(&w, &[2, 8], QuantScheme::default()).unwrap();
        let rows = usize::MAX / 4;
        let e = output_error(&q, &w, rows, 7).unwrap_err();
        assert!(matches!(e, Error::TooLarge { size: u64::MAX, limit, .. } if limit == usize::MAX as u64), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!(
                "the output-error evaluation ({rows} rows of a [2, 8] layer) is too large: {} exceeds the limit {}",
                u64::MAX,
                usize::MAX
            )
        );
    }
}
