//! The JSON files of a checkpoint as text: `config.json` (a JSON object) and the shard index,
//! of bounded size; the same checks whether the text was read from a file or given in memory.

use std::path::Path;

use serde_json::Value;

use crate::{Error, Result};

/// The largest `config.json` or shard index read (real ones are under 10 MB): a bigger file,
/// such as a sparse one, is refused rather than allocated for.
pub(super) const MAX_JSON_BYTES: u64 = 64 << 20;

/// The error of JSON text (of `name`) of `size` bytes, over [`MAX_JSON_BYTES`].
pub(super) fn too_big(name: &Path, size: u64) -> Error {
    Error::Corrupt(format!(
        "`{}` is {size} bytes, over the {MAX_JSON_BYTES}-byte limit for a JSON file of a checkpoint; a model \
         config or shard index is a few megabytes at most",
        name.display()
    ))
}

/// Parses JSON text (of `name`, for messages) of at most [`MAX_JSON_BYTES`].
pub(super) fn parse_json(text: &[u8], name: &Path) -> Result<Value> {
    if text.len() as u64 > MAX_JSON_BYTES {
        return Err(too_big(name, text.len() as u64));
    }
    serde_json::from_slice(text).map_err(|e| Error::Corrupt(format!("`{}` is not valid JSON: {e}", name.display())))
}

/// Parses the text of `config.json` (named `name`), which must be a JSON object (it is
/// extended with a `quantization_config`, and read as one by every loader).
pub(super) fn parse_config(text: &[u8], name: &Path) -> Result<Value> {
    let v = parse_json(text, name)?;
    let kind = match &v {
        Value::Object(_) => return Ok(v),
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
    };
    Err(Error::Corrupt(format!(
        "`{}` is not a JSON object (it holds {kind}); a model config is an object of settings",
        name.display()
    )))
}
