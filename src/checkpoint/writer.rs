//! Writing a checkpoint's files so that equal inputs give byte-identical files: safetensors
//! files with a sorted header, streamed (the header first, from the tensors' dtypes and shapes;
//! then each tensor's bytes at its offset, from any thread), and JSON files pretty-printed.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Map, Value, json};

use super::TensorDtype;
use crate::{Error, Result};

/// Headers above this are refused, as the safetensors crate refuses to write them.
const MAX_HEADER: usize = 100_000_000;

/// Bytes written between background syncs ([`SafetensorsWriter::sync_due`]).
const SYNC_EVERY: usize = 64 << 20;

/// A tensor of a file to write, without its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TensorSpec {
    pub name: String,
    pub dtype: TensorDtype,
    pub shape: Vec<usize>,
}

impl TensorSpec {
    /// Bytes of data, or `None` when that overflows (a zero-size tensor has none, whatever its
    /// other dimensions).
    fn nbytes(&self) -> Option<usize> {
        if self.shape.contains(&0) {
            return Some(0);
        }
        let bits = self.shape.iter().try_fold(self.dtype.bitsize(), |n, &d| n.checked_mul(d))?;
        Some(bits.div_ceil(8))
    }
}

/// Where a tensor's bytes go in the file, and how many were written.
#[derive(Debug)]
struct Slot {
    /// Offset in the file.
    start: u64,
    len: usize,
    written: AtomicUsize,
}

/// A safetensors file being written: the header is written when it is created, each tensor's
/// bytes then go to their offset ([`SafetensorsWriter::write`], callable from several threads
/// at once), and [`SafetensorsWriter::finish`] checks every byte was written and syncs the file.
/// Meanwhile [`SafetensorsWriter::sync_due`] says when enough was written that syncing it in
/// the background ([`SafetensorsWriter::sync`]) would spare the final sync a long wait.
///
/// The file is what the `safetensors` crate writes for the same tensors, with every JSON object
/// of its header sorted by key (`__metadata__` included) and the same length, so that equal
/// inputs give byte-identical files: tensors in data order by descending dtype, then by name;
/// the header padded with spaces to a multiple of 8 bytes.
#[derive(Debug)]
pub(crate) struct SafetensorsWriter {
    file: File,
    path: PathBuf,
    slots: HashMap<String, Slot>,
    /// Bytes of data in all, written so far, and written when a sync was last due.
    data_len: usize,
    written: AtomicUsize,
    sync_mark: AtomicUsize,
}

/// A safetensors header and where it puts each tensor.
struct Header {
    /// The header, padded (the file's bytes 8 to the data).
    bytes: Vec<u8>,
    /// Each tensor's data range, relative to the end of the header, in the order given.
    ranges: Vec<(usize, usize)>,
}

/// The header of a safetensors file holding `tensors`.
fn header(tensors: &[TensorSpec], metadata: &HashMap<String, String>) -> std::result::Result<Header, String> {
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&tensors[a], &tensors[b]);
        b.dtype.cmp(&a.dtype).then_with(|| a.name.cmp(&b.name))
    });
    let mut ranges = vec![(0, 0); tensors.len()];
    let mut entries = Map::new();
    entries.insert("__metadata__".into(), json!(metadata));
    let mut end = 0usize;
    for i in order {
        let t = &tensors[i];
        let n =
            t.nbytes().ok_or_else(|| format!("tensor `{}` {:?} has more bytes than fit in memory", t.name, t.shape))?;
        let start = end;
        end = end.checked_add(n).ok_or("the tensors add up to more bytes than fit in memory")?;
        ranges[i] = (start, end);
        let info = json!({ "dtype": t.dtype, "shape": t.shape, "data_offsets": [start, end] });
        if entries.insert(t.name.clone(), info).is_some() || t.name == "__metadata__" {
            return Err(format!("tensor `{}` is listed twice", t.name));
        }
    }
    let mut v = Value::Object(entries);
    v.sort_all_objects();
    let mut bytes = serde_json::to_vec(&v).map_err(|e| e.to_string())?;
    bytes.resize(bytes.len().next_multiple_of(8), b' ');
    if bytes.len() > MAX_HEADER {
        return Err(format!("its header would be {} bytes, more than safetensors reads ({MAX_HEADER})", bytes.len()));
    }
    Ok(Header { bytes, ranges })
}

