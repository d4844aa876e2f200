//! Reading a checkpoint file's bytes: an open file, checked to be the one whose header was
//! validated, read with positioned reads into buffers the caller owns (and reuses).
//!
//! No memory map: reading a map of a file that another program truncates faults (SIGBUS) and kills
//! the process, where a read that comes up short is an error ([`Error::Corrupt`]).

use std::fs::File;
use std::ops::{Deref, Range};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// What a file's metadata says of its contents: its size and modification time. A file
/// written, truncated or touched since has another stamp. (Not the status-change time: that
/// also moves when the file is renamed over, and the reader keeps reading the file it opened.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl Stamp {
    /// The stamp of the open `file` (at `path`).
    pub(crate) fn of(file: &File, path: &Path) -> Result<Self> {
        let meta = file.metadata().map_err(|e| Error::io("reading", path, e))?;
        Ok(Stamp { len: meta.len(), modified: meta.modified().ok() })
    }

    /// The file's size.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }
}

/// An open checkpoint file, unchanged since its header was checked (its [`Stamp`]); reads
/// ranges of it ([`FileReader::read_into`]), checking the stamp again before and after each.
///
/// The handle stays open for the reader's life: a file replaced by another under the same path
/// (a rename) is not seen, and every read reads the file that was checked. Reads take `&self`
/// and may run on several threads at once.
#[derive(Debug)]
pub(crate) struct FileReader {
    file: File,
    path: PathBuf,
    /// The file's stamp when its header was read.
    stamp: Stamp,
    /// Where there is no positioned read, a seek and a read, one thread at a time.
    #[cfg(not(any(unix, windows)))]
    lock: std::sync::Mutex<()>,
}

impl FileReader {
    /// A reader of `file` (at `path`), which must still have the `stamp` it had when its
    /// header was read.
    pub(super) fn new(file: File, path: &Path, stamp: Stamp) -> Result<Self> {
        let r = FileReader {
            file,
            path: path.to_path_buf(),
            stamp,
            #[cfg(not(any(unix, windows)))]
            lock: std::sync::Mutex::new(()),
        };
        r.check_size()?;
        Ok(r)
    }

    /// Fails when the file is no longer as its header was checked: another program truncated,
    /// extended, rewrote or touched it.
    pub(crate) fn check_size(&self) -> Result<()> {
        let now = Stamp::of(&self.file, &self.path)?;
        if now.len != self.stamp.len {
            return Err(changed_size(&self.path, self.stamp.len, &now.len.to_string()));
        }
        if now != self.stamp {
            return Err(Error::Corrupt(format!(
                "`{}` was modified while it was being read (same size, another modification time); another \
                 program wrote or touched it",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// Reads bytes `range` of the file into `buf` (which keeps its allocation for the next
    /// read), after checking that the file's size is still the one its header was checked
    /// against; returns them.
    pub(crate) fn read_into<'b>(&self, range: Range<usize>, buf: &'b mut ReadBuf) -> Result<&'b [u8]> {
        self.read_exact(range.clone(), buf.fill(range.len()))?;
        Ok(buf)
    }

    /// Bytes `range` of the file, read into a new vector.
    pub(crate) fn read_vec(&self, range: Range<usize>) -> Result<Vec<u8>> {
        let mut v = vec![0; range.len()];
        self.read_exact(range, &mut v)?;
        Ok(v)
    }

    /// Fills `dst` (as long as `range`) with bytes `range` of the file. A read that comes up
    /// short (the file shrank since the size check) is an [`Error::Corrupt`].
    fn read_exact(&self, range: Range<usize>, dst: &mut [u8]) -> Result<()> {
        if range.start > range.end || u64::try_from(range.end).map_or(true, |end| end > self.stamp.len) {
            return Err(Error::Corrupt(format!(
                "bytes {range:?} are outside `{}` ({} bytes)",
                self.path.display(),
                self.stamp.len
            )));
        }
        debug_assert_eq!(dst.len(), range.len());
        self.check_size()?;
        self.read_at_checked(dst, range.start as u64)?;
        // A change during the read (a truncation and a rewrite) may have left other bytes.
        self.check_size()
    }

    /// Fills `dst` with the bytes at `offset`; a read that comes up short is the file having
    /// shrunk.
    fn read_at_checked(&self, dst: &mut [u8], offset: u64) -> Result<()> {
        if dst.is_empty() {
            return Ok(());
        }
        self.read_at(dst, offset).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                changed_size(&self.path, self.stamp.len, "fewer")
            } else {
                Error::io("reading", &self.path, e)
            }
        })
    }

