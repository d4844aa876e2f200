//! Where one safetensors file of a checkpoint is read from: bytes in memory, or a file on disk,
//! opened again for its data, checked to be the one whose header was validated, and read with
//! positioned reads (`reader.rs`). Both are checked by the one header parser (`safetensors.rs`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::{Deref, Range};
use std::path::{Path, PathBuf};

#[cfg(feature = "files")]
use super::reader::{FileReader, ReadBuf, Stamp, changed_size};
use super::safetensors::{TensorInfo, parse_header};
use crate::{Error, Result};

/// One safetensors file of a checkpoint: its header, checked at open; where its data is.
pub(super) struct SafetensorsFile {
    /// Its path; for bytes in memory, the name messages give them.
    path: PathBuf,
    metadata: Option<HashMap<String, String>>,
    source: Source,
}

/// Where a file's data is read from.
enum Source {
    /// The whole file, in memory, as the application gave it.
    Bytes(Box<dyn AsRef<[u8]> + Send + Sync>),
    /// The file at the path, as its header was read.
    #[cfg(feature = "files")]
    File {
        /// Its size and last change when its header was read.
        stamp: Stamp,
        /// End of the header: the header bytes are `[8, header_end)`.
        header_end: usize,
        /// Hash of the header bytes as checked at open ([`super::safetensors::hash_header`]).
        header_hash: u64,
        /// The file, opened again and checked on first use, then kept open.
        reader: std::sync::OnceLock<FileReader>,
    },
}

impl std::fmt::Debug for SafetensorsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = match &self.source {
            Source::Bytes(b) => (**b).as_ref().len() as u64,
            #[cfg(feature = "files")]
            Source::File { stamp, .. } => stamp.len(),
        };
        f.debug_struct("SafetensorsFile")
            .field("path", &self.path)
            .field("len", &len)
            .field("metadata", &self.metadata)
            .finish()
    }
}

impl SafetensorsFile {
    /// Checks the header of a safetensors file held in memory, named `name` in messages; its
    /// tensors are given as belonging to file 0.
    pub(super) fn from_bytes(
        name: &Path,
        bytes: Box<dyn AsRef<[u8]> + Send + Sync>,
    ) -> Result<(Self, Vec<(String, TensorInfo)>)> {
        // The length is checked before each read, so reading a slice cannot come up short.
        let read_error = |e: std::io::Error| Error::Corrupt(format!("`{}`: {e}", name.display()));
        let data = (*bytes).as_ref();
        let mut h = parse_header(name, data.len() as u64, data, read_error)?;
        let infos = h.take_infos(0);
        Ok((SafetensorsFile { path: name.to_path_buf(), metadata: h.metadata, source: Source::Bytes(bytes) }, infos))
    }

