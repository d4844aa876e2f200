//! Model-level quantization: every linear layer of a safetensors checkpoint to int8, written in
//! the compressed-tensors `pack-quantized` layout, with a per-layer report.
//!
//! ```no_run
//! use int8_wgpu::quantizer::Quantizer;
//! use int8_wgpu::{Granularity, Method, QuantScheme};
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
//! characters, dots included; `?` one character; case-sensitive). A user pattern that
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
//! runs f32 activations; the others run the checkpoint's own dtype when it is f16 or bf16, and
//! bf16 for f32 checkpoints (bf16 keeps f32's range, so activations cannot overflow as in f16).
//!
//! `w8a8` and `llm-int8` also quantize the activations to int8 at run time, per token; `llm-int8`
//! keeps the feature columns with an `|x| >=` [`Quantizer::outlier_threshold`] in float, and
//! records the threshold in the metadata (`int8_wgpu.outlier_threshold`). Both need symmetric
//! weights with one scale per output row (the default scheme) or per tensor: another scheme is
//! an [`Error::Scheme`] before any work. `w8a8` is written as compressed-tensors `int-quantized`
//! with llmcompressor's W8A8 `input_activations`, `llm-int8` as the weight-only `pack-quantized`
//! config (other loaders run it with float activations; see the README, "What loads where").
//!
//! # Speed and memory
//!
//! The input is read one tensor at a time (positioned reads into a buffer each worker reuses,
//! never a memory map, so an input that another program truncates is an error, not a crash);
//! each output file's header is written first (the selection fixes every tensor's dtype and shape)
//! and each tensor as soon as it is ready, so a run holds the few layers it is working on, not a
//! file. Worker threads
//! ([`Quantizer::threads`], default the available parallelism) take the layers in order, several
//! at once, each in one pass over its rows: quantization on the CPU backend, the stored form, the
//! weight error and the output error on up to 64 evaluation rows. With a GPU, the calling thread
//! quantizes the next layers on it while the workers finish the earlier ones. The files and the
//! report are the same whatever the backend and the number of threads.
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
//! - A symbolic link at the output path is an existing output, also one that leads nowhere: an
//!   error before any work without `overwrite`; with it, the link itself is replaced, never what
//!   it leads to.
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
//!   by the next run into the same parent folder: those that hold the lock file each run writes
//!   into its folder (`.int8-wgpu-lock`, removed just before the move into place) and whose
//!   process is gone (or whose pid is this process's own, reused, and not one of its runs), unless
//!   a live run holds the lock on that file (a run in another pid namespace or on another
//!   machine). A folder with the name but not the lock file (another program's, or an older
//!   version's) is left alone, as are `.int8-wgpu-old-*` folders. Elsewhere stale folders are left
//!   alone.
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

use std::fs;
use std::path::{Path, PathBuf};

use crate::checkpoint::Checkpoint;
use crate::{Error, Gpu, Method, QuantScheme, Result};

/// Checks before any work.
mod checks;
/// Writing the converted files into the temporary output folder.
mod convert;
/// The output error and the activations RNG.
mod eval;
/// Copying the input folder's other files.
mod extra_files;
/// What `int8-wgpu inspect` prints.
mod inspect;
/// The parallel job runner of a conversion.
mod jobs;
/// One pass over a layer's rows: ints, stored form, error metrics.
mod one_pass;
/// The one-pass quantizer's output error.
mod one_pass_eval;
/// The temporary output folder and its move into place.
mod output;
/// Renames that never replace, and exchanges.
mod rename;
/// What a run reports.
mod report;
/// Which tensors a run quantizes.
mod select;
/// One job of a conversion: a tensor copied, or a layer quantized and written.
mod tensor_job;

pub use self::eval::random_activations;
pub use self::inspect::Inspection;
pub use self::output::{Cleanup, remove_temp_folders};
pub use self::report::{LayerReport, QuantReport};
pub(crate) use self::select::Selection;
pub use self::select::{DEFAULT_EXCLUDES, Skipped};

/// The most activation rows [`Quantizer::eval_rows`] accepts. The evaluation costs
/// rows × out × in multiply-adds per layer in f32 and as many in f64, one layer per worker
/// thread, and rows × in f32 values of memory; 4096 rows of a 4096×4096 layer are already 69 G
/// multiply-adds. Up to 64 rows, it is done in the same pass over the weight as the
/// quantization; more take a second pass. A larger value is an [`Error::TooLarge`] when the run
/// starts.
pub const MAX_EVAL_ROWS: usize = 4096;

/// Where quantization runs ([`Quantizer::gpu`], [`Quantizer::cpu`]).
#[derive(Clone, Debug)]
pub(crate) enum Backend {
    /// On this GPU ([`Gpu::quantize`]).
    Gpu(Gpu),
    /// On the CPU reference ([`reference::quantize`](crate::reference::quantize)). Gives
    /// byte-identical files.
    Cpu,
}

impl Backend {
    /// What the report says quantization ran on.
    fn describe(&self) -> String {
        match self {
            Backend::Gpu(g) => g.describe(),
            Backend::Cpu => "CPU reference".to_string(),
        }
    }
}

