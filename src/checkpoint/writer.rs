//! Writing a checkpoint's files so that equal inputs give byte-identical files: safetensors
//! files with a sorted header, JSON files pretty-printed.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

use super::TensorDtype;
use crate::{Error, Result};

/// A tensor to write: borrowed (copied unchanged) or owned (new).
#[derive(Clone, Debug)]
pub(crate) struct OutTensor<'a> {
    pub dtype: TensorDtype,
    pub shape: Vec<usize>,
    pub data: Cow<'a, [u8]>,
}

impl safetensors::View for OutTensor<'_> {
    fn dtype(&self) -> TensorDtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Writes tensors to a safetensors file, with a deterministic header.
///
/// The safetensors crate writes `__metadata__` in `HashMap` order, which differs between runs;
/// the header is rewritten in place with every JSON object's keys sorted (same content, same
/// length), so equal inputs give byte-identical files.
pub(crate) fn write_safetensors(
    path: &Path,
    tensors: Vec<(String, OutTensor<'_>)>,
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    safetensors::serialize_to_file(tensors, metadata, path).map_err(|e| match e {
        safetensors::SafeTensorError::IoError(io) => Error::io("writing", path, io),
        e => Error::Output(format!("could not write `{}`: {e}", path.display())),
    })?;
    let io = |e| Error::io("writing", path, e);
    let mut f = fs::OpenOptions::new().read(true).write(true).open(path).map_err(io)?;
    let mut n = [0u8; 8];
    f.read_exact(&mut n).map_err(io)?;
    let mut header = vec![0u8; u64::from_le_bytes(n) as usize];
    f.read_exact(&mut header).map_err(io)?;
    let mut v: Value = serde_json::from_slice(&header)
        .map_err(|e| Error::Output(format!("re-reading the header of `{}`: {e}", path.display())))?;
    v.sort_all_objects();
    let mut canon = serde_json::to_vec(&v).expect("a JSON value serializes");
    if canon.len() > header.len() {
        return Err(Error::Output(format!("sorted header of `{}` grew; this is a bug", path.display())));
    }
    canon.resize(header.len(), b' ');
    f.seek(SeekFrom::Start(8)).map_err(io)?;
    f.write_all(&canon).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Writes `value` as pretty-printed JSON (2-space indent, trailing newline).
pub(crate) fn write_json(path: &Path, value: &Value) -> Result<()> {
    let mut s = serde_json::to_string_pretty(value).expect("a JSON value serializes");
    s.push('\n');
    fs::write(path, s).map_err(|e| Error::io("writing", path, e))
}
