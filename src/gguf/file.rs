//! Reading a GGUF file from disk: a regular file only, read whole into memory (no memory map, so
//! a file that shrinks while it is read is an error, not a crash).

use std::io::Read;
use std::path::Path;

use super::Gguf;
use crate::regular_file::open_regular;
use crate::{Error, Result};

impl Gguf {
    /// Reads the GGUF file at `path` whole into memory and checks it as
    /// [`from_bytes`](Self::from_bytes) does.
    ///
    /// Anything but a regular file (or a link to one) is an [`Error::NotRegularFile`], refused
    /// without blocking; a file larger than the address space is [`Error::TooLarge`], one
    /// that host memory cannot hold an [`Error::Io`], one that comes up shorter than its size
    /// when read (it shrank) [`Error::Corrupt`]. Bytes appended while it is read are not read.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let (file, len) = open_regular(path)?;
        let size = usize::try_from(len).ok().filter(|&n| n <= isize::MAX as usize).ok_or_else(|| Error::TooLarge {
            what: format!("GGUF file `{}`", path.display()),
            size: len,
            limit: isize::MAX as u64,
        })?;
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(size)
            .map_err(|_| Error::io("reading", path, std::io::ErrorKind::OutOfMemory.into()))?;
        file.take(len).read_to_end(&mut bytes).map_err(|e| Error::io("reading", path, e))?;
        if bytes.len() != size {
            return Err(Error::Corrupt(format!(
                "GGUF file `{}` shrank while it was read: {} of {len} bytes",
                path.display(),
                bytes.len()
            )));
        }
        Gguf::from_bytes(bytes).map_err(|e| match e {
            Error::Corrupt(m) => Error::Corrupt(format!("`{}`: {m}", path.display())),
            e => e,
        })
    }
}
