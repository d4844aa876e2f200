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
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::checkpoint::{
    self, CONFIG_FILE, Checkpoint, INDEX_FILE, METHOD_METADATA_KEY, MODEL_FILE, OutTensor, TensorInfo,
};
use crate::{DType, Element, Error, Gpu, QuantScheme, QuantizedTensor, Result, reference};

mod eval;
mod extra_files;
mod output;
mod report;
mod select;

pub use self::eval::random_activations;
use self::eval::{output_error, seed_of};
pub use self::output::remove_temp_folders;
pub use self::report::{LayerReport, QuantReport, describe_scheme, format_bytes};
pub use self::select::{DEFAULT_EXCLUDES, Plan, Skipped, glob_match};
pub use crate::scheme::Method;

/// The most activation rows [`Quantizer::eval_rows`] accepts. The evaluation costs
/// rows × out × in multiply-adds per layer, in f64, on one CPU core, and rows × in f32 values of
/// memory; 4096 rows of a 4096×4096 layer are already 69 G multiply-adds. A larger value is an
/// [`Error::TooLarge`] when the run starts.
pub const MAX_EVAL_ROWS: usize = 4096;

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
