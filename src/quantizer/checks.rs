//! The checks a run makes before any work (the settings, the paths, the input, the scheme
//! against the planned layers), so that a refused run costs no pass over the model and leaves
//! nothing behind. The policy is in the [`quantizer`](super) module docs.

use std::fs;
use std::path::{Path, PathBuf};

use super::report::describe_scheme;
use super::{MAX_EVAL_ROWS, Quantizer, Selection};
use crate::activation::MAX_INT8_DOT_LEN;
use crate::checkpoint::{self, Checkpoint};
use crate::{Error, Result};

impl Quantizer {
    /// The settings that need no file: `eval_rows` within [`MAX_EVAL_ROWS`]; the outlier
    /// threshold; for the methods with int8 activations, a scheme they can run.
    pub(super) fn check_settings(&self) -> Result<()> {
        if self.activation_quant()?.is_some() && !self.scheme.takes_a8() {
            return Err(Error::Scheme(format!(
                "{} quantizes activations per token, which needs symmetric weights with one scale per output \
                 row (the default) or per tensor, not {}; drop the scheme options (--scheme, --granularity, \
                 --group-size), or use w8a16 for this scheme",
                self.method,
                describe_scheme(self.scheme)
            )));
        }
        if self.eval_rows > MAX_EVAL_ROWS {
            return Err(Error::TooLarge {
                what: "eval_rows (activation rows per layer for the output error)".into(),
                size: u64::try_from(self.eval_rows).unwrap_or(u64::MAX),
                limit: MAX_EVAL_ROWS as u64,
            });
        }
        Ok(())
    }

    /// The output must not be the input, inside it, or hold it; it may exist only with `overwrite`.
    pub(super) fn check_paths(&self, ckpt: &Checkpoint) -> Result<()> {
        let input = fs::canonicalize(ckpt.path()).map_err(|e| Error::io("opening checkpoint", ckpt.path(), e))?;
        let output = absolute(&self.output)?;
        if output.starts_with(&input) {
            return Err(Error::Output(format!(
                "output `{}` would overwrite or be inside the input `{}`; choose a separate output folder",
                self.output.display(),
                self.input.display()
            )));
        }
        if input.starts_with(&output) {
            return Err(Error::Output(format!(
                "the output `{}` holds the input `{}`; choose a separate output folder",
                self.output.display(),
                self.input.display()
            )));
        }
        // Not following a link: a link at the output path is there, even one that leads nowhere.
        let Ok(meta) = fs::symlink_metadata(&self.output) else { return Ok(()) };
        if meta.is_symlink() {
            // With `overwrite`, the link itself is replaced, never what it leads to.
            if self.overwrite {
                return Ok(());
            }
            let target = fs::read_link(&self.output).unwrap_or_default();
            let kind = match fs::metadata(&self.output) {
                Ok(_) => "a symbolic link",
                Err(e) if is_loop(&e) => "a symbolic link that loops",
                Err(_) => "a dangling symbolic link",
            };
            return Err(Error::Output(format!(
                "output `{}` already exists: {kind} to `{}`; remove it, choose another folder, or \
                 allow overwriting (--force), which replaces the link (not what it leads to)",
                self.output.display(),
                target.display()
            )));
        }
        if !self.overwrite {
            return Err(Error::Output(format!(
                "output `{}` already exists; remove it, choose another folder, or allow overwriting (--force)",
                self.output.display()
            )));
        }
        if !meta.is_dir() {
            return Err(Error::Output(format!("output `{}` exists and is not a folder", self.output.display())));
        }
        check_replaceable(&self.output)
    }

