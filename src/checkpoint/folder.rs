//! What a checkpoint path names: a `.safetensors` file, or a folder with `model.safetensors` or
//! shards listed by `model.safetensors.index.json` (read, then checked against the shards), with
//! its `config.json`; and the safetensors files in the folder that the checkpoint does not read.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::config_json::{MAX_JSON_BYTES, parse_config, parse_json, too_big};
use super::natural_cmp;
use super::safetensors::TensorInfo;
use crate::regular_file::open_regular;
use crate::{Error, Result};

/// The file name of a single-file checkpoint in a folder.
pub(crate) const MODEL_FILE: &str = "model.safetensors";
/// The shard index of a sharded checkpoint.
pub(crate) const INDEX_FILE: &str = "model.safetensors.index.json";
/// The model configuration.
pub(crate) const CONFIG_FILE: &str = "config.json";

/// The files a checkpoint path names, and what its folder says about them.
pub(super) struct Located {
    /// The folder, when the path is one.
    pub(super) folder: Option<PathBuf>,
    /// The names in the folder of the safetensors files to read (sorted, unique); empty for a file.
    pub(super) names: Vec<String>,
    /// The safetensors files to read, in order: the folder's `names`, or the path itself.
    pub(super) file_paths: Vec<PathBuf>,
    /// The shard index's `weight_map`, when the checkpoint is sharded.
    pub(super) weight_map: Option<WeightMap>,
    /// `config.json`, when the folder has one.
    pub(super) config: Option<Value>,
}

/// Finds the files `path` names and reads the folder's small files: the shard index and
/// `config.json`. A folder with an index is sharded, whatever else it holds.
pub(super) fn locate(path: &Path) -> Result<Located> {
    let meta = fs::metadata(path).map_err(|e| Error::io("opening checkpoint", path, e))?;
    if !meta.is_dir() {
        let file_paths = vec![path.to_path_buf()];
        return Ok(Located { folder: None, names: vec![], file_paths, weight_map: None, config: None });
    }
    let index = path.join(INDEX_FILE);
    let (names, weight_map) = if present(&index) {
        let (names, map) = read_index(&index)?;
        (names, Some(map))
    } else if present(&path.join(MODEL_FILE)) {
        (vec![MODEL_FILE.to_string()], None)
    } else {
        return Err(Error::NotFound(format!(
            "folder `{}` has neither `{MODEL_FILE}` nor `{INDEX_FILE}`; pass a folder with one of them or a \
             .safetensors file",
            path.display()
        )));
    };
    let config_path = path.join(CONFIG_FILE);
    let config =
        if present(&config_path) { Some(parse_config(&read_text(&config_path)?, &config_path)?) } else { None };
    let file_paths = names.iter().map(|n| path.join(n)).collect();
    Ok(Located { folder: Some(path.to_path_buf()), names, file_paths, weight_map, config })
}

/// Whether something is at `path` (a dangling link counts: reading it then says what is wrong,
/// rather than the file being silently ignored).
fn present(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// Reads a JSON file of a checkpoint.
fn read_json(path: &Path) -> Result<Value> {
    parse_json(&read_text(path)?, path)
}

/// Reads the text of a JSON file of a checkpoint: a regular file, read up to one byte past
/// [`MAX_JSON_BYTES`] (which [`parse_json`] and [`parse_config`] refuse).
fn read_text(path: &Path) -> Result<Vec<u8>> {
    let (f, len) = open_regular(path)?;
    if len > MAX_JSON_BYTES {
        return Err(too_big(path, len));
    }
    // At most one byte past the limit, so a file that grows after the length was taken is
    // still refused without reading it all.
    let mut text = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    f.take(MAX_JSON_BYTES + 1).read_to_end(&mut text).map_err(|e| Error::io("reading", path, e))?;
    Ok(text)
}

/// An index's `weight_map`: (tensor, shard file) pairs sorted by tensor name.
pub(super) type WeightMap = Vec<(String, String)>;

/// Reads a shard index: the shard names (sorted, unique) and the weight map.
fn read_index(path: &Path) -> Result<(Vec<String>, WeightMap)> {
    let map = match read_json(path)? {
        Value::Object(mut index) => index.remove("weight_map"),
        _ => None,
    };
    let Some(Value::Object(map)) = map else {
        return Err(Error::Index(format!("`{}` has no `weight_map` object", path.display())));
    };
    if map.is_empty() {
        return Err(Error::Index(format!(
            "`{}` has an empty `weight_map`: it lists no tensor, so there is nothing to read",
            path.display()
        )));
    }
    let mut weight_map = Vec::with_capacity(map.len());
    for (k, f) in map {
        let Value::String(f) = f else {
            return Err(Error::Index(format!("`{}`: weight_map[`{k}`] is not a file name", path.display())));
        };
        if f.contains('/') || f.contains('\\') || f == ".." {
            return Err(Error::Index(format!("`{}`: shard name `{f}` is not a plain file name", path.display())));
        }
        weight_map.push((k, f));
    }
    weight_map.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut names: Vec<String> = weight_map.iter().map(|(_, f)| f.clone()).collect();
    names.sort_unstable();
    names.dedup();
    Ok((names, weight_map))
}

/// Checks that the index lists exactly the shards' tensors, each in its shard. Both lists are
/// sorted by name, so one merge pass does it.
pub(super) fn check_index(entries: &[(String, TensorInfo)], map: &WeightMap, names: &[String]) -> Result<()> {
    let not_listed = |name: &str| Error::Index(format!("tensor `{name}` is in a shard but not in `{INDEX_FILE}`"));
    let (mut e, mut m) = (entries.iter().peekable(), map.iter().peekable());
    loop {
        match (e.peek(), m.peek()) {
            (None, None) => return Ok(()),
            (Some((name, t)), Some((listed, file))) if name == listed => {
                if names[t.file] != *file {
                    return Err(Error::Index(format!(
                        "`{INDEX_FILE}` lists tensor `{name}` in `{file}` but it is in `{}`",
                        names[t.file]
                    )));
                }
                e.next();
                m.next();
            }
            (Some((name, _)), None) => return Err(not_listed(name)),
            (Some((name, _)), Some((listed, _))) if name < listed => return Err(not_listed(name)),
            (_, Some((name, file))) => {
                return Err(Error::Index(format!(
                    "`{INDEX_FILE}` lists tensor `{name}` in `{file}`, which does not hold it; the index and the \
                     shards do not match"
                )));
            }
        }
    }
}

/// The `.safetensors` files in `dir` (regular files, or links to them) other than `read`.
pub(super) fn unlisted_safetensors(dir: &Path, read: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))? {
        let entry = entry.map_err(|e| Error::io("listing", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let safetensors = Path::new(&name).extension().is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
        // fs::metadata only stats: it does not open, so a FIFO here cannot block.
        if safetensors && !read.contains(&name) && fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
            out.push(name);
        }
    }
    out.sort_by(|a, b| natural_cmp(a, b));
    Ok(out)
}