    #[cfg(unix)]
    fn read_at(&self, dst: &mut [u8], offset: u64) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, dst, offset)
    }

    #[cfg(windows)]
    fn read_at(&self, mut dst: &mut [u8], mut offset: u64) -> std::io::Result<()> {
        use std::os::windows::fs::FileExt;
        while !dst.is_empty() {
            match self.file.seek_read(dst, offset) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    dst = &mut dst[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    #[cfg(not(any(unix, windows)))]
    fn read_at(&self, dst: &mut [u8], offset: u64) -> std::io::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let _one_at_a_time = self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut file = &self.file;
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(dst)
    }
}

/// The error of a file whose size is no longer the one its header was checked against (`len`):
/// `now` bytes.
pub(crate) fn changed_size(path: &Path, len: u64, now: &str) -> Error {
    Error::Corrupt(format!(
        "`{}` changed size while it was being read ({len} then {now} bytes); another program modified it",
        path.display()
    ))
}

/// Bytes read from a checkpoint file, in a buffer reused from read to read: it keeps its
/// largest allocation (nothing is zeroed or reallocated for a read that fits), and is aligned to
/// 8 bytes, so that [`as_slice_of`] views a tensor's bytes in place. Dereferences to the bytes of
/// the last read.
#[derive(Debug, Default)]
pub(crate) struct ReadBuf {
    words: Vec<u64>,
    len: usize,
}

impl ReadBuf {
    /// The first `len` bytes of the buffer, grown to hold them, to be overwritten by a read.
    fn fill(&mut self, len: usize) -> &mut [u8] {
        let words = len.div_ceil(8);
        if self.words.len() < words {
            // A new zeroed allocation (fresh pages), not a copy of the old contents.
            self.words = vec![0; words];
        }
        self.len = len;
        &mut bytemuck::cast_slice_mut(&mut self.words)[..len]
    }
}

impl Deref for ReadBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader of a new 64-byte file `int8-wgpu-<name>-<pid>` of sevens, after one good read.
    fn opened(name: &str) -> (PathBuf, FileReader, ReadBuf) {
        let path = std::env::temp_dir().join(format!("int8-wgpu-{name}-{}", std::process::id()));
        std::fs::write(&path, [7u8; 64]).unwrap();
        let file = File::open(&path).unwrap();
        let stamp = Stamp::of(&file, &path).unwrap();
        let r = FileReader::new(file, &path, stamp).unwrap();
        let mut buf = ReadBuf::default();
        assert_eq!(r.read_into(8..24, &mut buf).unwrap(), [7u8; 16]);
        (path, r, buf)
    }

    #[test]
    fn a_short_read_is_the_file_having_changed_size() {
        // The file shrinks after the size check and before the read: the read comes up short.
        let (path, r, _) = opened("short-read");
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(16).unwrap();
        let mut dst = [0u8; 16];
        let e = r.read_at_checked(&mut dst, 8).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            e.to_string(),
            format!(
                "checkpoint error: `{}` changed size while it was being read (64 then fewer bytes); another \
                 program modified it",
                path.display()
            )
        );
    }

    /// The file rewritten in place at the same size (a truncation and a rewrite, or other
    /// bytes): the next read is an error, not the new bytes taken for the checked file's.
    #[cfg(unix)]
    #[test]
    fn a_rewrite_in_place_is_the_file_having_changed() {
        let (path, r, mut buf) = opened("rewrite");
        // Coarse file clocks: wait until a write gets a later time than the first.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::os::unix::fs::FileExt::write_all_at(
            &std::fs::OpenOptions::new().write(true).open(&path).unwrap(),
            &[9u8; 16],
            8,
        )
        .unwrap();
        let e = r.read_into(8..24, &mut buf).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(e.to_string().contains("was modified while it was being read"), "{e}");
    }
}