    /// Refuses inputs that are already quantized or whose names would collide with ours.
    pub(super) fn check_input(&self, ckpt: &Checkpoint) -> Result<()> {
        if let Some(why) = already_quantized(ckpt) {
            return Err(Error::Unsupported(format!(
                "`{}` is already quantized ({why}); quantize the float checkpoint",
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
                    return Err(Error::Unsupported(format!(
                        "tensor name collision: quantizing `{name}` would write `{other}`, which the input already \
                         holds; rename or exclude it"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The scheme has a compressed-tensors layout, a group size divides every planned layer,
    /// and int8 activations' sums fit an `i32` ([`MAX_INT8_DOT_LEN`] inputs).
    pub(super) fn check_scheme(&self, ckpt: &Checkpoint, selection: &Selection) -> Result<()> {
        checkpoint::quantization_config(self.scheme, &[], self.method)?;
        if self.method.activation_quant().is_some() {
            let long = selection.targets.iter().find(|t| ckpt.info(t).is_some_and(|i| i.shape[1] > MAX_INT8_DOT_LEN));
            if let Some(t) = long {
                return Err(Error::Scheme(format!(
                    "`{t}` has {} inputs; {} sums at most {MAX_INT8_DOT_LEN} int8 products in i32: exclude it or use \
                     w8a16",
                    ckpt.info(t).map_or(0, |i| i.shape[1]),
                    self.method
                )));
            }
        }
        if let crate::Granularity::PerGroup { size } = self.scheme.granularity {
            let bad: Vec<&String> = selection
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
        Ok(())
    }
}

/// Why a checkpoint is already quantized, `None` for a float one: a `quantization_config` in its
/// config.json, or a quantized layer ([`Checkpoint::quantized_layers`]). `quantize` refuses such
/// an input, and `inspect` calls it quantized.
pub(super) fn already_quantized(ckpt: &Checkpoint) -> Option<String> {
    if ckpt.quantization_config().is_some() {
        return Some("its config.json has a quantization_config".into());
    }
    ckpt.quantized_layers().first().map(|p| format!("it holds the quantized layer `{p}`"))
}

/// `p` made absolute with its links resolved, also when it does not exist yet (the output).
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

/// Whether following a link failed because links lead back to themselves (ELOOP).
#[cfg_attr(not(unix), allow(unused_variables))]
fn is_loop(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    return e.raw_os_error() == Some(libc::ELOOP);
    #[cfg(not(unix))]
    return false;
}

/// File extensions of what a checkpoint folder holds: weights (this crate's and other formats),
/// configs, tokenizers and their vocabularies, chat templates, model cards, remote code.
const CHECKPOINT_EXTENSIONS: &[&str] = &[
    "safetensors",
    "json",
    "txt",
    "model",
    "md",
    "jinja",
    "tiktoken",
    "py",
    "bin",
    "pt",
    "pth",
    "h5",
    "msgpack",
    "ot",
    "onnx",
    "ckpt",
    "gguf",
];

/// Refuses to let `--force` replace a folder that does not look like a checkpoint: a non-empty
/// folder must hold weights (a `*.safetensors` file) at its top, and every entry, in it and in
/// its (non-hidden) sub-folders such as `1_Pooling`, must be a file a checkpoint folder holds
/// ([`CHECKPOINT_EXTENSIONS`], `.gitattributes`, `LICENSE`) or such a folder; a thesis, notes,
/// a JSON data set or a Python project put at the output path by mistake is never deleted.
pub(super) fn check_replaceable(output: &Path) -> Result<()> {
    let listing = |e| Error::io("listing", output, e);
    if let Some(entry) = foreign_entry(output, Path::new("")).map_err(listing)? {
        return Err(Error::Output(format!(
            "`{}` holds `{}`, which is not part of a checkpoint; --force replaces only a checkpoint folder: remove \
             it yourself or choose another output",
            output.display(),
            entry.display()
        )));
    }
    let mut top = fs::read_dir(output).map_err(listing)?.peekable();
    let empty = top.peek().is_none();
    let weights = top.collect::<std::io::Result<Vec<_>>>().map_err(listing)?.iter().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy().to_ascii_lowercase();
        name.ends_with(".safetensors") && e.file_type().is_ok_and(|t| t.is_file())
    });
    if !empty && !weights {
        return Err(Error::Output(format!(
            "`{}` holds no `*.safetensors` file, so it is not a checkpoint folder; --force replaces only a \
             checkpoint folder: remove it yourself or choose another output",
            output.display()
        )));
    }
    Ok(())
}

/// The first entry of `root/rel` (sorted, depth first) that no checkpoint folder holds.
fn foreign_entry(root: &Path, rel: &Path) -> std::io::Result<Option<PathBuf>> {
    let mut entries = fs::read_dir(root.join(rel))?.collect::<std::io::Result<Vec<_>>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let rel = rel.join(&name);
        let name = name.to_string_lossy();
        // Not following links: a link is removed itself, never what it leads to.
        if entry.file_type()?.is_dir() {
            if name.starts_with('.') {
                return Ok(Some(rel));
            }
            if let Some(found) = foreign_entry(root, &rel)? {
                return Ok(Some(found));
            }
            continue;
        }
        let ext = Path::new(&*name).extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
        let known = ext.is_some_and(|e| CHECKPOINT_EXTENSIONS.contains(&e.as_str()))
            || name == ".gitattributes"
            || name.starts_with("LICENSE");
        if !known {
            return Ok(Some(rel));
        }
    }
    Ok(None)
}