impl SafetensorsWriter {
    /// Creates the file `path` (which must not exist) for `tensors`, with `metadata` as its
    /// `__metadata__`, and writes its header.
    pub(crate) fn create(path: &Path, tensors: &[TensorSpec], metadata: &HashMap<String, String>) -> Result<Self> {
        let Header { bytes: head, ranges } = header(tensors, metadata)
            .map_err(|e| Error::Output(format!("could not write `{}`: {e}", path.display())))?;
        let io = |e| Error::io("writing", path, e);
        let file = fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(io)?;
        let data_start = 8 + head.len() as u64;
        let mut len = (head.len() as u64).to_le_bytes().to_vec();
        len.extend_from_slice(&head);
        write_at(&file, &len, 0).map_err(io)?;
        let data_len = ranges.iter().map(|r| r.1).max().unwrap_or(0);
        file.set_len(data_start + data_len as u64).map_err(io)?;
        let slots = tensors
            .iter()
            .zip(ranges)
            .map(|(t, (s, e))| {
                let slot = Slot { start: data_start + s as u64, len: e - s, written: AtomicUsize::new(0) };
                (t.name.clone(), slot)
            })
            .collect();
        let (written, sync_mark) = (AtomicUsize::new(0), AtomicUsize::new(0));
        Ok(Self { file, path: path.to_path_buf(), slots, data_len, written, sync_mark })
    }

    /// Bytes of tensor data the file holds.
    pub(crate) fn data_len(&self) -> usize {
        self.data_len
    }

    /// Writes `bytes` at offset `at` of tensor `name`'s data.
    pub(crate) fn write(&self, name: &str, at: usize, bytes: &[u8]) -> Result<()> {
        let slot = self.slots.get(name).filter(|s| at.checked_add(bytes.len()).is_some_and(|end| end <= s.len));
        let Some(slot) = slot else {
            return Err(Error::Output(format!(
                "writing {} bytes at {at} of tensor `{name}` of `{}`, which has no such bytes; this is a bug",
                bytes.len(),
                self.path.display()
            )));
        };
        write_at(&self.file, bytes, slot.start + at as u64).map_err(|e| Error::io("writing", &self.path, e))?;
        slot.written.fetch_add(bytes.len(), Ordering::Relaxed);
        self.written.fetch_add(bytes.len(), Ordering::Relaxed);
        Ok(())
    }

    /// Whether a background [`SafetensorsWriter::sync`] is due: true once for every
    /// [`SYNC_EVERY`] bytes written, and once when the data is complete.
    pub(crate) fn sync_due(&self) -> bool {
        let (written, mark) = (self.written.load(Ordering::Relaxed), self.sync_mark.load(Ordering::Relaxed));
        let due = written.saturating_sub(mark) >= SYNC_EVERY || (written == self.data_len && mark != written);
        due && self.sync_mark.compare_exchange(mark, written, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    /// Writes what was written so far to disk (its data, and the metadata needed to read it).
    pub(crate) fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io("writing", &self.path, e))
    }

    /// Checks that every tensor was written whole, and syncs the file to disk.
    pub(crate) fn finish(self) -> Result<()> {
        if let Some((name, s)) = self.slots.iter().find(|(_, s)| s.written.load(Ordering::Relaxed) != s.len) {
            return Err(Error::Output(format!(
                "{} of the {} bytes of tensor `{name}` were written to `{}`; this is a bug",
                s.written.load(Ordering::Relaxed),
                s.len,
                self.path.display()
            )));
        }
        self.file.sync_all().map_err(|e| Error::io("writing", &self.path, e))
    }
}

/// Writes all of `buf` at `offset` of `file`, without moving a shared cursor (several threads
/// write one file).
#[cfg(unix)]
fn write_at(file: &File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
}

