//! The safetensors container, read: one file's header (on disk or in memory) read and checked
//! against the file's length (offsets, sizes, dtypes) without reading the data; the container's
//! dtypes and ours. Where the data is read from is `source.rs`'s job, writing `writer.rs`'s.

use std::collections::HashMap;
use std::io::Read;
use std::ops::Range;
use std::path::Path;

use crate::{DType, Error, Result};

/// The element type of a stored tensor: the `safetensors` crate's own, re-exported so that
/// [`TensorInfo::dtype`] can be named without depending on that crate at a matching version.
pub use ::safetensors::Dtype as TensorDtype;

/// Header sizes above this are refused (the safetensors crate's own limit).
const MAX_HEADER: u64 = 100_000_000;

/// One tensor of a checkpoint: its dtype, shape and where its bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Element type as stored.
    pub dtype: TensorDtype,
    /// Shape as stored.
    pub shape: Vec<usize>,
    /// Index of the file (see [`Checkpoint::files`](super::Checkpoint::files)) that holds it.
    pub file: usize,
    /// Byte range inside that file.
    pub(super) range: Range<usize>,
}

impl TensorInfo {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes of data.
    pub fn nbytes(&self) -> usize {
        self.range.len()
    }

    /// The float dtype this crate computes with, for F32 / F16 / BF16 tensors.
    pub fn float_dtype(&self) -> Option<DType> {
        to_dtype(self.dtype)
    }
}

/// The [`DType`] of a safetensors float dtype (F32, F16, BF16).
pub(crate) fn to_dtype(d: TensorDtype) -> Option<DType> {
    match d {
        TensorDtype::F32 => Some(DType::F32),
        TensorDtype::F16 => Some(DType::F16),
        TensorDtype::BF16 => Some(DType::BF16),
        _ => None,
    }
}

/// The safetensors dtype of a [`DType`].
pub(crate) fn to_tensor_dtype(d: DType) -> TensorDtype {
    match d {
        DType::F32 => TensorDtype::F32,
        DType::F16 => TensorDtype::F16,
        DType::BF16 => TensorDtype::BF16,
    }
}

/// Converts F32 / F16 / BF16 little-endian bytes to f32 (exactly); `None` for other dtypes.
pub(crate) fn floats_to_f32(dtype: TensorDtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        TensorDtype::F32 => bytemuck::pod_collect_to_vec(bytes),
        TensorDtype::F16 => {
            bytemuck::pod_collect_to_vec::<u8, half::f16>(bytes).into_iter().map(half::f16::to_f32).collect()
        }
        TensorDtype::BF16 => {
            bytemuck::pod_collect_to_vec::<u8, half::bf16>(bytes).into_iter().map(half::bf16::to_f32).collect()
        }
        _ => return None,
    })
}

/// f32 values as little-endian bytes of `dtype` (rounded to nearest even for 16-bit dtypes).
pub(crate) fn f32_to_bytes(values: &[f32], dtype: DType) -> Vec<u8> {
    match dtype {
        DType::F32 => bytemuck::cast_slice(values).to_vec(),
        DType::F16 => values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect(),
        DType::BF16 => values.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect(),
    }
}

/// What a safetensors header says, checked against the length of its file.
pub(super) struct Header {
    /// End of the header (8 + its length): the header bytes are `[8, header_end)`.
    #[cfg(feature = "files")]
    pub(super) header_end: usize,
    /// Hash of the header bytes, so a file opened again later is known to be the one whose
    /// offsets were validated without parsing its header again.
    #[cfg(feature = "files")]
    pub(super) header_hash: u64,
    pub(super) metadata: Option<HashMap<String, String>>,
    /// Name, dtype, shape and byte range in the file of each tensor, in data order.
    pub(super) tensors: Vec<(String, TensorDtype, Vec<usize>, Range<usize>)>,
}

impl Header {
    /// Its tensors' infos (taken out of it), as belonging to file number `file` of the checkpoint.
    pub(super) fn take_infos(&mut self, file: usize) -> Vec<(String, TensorInfo)> {
        std::mem::take(&mut self.tensors)
            .into_iter()
            .map(|(name, dtype, shape, range)| (name, TensorInfo { dtype, shape, file, range }))
            .collect()
    }
}

/// A safetensors header as written: `__metadata__` and the tensors in file order.
///
/// Read with our own visitor rather than `safetensors::tensor::Metadata`, whose `serde(flatten)`
/// buffers the whole header as generic content and then builds two hash maps of the names: on a
/// 1.2 M-tensor header that was most of the seconds `Checkpoint::open` took.
struct RawHeader {
    metadata: Option<HashMap<String, String>>,
    tensors: Vec<(String, safetensors::tensor::TensorInfo)>,
}

impl<'de> serde::Deserialize<'de> for RawHeader {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawHeader;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object of tensors")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<RawHeader, A::Error> {
                let mut h = RawHeader { metadata: None, tensors: Vec::new() };
                let mut seen_metadata = false;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "__metadata__" {
                        if seen_metadata {
                            return Err(serde::de::Error::duplicate_field("__metadata__"));
                        }
                        seen_metadata = true;
                        h.metadata = map.next_value()?;
                    } else {
                        let info = map.next_value()?;
                        h.tensors.push((key, info));
                    }
                }
                Ok(h)
            }
        }
        d.deserialize_map(V)
    }
}