    /// Opens the file and checks its header; its tensors are given as belonging to file number
    /// `index` of the checkpoint.
    #[cfg(feature = "files")]
    pub(super) fn open(path: &Path, index: usize) -> Result<(Self, Vec<(String, TensorInfo)>)> {
        let (f, _) = crate::regular_file::open_regular(path)?;
        // Taken before the header is read: any change from here on shows in the stamp.
        let stamp = Stamp::of(&f, path)?;
        let len = stamp.len();
        // The file shrinking after its size was taken is an error of its own, not an I/O failure.
        let read_error = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => changed_size(path, len, "fewer"),
            _ => Error::io("reading", path, e),
        };
        let mut h = parse_header(path, len, f, read_error)?;
        let infos = h.take_infos(index);
        let source = Source::File {
            stamp,
            header_end: h.header_end,
            header_hash: h.header_hash,
            reader: std::sync::OnceLock::new(),
        };
        Ok((SafetensorsFile { path: path.to_path_buf(), metadata: h.metadata, source }, infos))
    }

    /// Its path (or the name of bytes in memory).
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Its `__metadata__`.
    pub(super) fn metadata(&self) -> Option<&HashMap<String, String>> {
        self.metadata.as_ref()
    }

    /// Opens the file again for its data (not cached), checking it is still the file whose
    /// header was validated at open: a regular file, the same size, the same header bytes.
    /// Bytes in memory have no file to open: an [`Error::Unsupported`].
    #[cfg(feature = "files")]
    pub(super) fn open_reader(&self) -> Result<FileReader> {
        let Source::File { stamp, header_end, header_hash, .. } = &self.source else {
            return Err(Error::Unsupported(format!("`{}` is in memory: it has no file to read", self.path.display())));
        };
        let (file, _) = crate::regular_file::open_regular(&self.path)?;
        let reader = FileReader::new(file, &self.path, *stamp)?;
        let header = reader.read_vec(8..*header_end)?;
        if super::safetensors::hash_header(&header) != *header_hash {
            return Err(Error::Corrupt(format!(
                "`{}` changed while it was being read (its header is not the one read at open)",
                self.path.display()
            )));
        }
        Ok(reader)
    }

    /// Bytes `range` of the file: borrowed from memory, or read (through the reader of
    /// [`SafetensorsFile::open_reader`], opened on first use and kept) into a buffer of their own.
    pub(super) fn read(&self, range: Range<usize>) -> Result<TensorData<'_>> {
        match &self.source {
            Source::Bytes(b) => Ok(TensorData::Borrowed(self.slice((**b).as_ref(), range)?)),
            #[cfg(feature = "files")]
            Source::File { reader, .. } => {
                let mut buf = ReadBuf::default();
                self.reader(reader)?.read_into(range, &mut buf)?;
                Ok(TensorData::Read(buf))
            }
        }
    }

    /// Bytes `range` of the file, copied into a new vector.
    pub(super) fn read_vec(&self, range: Range<usize>) -> Result<Vec<u8>> {
        match &self.source {
            Source::Bytes(b) => Ok(self.slice((**b).as_ref(), range)?.to_vec()),
            #[cfg(feature = "files")]
            Source::File { reader, .. } => self.reader(reader)?.read_vec(range),
        }
    }

    /// Bytes `range` of bytes in memory.
    fn slice<'a>(&self, bytes: &'a [u8], range: Range<usize>) -> Result<&'a [u8]> {
        let len = bytes.len();
        bytes.get(range.clone()).ok_or_else(|| {
            Error::Corrupt(format!("bytes {range:?} are outside `{}` ({len} bytes)", self.path.display()))
        })
    }

    /// The kept reader `cell` of the file, opened on first use.
    #[cfg(feature = "files")]
    fn reader<'a>(&self, cell: &'a std::sync::OnceLock<FileReader>) -> Result<&'a FileReader> {
        if let Some(r) = cell.get() {
            return Ok(r);
        }
        let r = self.open_reader()?;
        Ok(cell.get_or_init(|| r))
    }
}

/// A tensor's bytes: borrowed from a file held in memory, or read from a file on disk into a
/// buffer of their own (aligned to 8 bytes). Dereferences to the bytes.
pub(crate) enum TensorData<'a> {
    /// Bytes of a file in memory.
    Borrowed(&'a [u8]),
    /// Bytes read from a file.
    #[cfg(feature = "files")]
    Read(ReadBuf),
}

impl Deref for TensorData<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            TensorData::Borrowed(b) => b,
            #[cfg(feature = "files")]
            TensorData::Read(buf) => buf,
        }
    }
}

/// `bytes` as a slice of `T`: in place when they are aligned for `T` (always, for the bytes
/// read into a `ReadBuf` and the 1-, 2-, 4- and 8-byte types of tensors), else copied.
pub(crate) fn as_slice_of<T: bytemuck::Pod>(bytes: &[u8]) -> Cow<'_, [T]> {
    match bytemuck::try_cast_slice(bytes) {
        Ok(x) => Cow::Borrowed(x),
        Err(_) => Cow::Owned(bytemuck::pod_collect_to_vec(bytes)),
    }
}
