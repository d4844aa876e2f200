//! The input folder's other files (tokenizer, configs, sub-folders such as `1_Pooling`), copied
//! into the output without ever reading anything outside the input folder. The policy is in the
//! [`quantizer`](super) module docs ("Other files").

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::checkpoint::{CONFIG_FILE, INDEX_FILE};
use crate::regular_file::file_kind;
use crate::{Error, Result};

/// File extensions of weight formats that are not copied into the output (they would carry the
/// float weights along).
const WEIGHT_EXTENSIONS: &[&str] = &["safetensors", "bin", "pt", "pth", "h5", "msgpack", "ot", "onnx", "ckpt", "gguf"];

/// Copies the other files of the checkpoint folder `input` into `dest`: everything except
/// safetensors files, the index, `config.json`, other weight formats and hidden folders (`.git`,
/// `.cache`). What is left out for being outside the folder or not a regular file is a warning.
pub(super) fn copy_extra_files(
    input: &Path,
    dest: &Path,
    copied: &mut Vec<PathBuf>,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let root = fs::canonicalize(input).map_err(|e| Error::io("resolving", input, e))?;
    let allowed = allowed_roots(&root);
    copy_folder(&root, Path::new(""), dest, &allowed, copied, warnings)
}

/// Where a symlinked file may resolve to: the input folder and, when the input is a Hugging Face
/// hub cache snapshot (`models--*/snapshots/<rev>`), that model's `blobs/`, which holds the
/// files every snapshot's entries link to.
fn allowed_roots(root: &Path) -> Vec<PathBuf> {
    let mut roots = vec![root.to_path_buf()];
    let model = root.parent().filter(|p| p.file_name() == Some("snapshots".as_ref())).and_then(Path::parent);
    let model = model.filter(|m| m.file_name().is_some_and(|n| n.to_string_lossy().starts_with("models--")));
    roots.extend(model.and_then(|m| fs::canonicalize(m.join("blobs")).ok()));
    roots
}

fn copy_folder(
    root: &Path,
    rel: &Path,
    dest: &Path,
    allowed: &[PathBuf],
    copied: &mut Vec<PathBuf>,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let dir = root.join(rel);
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .map_err(|e| Error::io("listing", &dir, e))?
        .collect::<io::Result<Vec<_>>>()
        .map_err(|e| Error::io("listing", &dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let rel_path = rel.join(&name);
        let src = entry.path();
        // Not following links: a linked folder must not be entered, a linked file is vetted.
        let Ok(meta) = fs::symlink_metadata(&src) else { continue }; // gone since the listing
        let hidden = name.to_string_lossy().starts_with('.');
        if meta.is_dir() {
            if hidden {
                continue;
            }
            let d = dest.join(&rel_path);
            // Not create_dir_all: it would recreate a temporary folder an interrupt has removed.
            fs::create_dir(&d).map_err(|e| Error::io("creating folder", &d, e))?;
            copy_folder(root, &rel_path, dest, allowed, copied, warnings)?;
            continue;
        }
        if hidden && meta.is_symlink() && fs::metadata(&src).is_ok_and(|m| m.is_dir()) {
            continue; // a hidden folder, if through a link: skipped like one
        }
        if rel.as_os_str().is_empty() && (name == INDEX_FILE || name == CONFIG_FILE) {
            continue;
        }
        let ext = Path::new(&name).extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
        if ext.as_deref().is_some_and(|e| WEIGHT_EXTENSIONS.contains(&e)) {
            if ext.as_deref() != Some("safetensors") || !rel.as_os_str().is_empty() {
                warnings.push(format!("not copied: `{}` (another weight format)", rel_path.display()));
            }
            continue;
        }
        let refused = match source_file(&src, &meta, allowed) {
            Ok(from) => copy_file(&from, &dest.join(&rel_path))?,
            Err(why) => Some(why),
        };
        match refused {
            None => copied.push(rel_path),
            Some(why) => warnings.push(format!("not copied: `{}` ({why})", rel_path.display())),
        }
    }
    Ok(())
}

/// The file to read for the entry `src` (whose own metadata is `meta`), or why it is not copied:
/// a symbolic link is read through only when it resolves to a regular file in `allowed`.
fn source_file(src: &Path, meta: &fs::Metadata, allowed: &[PathBuf]) -> std::result::Result<PathBuf, String> {
    if !meta.is_symlink() {
        return if meta.is_file() { Ok(src.to_path_buf()) } else { Err(not_regular(meta)) };
    }
    let Ok(target) = fs::canonicalize(src) else { return Err("a broken symbolic link".into()) };
    let Ok(target_meta) = fs::metadata(&target) else { return Err("a broken symbolic link".into()) };
    if target_meta.is_dir() {
        return Err("a symbolic link to a folder; linked folders are never followed".into());
    }
    if !allowed.iter().any(|root| target.starts_with(root)) {
        return Err(format!("a symbolic link to `{}`, outside the input folder", target.display()));
    }
    if !target_meta.is_file() {
        return Err(not_regular(&target_meta));
    }
    Ok(target)
}

/// Copies the regular file `from` to the new file `to`, or says why not. `from` is opened without
/// following a link and without blocking, then checked again: what was vetted may have been
/// swapped since for a link (the open fails) or a FIFO (which would block a plain open forever).
fn copy_file(from: &Path, to: &Path) -> Result<Option<String>> {
    let mut src = open_no_follow(from).map_err(|e| Error::io("copying", from, e))?;
    let meta = src.metadata().map_err(|e| Error::io("copying", from, e))?;
    if !meta.is_file() {
        return Ok(Some(not_regular(&meta)));
    }
    let mut out =
        fs::OpenOptions::new().write(true).create_new(true).open(to).map_err(|e| Error::io("writing", to, e))?;
    io::copy(&mut src, &mut out).map_err(|e| Error::io("copying", from, e))?;
    // As fs::copy does.
    out.set_permissions(meta.permissions()).map_err(|e| Error::io("writing", to, e))?;
    Ok(None)
}

fn open_no_follow(path: &Path) -> io::Result<File> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    options.open(path)
}

/// `a FIFO, not a regular file`, and so on for sockets, devices, folders.
fn not_regular(meta: &fs::Metadata) -> String {
    format!("{}, not a regular file", file_kind(meta.file_type()))
}