/// Checks the tensors of a header the way `safetensors` does (contiguous data offsets from 0;
/// each tensor's byte count equal to its shape times its dtype, computed without overflow),
/// ordering them by offset; returns the data length the header declares.
fn check_tensors(tensors: &mut [(String, safetensors::tensor::TensorInfo)]) -> std::result::Result<usize, String> {
    // Names first: a key given twice with the same offsets would otherwise read as an overlap.
    tensors.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = tensors.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(format!("tensor `{}` appears twice", w[0].0));
    }
    tensors.sort_unstable_by_key(|(_, t)| t.data_offsets);
    let mut end = 0usize;
    for (name, t) in tensors.iter() {
        let (s, e) = t.data_offsets;
        if s != end || e < s {
            return Err(format!(
                "tensor `{name}` has data offsets [{s}, {e}] but the data before it ends at {end} (tensors must \
                 follow each other without gaps or overlaps)"
            ));
        }
        let bits =
            t.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).and_then(|n| n.checked_mul(t.dtype.bitsize()));
        let Some(bits) = bits else {
            return Err(format!("tensor `{name}` of shape {:?} has more elements than fit in memory", t.shape));
        };
        if bits % 8 != 0 {
            return Err(format!("tensor `{name}` ({} {:?}) is not a whole number of bytes", t.dtype, t.shape));
        }
        if bits / 8 != e - s {
            return Err(format!(
                "tensor `{name}` is {} {:?}, {} bytes, but its data offsets [{s}, {e}] span {} bytes",
                t.dtype,
                t.shape,
                bits / 8,
                e - s
            ));
        }
        end = e;
    }
    Ok(end)
}

/// Reads and checks the header of a safetensors file of `len` bytes from `r` (at the file's
/// start), without reading the data; `name` names the file in messages and `read_error` says
/// what a failed read means. The one parser of files and of bytes in memory.
pub(super) fn parse_header(
    name: &Path,
    len: u64,
    mut r: impl Read,
    read_error: impl Fn(std::io::Error) -> Error,
) -> Result<Header> {
    let truncated = |detail: String| {
        Error::Corrupt(format!("`{}` is truncated ({detail}); re-download or re-export it", name.display()))
    };
    if len < 8 {
        return Err(truncated(format!("{len} bytes, shorter than the 8-byte header length")));
    }
    let mut n = [0u8; 8];
    r.read_exact(&mut n).map_err(&read_error)?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER {
        return Err(Error::Corrupt(format!(
            "`{}` is not a safetensors file (header length {n} is implausible)",
            name.display()
        )));
    }
    // n <= MAX_HEADER, so this cannot overflow; every later size is compared with what is left
    // of the file instead of being added to something.
    let header_end = 8 + n;
    if header_end > len {
        return Err(truncated(format!("the header needs {n} bytes, the file has {}", len - 8)));
    }
    let available = len - header_end;
    let mut header = vec![0u8; n as usize];
    r.read_exact(&mut header).map_err(&read_error)?;
    let corrupt = |e: String| Error::Corrupt(format!("`{}` has a corrupt safetensors header: {e}", name.display()));
    let mut raw: RawHeader = serde_json::from_slice(&header).map_err(|e| corrupt(e.to_string()))?;
    let data_len = check_tensors(&mut raw.tensors).map_err(corrupt)?;
    // usize -> u64 cannot lose anything on the platforms Rust supports; saturate rather than assume.
    let data_len = u64::try_from(data_len).unwrap_or(u64::MAX);
    if data_len > available {
        return Err(truncated(format!(
            "the header declares {data_len} bytes of tensor data, the file has {available}"
        )));
    }
    if data_len < available {
        return Err(Error::Corrupt(format!(
            "`{}` has {} bytes after its last tensor; it is corrupt",
            name.display(),
            available - data_len
        )));
    }
    // Tensors' byte ranges are `usize` offsets, so the file must fit the address space; then
    // every range below (at most `len`) fits too.
    if usize::try_from(len).is_err() {
        return Err(Error::TooLarge { what: format!("`{}`", name.display()), size: len, limit: usize::MAX as u64 });
    }
    let base = header_end as usize;
    let tensors = raw
        .tensors
        .into_iter()
        .map(|(name, t)| {
            let (s, e) = t.data_offsets;
            (name, t.dtype, t.shape, base + s..base + e)
        })
        .collect();
    Ok(Header {
        #[cfg(feature = "files")]
        header_end: base,
        #[cfg(feature = "files")]
        header_hash: hash_header(&header),
        metadata: raw.metadata,
        tensors,
    })
}

/// The hash of header bytes that a file opened again is checked against.
#[cfg(feature = "files")]
pub(super) fn hash_header(header: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut hash = std::hash::DefaultHasher::new();
    hash.write(header);
    hash.finish()
}

#[cfg(test)]
mod tests {
    #[test]
    fn overflow_checks_are_on() {
        // Cargo.toml turns them on for this crate in release builds: the reader's arithmetic on
        // header values must be tested the way a downstream debug build runs it.
        let sum = std::panic::catch_unwind(|| std::hint::black_box(usize::MAX) + std::hint::black_box(1));
        assert!(sum.is_err(), "overflow checks are off: see [profile.release.package.int8-wgpu] in Cargo.toml");
    }
}