#[cfg(windows)]
fn write_at(file: &File, mut buf: &[u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_write(buf, offset) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(not(any(unix, windows)))]
fn write_at(_: &File, _: &[u8], _: u64) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Writes `value` as pretty-printed JSON (2-space indent, trailing newline).
pub(crate) fn write_json(path: &Path, value: &Value) -> Result<()> {
    let mut s = serde_json::to_string_pretty(value).expect("a JSON value serializes");
    s.push('\n');
    fs::write(path, s).map_err(|e| Error::io("writing", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    /// What the writer replaced: the safetensors crate's file, its header then rewritten with
    /// every object's keys sorted (same length).
    fn oracle(tensors: &[(TensorSpec, Vec<u8>)], metadata: &HashMap<String, String>) -> Vec<u8> {
        let views =
            tensors.iter().map(|(t, d)| (t.name.as_str(), TensorView::new(t.dtype, t.shape.clone(), d).unwrap()));
        let mut file = safetensors::serialize(views, Some(metadata.clone())).unwrap();
        let n = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
        let mut v: Value = serde_json::from_slice(&file[8..8 + n]).unwrap();
        v.sort_all_objects();
        let mut canon = serde_json::to_vec(&v).unwrap();
        assert!(canon.len() <= n);
        canon.resize(n, b' ');
        file[8..8 + n].copy_from_slice(&canon);
        file
    }

    struct Scratch(PathBuf);
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn streamed_files_are_those_safetensors_writes_with_sorted_headers() {
        use TensorDtype::*;
        let dir = Scratch(std::env::temp_dir().join(format!("int8-wgpu-writer-{}", std::process::id())));
        fs::create_dir_all(&dir.0).unwrap();
        let shapes: &[&[usize]] = &[&[3, 5], &[7], &[0, 4], &[2, 2, 3], &[1], &[], &[1 << 62, 0]];
        let dtypes = [F32, BF16, F16, I32, I64, I8, U8, BOOL, F64];
        let names = ["b.weight", "a.bias", "layer.10.x", "layer.2.x", "é \"quoted\"\\", "z", "A", "_x"];
        for case in 0..40usize {
            let k = 1 + case % names.len();
            let unique: Vec<(TensorSpec, Vec<u8>)> = (0..k)
                .map(|i| {
                    let (dtype, shape) = (dtypes[(i * 7 + case) % dtypes.len()], shapes[(i + case * 3) % shapes.len()]);
                    let spec =
                        TensorSpec { name: names[(i + case) % names.len()].into(), dtype, shape: shape.to_vec() };
                    let n = spec.nbytes().unwrap();
                    (spec, (0..n).map(|b| (b * 31 + i + case) as u8).collect())
                })
                .collect();
            let metadata: HashMap<String, String> =
                (0..case % 4).map(|i| (format!("key{}", (i * 5 + case) % 7), format!("v{i}"))).collect();
            let path = dir.0.join(format!("{case}.safetensors"));
            let specs: Vec<TensorSpec> = unique.iter().map(|t| t.0.clone()).collect();
            let w = SafetensorsWriter::create(&path, &specs, &metadata).unwrap();
            assert!(!w.sync_due(), "nothing written");
            // Written in reverse, the largest in two parts.
            for (t, d) in unique.iter().rev() {
                let half = d.len() / 2;
                w.write(&t.name, half, &d[half..]).unwrap();
                w.write(&t.name, 0, &d[..half]).unwrap();
            }
            // Complete (and far below SYNC_EVERY): due once, if there was anything to write.
            assert_eq!(w.sync_due(), w.data_len() > 0, "case {case}");
            assert!(!w.sync_due());
            w.sync().unwrap();
            w.finish().unwrap();
            assert_eq!(fs::read(&path).unwrap(), oracle(&unique, &metadata), "case {case}");
        }
    }

    #[test]
    fn unwritten_bytes_and_writes_outside_a_tensor_are_errors() {
        let dir = Scratch(std::env::temp_dir().join(format!("int8-wgpu-writer-errors-{}", std::process::id())));
        fs::create_dir_all(&dir.0).unwrap();
        let path = dir.0.join("x.safetensors");
        let specs = [TensorSpec { name: "t".into(), dtype: TensorDtype::U8, shape: vec![4] }];
        let w = SafetensorsWriter::create(&path, &specs, &HashMap::new()).unwrap();
        let e = SafetensorsWriter::create(&path, &specs, &HashMap::new()).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "never replaces a file: {e:?}");
        for (name, at, len) in [("t", 3, 2), ("t", usize::MAX, 1), ("u", 0, 1)] {
            let e = w.write(name, at, &vec![0; len]).unwrap_err();
            assert!(e.to_string().contains("this is a bug"), "{e}");
        }
        w.write("t", 0, &[1, 2, 3]).unwrap();
        let e = w.finish().unwrap_err();
        assert!(e.to_string().contains("3 of the 4 bytes of tensor `t`"), "{e}");
        let twice = [specs[0].clone(), specs[0].clone()];
        let e = SafetensorsWriter::create(&dir.0.join("y.safetensors"), &twice, &HashMap::new()).unwrap_err();
        assert!(e.to_string().contains("listed twice"), "{e}");
    }
}
