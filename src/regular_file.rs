//! Opening the files the library reads (a checkpoint's files, tuning files): only regular files
//! (or links to them), and never blocking, so a FIFO, socket or device put in a file's place is
//! an error rather than a hang.

use std::fs;
use std::path::Path;

use crate::{Error, Result};

/// Opens a file for reading, with its length; anything but a regular file (or
/// a link to one) is an error.
///
/// Opening a FIFO for reading blocks until a writer appears, so the type is checked before
/// opening; and because the path may be swapped between that check and the open, the open itself
/// does not block (O_NONBLOCK) and the handle's type is checked again. O_NONBLOCK stays set: it
/// has no effect on reading a regular file.
pub(crate) fn open_regular(path: &Path) -> Result<(fs::File, u64)> {
    let meta = fs::metadata(path).map_err(|e| Error::io("opening", path, e))?;
    if !meta.is_file() {
        return Err(not_regular(path, meta.file_type()));
    }
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| Error::io("opening", path, e))?;
    let meta = file.metadata().map_err(|e| Error::io("reading", path, e))?;
    if !meta.is_file() {
        return Err(not_regular(path, meta.file_type()));
    }
    Ok((file, meta.len()))
}

/// What a non-regular file is, for messages.
pub(crate) fn file_kind(t: fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
    }
    if t.is_dir() {
        "a folder"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "a special file"
    }
}

pub(crate) fn not_regular(path: &Path, t: fs::FileType) -> Error {
    Error::NotRegularFile { path: path.to_path_buf(), kind: file_kind(t) }
}
