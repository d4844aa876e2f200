//! The GGUF container: header, metadata, tensor infos and the data section, checked against
//! the bytes there are (every count, length, dimension and offset with checked arithmetic).

use std::collections::HashMap;

use super::cursor::Cursor;
use super::types::GgmlType;
use super::value::Value;
use crate::{Error, Result};

/// Where a tensor lies in a GGUF file and what it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    name: String,
    dims: Vec<u64>,
    shape: Vec<usize>,
    ggml_type: GgmlType,
    offset: u64,
    nbytes: u64,
}

impl TensorInfo {
    /// The tensor's name (`blk.0.attn_q.weight`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The dimensions as the file stores them, innermost (contiguous) first: ggml's `ne`.
    pub fn dims(&self) -> &[u64] {
        &self.dims
    }

    /// The shape in this library's row-major order: [`dims`](Self::dims) reversed, so a
    /// linear layer's weight (`ne = [in, out]`) is `[out, in]`.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Its ggml type.
    pub fn ggml_type(&self) -> GgmlType {
        self.ggml_type
    }

    /// Where its data starts, in bytes from the start of the file.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The size of its data in bytes.
    pub fn nbytes(&self) -> u64 {
        self.nbytes
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// What a GGUF file's header says, checked against its length.
pub(super) struct Header {
    pub(super) version: u32,
    pub(super) alignment: u64,
    pub(super) data_offset: u64,
    pub(super) metadata: Vec<(String, Value)>,
    pub(super) keys: HashMap<String, usize>,
    pub(super) tensors: Vec<TensorInfo>,
    pub(super) names: HashMap<String, usize>,
}

/// The alignment of the data section and of each tensor when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`.
const MAX_DIMS: u32 = 4;
/// The fewest bytes a metadata entry (key length, value type, a one-byte value) and a tensor
/// info (name length, dimension count, one dimension, type, offset) take.
const MIN_ENTRY: usize = 8 + 4 + 1;
const MIN_TENSOR_INFO: usize = 8 + 4 + 8 + 4 + 8;

fn corrupt(msg: String) -> Error {
    Error::Corrupt(format!("GGUF: {msg}"))
}

pub(super) fn parse(bytes: &[u8]) -> Result<Header> {
    let mut c = Cursor::new(bytes);
    let magic = c.array::<4>(&|| "the magic `GGUF`".into())?;
    if &magic != b"GGUF" {
        return Err(corrupt(format!("not a GGUF file: it starts with {magic:02x?}, not `GGUF`")));
    }
    let version = c.u32(&|| "the version".into())?;
    match version {
        2 | 3 => {}
        v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
            return Err(Error::Unsupported("big-endian GGUF files are not supported".into()));
        }
        v => return Err(Error::Unsupported(format!("GGUF version {v} (versions 2 and 3 are read)"))),
    }
    let n_tensors = c.u64(&|| "the tensor count".into())?;
    let n_kv = c.u64(&|| "the metadata count".into())?;
    check_count(&c, n_kv, MIN_ENTRY, "metadata entries")?;
    let mut metadata = Vec::with_capacity(c.capacity_for(n_kv, MIN_ENTRY));
    let mut keys = HashMap::new();
    for i in 0..n_kv {
        let key = c.string(&|| format!("the key of metadata entry {i}"))?.to_string();
        let t = c.u32(&|| format!("the value type of metadata key `{key}`"))?;
        let value = Value::read(&mut c, t, &key)?;
        if keys.insert(key.clone(), metadata.len()).is_some() {
            return Err(corrupt(format!("metadata key `{key}` is given twice")));
        }
        metadata.push((key, value));
    }
    let alignment = match keys.get("general.alignment").map(|&i| &metadata[i].1) {
        None => DEFAULT_ALIGNMENT,
        Some(Value::U32(a)) if a.is_power_of_two() => u64::from(*a),
        Some(v) => return Err(corrupt(format!("`general.alignment` is {}, not a u32 power of two", v.brief()))),
    };
    check_count(&c, n_tensors, MIN_TENSOR_INFO, "tensor infos")?;
    let mut tensors = Vec::with_capacity(c.capacity_for(n_tensors, MIN_TENSOR_INFO));
    let mut names = HashMap::new();
    for i in 0..n_tensors {
        let t = tensor_info(&mut c, i)?;
        if names.insert(t.name.clone(), tensors.len()).is_some() {
            return Err(corrupt(format!("tensor `{}` is listed twice", t.name)));
        }
        tensors.push(t);
    }
    let data_offset = align_up(c.pos() as u64, alignment)
        .ok_or_else(|| corrupt(format!("the data section's start overflows with alignment {alignment}")))?;
    place_tensors(&mut tensors, data_offset, alignment, bytes.len() as u64)?;
    Ok(Header { version, alignment, data_offset, metadata, keys, tensors, names })
}

/// A count of items of at least `min` bytes each must fit in the bytes left.
fn check_count(c: &Cursor<'_>, n: u64, min: usize, what: &str) -> Result<()> {
    let fits = c.remaining() / min;
    if n > fits as u64 {
        return Err(corrupt(format!(
            "the header claims {n} {what}; the {} bytes left hold at most {fits}",
            c.remaining()
        )));
    }
    Ok(())
}

fn align_up(x: u64, alignment: u64) -> Option<u64> {
    x.checked_next_multiple_of(alignment)
}

fn tensor_info(c: &mut Cursor<'_>, i: u64) -> Result<TensorInfo> {
    let name = c.string(&|| format!("the name of tensor {i}"))?.to_string();
    let n_dims = c.u32(&|| format!("the dimension count of tensor `{name}`"))?;
    if !(1..=MAX_DIMS).contains(&n_dims) {
        return Err(corrupt(format!("tensor `{name}` has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for d in 0..n_dims {
        dims.push(c.u64(&|| format!("dimension {d} of tensor `{name}`"))?);
    }
    let id = c.u32(&|| format!("the type of tensor `{name}`"))?;
    let ggml_type = GgmlType::from_id(id).ok_or_else(|| {
        Error::Unsupported(format!("tensor `{name}` has ggml type {id}, which this library does not know"))
    })?;
    let offset = c.u64(&|| format!("the offset of tensor `{name}`"))?;
    if dims.contains(&0) {
        return Err(Error::Unsupported(format!("tensor `{name}` has a zero-size dimension: {dims:?}")));
    }
    let overflow = || corrupt(format!("tensor `{name}`'s size overflows: dimensions {dims:?} of {ggml_type}"));
    let numel = dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d)).ok_or_else(overflow)?;
    if dims[0] % ggml_type.block_size() != 0 {
        return Err(corrupt(format!(
            "tensor `{name}`'s innermost dimension {} is not a multiple of {ggml_type}'s block of {}",
            dims[0],
            ggml_type.block_size()
        )));
    }
    let nbytes = (numel / ggml_type.block_size()).checked_mul(ggml_type.type_size()).ok_or_else(overflow)?;
    // Elements, not only bytes, must be countable in usize (wasm32: 32 bits).
    if usize::try_from(numel).is_err() {
        return Err(Error::TooLarge {
            what: format!("tensor `{name}`'s element count"),
            size: numel,
            limit: usize::MAX as u64,
        });
    }
    let shape = dims.iter().rev().map(|&d| d as usize).collect();
    Ok(TensorInfo { name, dims, shape, ggml_type, offset, nbytes })
}

/// Makes the tensors' offsets absolute and checks them: aligned, inside the file, no overlap.
fn place_tensors(tensors: &mut [TensorInfo], data_offset: u64, alignment: u64, len: u64) -> Result<()> {
    if !tensors.is_empty() && data_offset > len {
        return Err(corrupt(format!(
            "truncated: the data section starts at byte {data_offset}, past the end ({len} bytes)"
        )));
    }
    for t in tensors.iter_mut() {
        if t.offset % alignment != 0 {
            return Err(corrupt(format!(
                "tensor `{}`'s offset {} is not a multiple of the alignment {alignment}",
                t.name, t.offset
            )));
        }
        let start = data_offset.checked_add(t.offset);
        match start.and_then(|s| s.checked_add(t.nbytes)) {
            Some(end) if end <= len => t.offset += data_offset,
            _ => {
                return Err(corrupt(format!(
                    "truncated: tensor `{}` ({} bytes at data offset {}) ends past the end of the file ({len} bytes)",
                    t.name, t.nbytes, t.offset
                )));
            }
        }
    }
    let mut order: Vec<&TensorInfo> = tensors.iter().collect();
    order.sort_by_key(|t| t.offset);
    for w in order.windows(2) {
        if w[0].offset + w[0].nbytes > w[1].offset {
            return Err(corrupt(format!("tensors `{}` and `{}` overlap", w[0].name, w[1].name)));
        }
    }
    Ok(())
}
