//! Reading a checkpoint file's bytes through memory maps: an open file, checked to be the one
//! whose header was validated, and maps of byte ranges of it. The crate's one `mmap` is here.

use std::borrow::Cow;
use std::fs::File;
use std::ops::{Deref, Range};
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapOptions};

use crate::{Error, Result};

/// An open checkpoint file whose size is the one its header was checked against; maps ranges
/// of it ([`FileReader::map`]), checking the size again each time.
///
/// The handle stays open for the reader's life: a file replaced by another under the same path
/// (a rename) is not seen, and every map reads the file that was checked.
#[derive(Debug)]
pub(crate) struct FileReader {
    file: File,
    path: PathBuf,
    /// The size the header was checked against.
    len: u64,
}

impl FileReader {
    /// A reader of `file` (at `path`), which must be `len` bytes long, as its header says.
    pub(super) fn new(file: File, path: &Path, len: u64) -> Result<Self> {
        let r = FileReader { file, path: path.to_path_buf(), len };
        r.check_size()?;
        Ok(r)
    }

    /// Fails when the file is no longer the size its header was checked against: another
    /// program truncated, extended or rewrote it.
    pub(crate) fn check_size(&self) -> Result<()> {
        let now = self.file.metadata().map_err(|e| Error::io("reading", &self.path, e))?.len();
        if now != self.len {
            return Err(Error::Corrupt(format!(
                "`{}` changed size while it was being read ({} then {now} bytes); another program modified it",
                self.path.display(),
                self.len
            )));
        }
        Ok(())
    }

    /// Maps bytes `range` of the file, after checking that its size is still the one its header
    /// was checked against. An empty range maps nothing.
    pub(crate) fn map(&self, range: Range<usize>) -> Result<Mapped> {
        if range.start > range.end || u64::try_from(range.end).map_or(true, |end| end > self.len) {
            return Err(Error::Corrupt(format!(
                "bytes {range:?} are outside `{}` ({} bytes)",
                self.path.display(),
                self.len
            )));
        }
        self.check_size()?;
        if range.is_empty() {
            return Ok(Mapped(None));
        }
        // SAFETY: the map is read-only, and nothing in this process writes the file. The caveat
        // of every file map (memmap2's, candle's, safetensors' own) remains: a map does not pin
        // the file's contents, so another process that truncates the file while it is mapped makes
        // reading the lost pages fault (SIGBUS), and one that rewrites it in place changes what the
        // map reads. The reader narrows that: the file's size was checked against its header at
        // open, and is checked again just above, before every map (and by `Checkpoint::bytes`
        // before it hands out a slice of a kept map), so a size change seen by then is an error,
        // not a fault; the range was checked to lie inside that size; and the quantizer and
        // `Checkpoint::linear` map one tensor at a time and drop the map once it is read, so the
        // window is the time one tensor takes to read.
        let map = unsafe { MmapOptions::new().offset(range.start as u64).len(range.len()).map(&self.file) }
            .map_err(|e| Error::io("mapping", &self.path, e))?;
        Ok(Mapped(Some(map)))
    }
}

/// Bytes of a checkpoint file, mapped into memory (unmapped on drop); dereferences to `[u8]`.
#[derive(Debug)]
pub(crate) struct Mapped(Option<Mmap>);

impl Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.as_deref().unwrap_or(&[])
    }
}

/// `bytes` as a slice of `T`: in place when they are aligned for `T` (a tensor's are, in a file
/// whose offsets are multiples of its element sizes, as in ours), else copied.
pub(crate) fn as_slice_of<T: bytemuck::Pod>(bytes: &[u8]) -> Cow<'_, [T]> {
    match bytemuck::try_cast_slice(bytes) {
        Ok(x) => Cow::Borrowed(x),
        Err(_) => Cow::Owned(bytemuck::pod_collect_to_vec(bytes)),
    }
}