/// One step of a running quantization, passed to the progress callback.
#[derive(Clone, Copy, Debug)]
pub struct Progress<'a> {
    /// Layers started before this one (several layers are worked on at once, so some of them
    /// may not be finished); `total` in the final call, which comes once every layer is.
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
    outlier_threshold: Option<f32>,
    scheme: QuantScheme,
    include: Vec<String>,
    exclude: Vec<String>,
    default_excludes: bool,
    backend: Option<Backend>,
    eval_rows: usize,
    overwrite: bool,
    threads: Option<usize>,
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
            outlier_threshold: None,
            scheme: QuantScheme::default(),
            include: Vec::new(),
            exclude: Vec::new(),
            default_excludes: true,
            backend: None,
            eval_rows: 8,
            overwrite: false,
            threads: None,
        }
    }

    /// Sets the method (recorded in the output; fixes the activation dtype at load).
    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// Sets the LLM.int8() outlier threshold of [`Method::LlmInt8`] (default
    /// [`ActivationQuant::DEFAULT_THRESHOLD`](crate::ActivationQuant::DEFAULT_THRESHOLD), 6.0):
    /// feature columns with any `|x| >= threshold` run in float. Checked when the run starts: it
    /// must be finite and above 0, and the method `llm-int8` (an [`Error::InvalidOption`] otherwise).
    pub fn outlier_threshold(mut self, threshold: f32) -> Self {
        self.outlier_threshold = Some(threshold);
        self
    }

    /// How the output's layers quantize their activations: `None` for the weight-only methods,
    /// per token for `w8a8`, LLM.int8() at the threshold set for `llm-int8`. Errors: a threshold
    /// that [`ActivationQuant::llm_int8`](crate::ActivationQuant::llm_int8) refuses, or one set
    /// for another method.
    pub fn activation_quant(&self) -> Result<Option<crate::ActivationQuant>> {
        match (self.method, self.outlier_threshold) {
            (Method::LlmInt8, Some(t)) => crate::ActivationQuant::llm_int8(t).map(Some),
            (m, Some(t)) => Err(Error::InvalidOption(format!(
                "an outlier threshold ({t}) applies to the llm-int8 method only, not {m}"
            ))),
            (m, None) => Ok(m.activation_quant()),
        }
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

    /// Activation rows for each layer's output-error evaluation (0 skips it; default 8; at most
    /// [`MAX_EVAL_ROWS`], checked when the run starts).
    pub fn eval_rows(mut self, rows: usize) -> Self {
        self.eval_rows = rows;
        self
    }

    /// Worker threads for the work on the CPU: quantization with [`Quantizer::cpu`], and with
    /// either backend the stored form and the error metrics, several layers at once (default:
    /// the available parallelism; 0 counts as 1). The files do not depend on it.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = Some(n);
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
        // Every check comes before any work: the settings need no file, the others only headers,
        // so a refused run costs no pass over the model and leaves nothing behind.
        self.check_settings()?;
        let ckpt = Checkpoint::open(&self.input)?;
        self.check_paths(&ckpt)?;
        self.check_input(&ckpt)?;
        let selection = self.select(&ckpt)?;
        for w in &selection.warnings {
            log::warn!("{w}");
        }
        self.check_scheme(&ckpt, &selection)?;
        let backend = self.open_backend()?;

        let (tmp, stale_warnings) = self.start_output()?;
        let written = self.write_tensors(&ckpt, &selection, &backend, &tmp, &mut progress)?;
        self.write_json_files(&ckpt, &selection, &tmp, &written)?;
        let mut warnings = selection.warnings;
        warnings.extend(stale_warnings);
        let mut copied_files = Vec::new();
        if let Some(dir) = ckpt.folder() {
            extra_files::copy_extra_files(dir, tmp.path(), &mut copied_files, &mut warnings)?;
        }
        warnings.extend(output::commit(tmp, &self.output, self.overwrite)?);

        Ok(QuantReport {
            input: self.input.clone(),
            output: self.output.clone(),
            method: self.method,
            scheme: self.scheme,
            backend: backend.describe(),
            layers: written.layers,
            skipped: selection.skipped,
            warnings,
            copied_files,
            total_before: ckpt.nbytes(),
            total_after: written.total_after,
        })
    }

    /// The backend set, or a GPU opened with [`Gpu::new`].
    fn open_backend(&self) -> Result<Backend> {
        Ok(match &self.backend {
            Some(b) => b.clone(),
            None => Backend::Gpu(Gpu::new()?),
        })
    }

    /// Creates the run's temporary folder beside the output (creating the output's parent), after
    /// removing those that killed runs left there; returns it with a warning for each of those
    /// that could not be removed.
    fn start_output(&self) -> Result<(output::TmpDir, Vec<String>)> {
        if self.output.file_name().is_none() {
            return Err(Error::Output(format!("output path `{}` has no folder name", self.output.display())));
        }
        let parent = self.output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        fs::create_dir_all(parent).map_err(|e| Error::io("creating folder", parent, e))?;
        // Absolute: the registered temporary folder must stay valid if the process changes directory.
        let parent = std::path::absolute(parent).map_err(|e| Error::io("resolving", parent, e))?;
        let stale_warnings = output::remove_stale(&parent);
        Ok((output::TmpDir::create(&parent)?, stale_warnings))
    }
}
