//! Tuning files: the tuning JSON of `tune_json.rs` ([`Gpu::tuning_json`]) saved to a file and
//! loaded from one on a later run.
//!
//! Files are read as the checkpoint reader reads its files: regular files only, opened without
//! blocking, and no longer than [`MAX_TUNING_BYTES`]; so a FIFO or `/dev/zero` is refused at once.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::gpu::Gpu;
use crate::gpu::linear::tune_json::{MAX_TUNING_BYTES, too_large};
use crate::regular_file::{not_regular, open_regular};
use crate::{Error, Result};

/// Numbers the temporary files of this process's saves, so that concurrent saves (threads of
/// one process) never write the same temporary file.
static SAVES: AtomicU64 = AtomicU64::new(0);

impl Gpu {
    /// Saves the tuned choices to `path` as JSON (the text of [`Gpu::tuning_json`]): written to
    /// a temporary file beside it (a name of its own per call, so concurrent saves never share
    /// one), flushed to disk, then renamed over it, so that a reader never sees half a file and
    /// the last rename wins whole. Only a regular file at `path` is replaced: anything else
    /// there (a folder, FIFO, device, symbolic link) is an [`Error::NotRegularFile`].
    pub fn save_tuning(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let text = self.tuning_json()?;
        // Only a regular file is replaced: the rename would put a file in place of a FIFO, a
        // device (`/dev/null` as root) or a link (leaving its target as it was).
        match std::fs::symlink_metadata(path) {
            Ok(m) if !m.is_file() => return Err(not_regular(path, m.file_type())),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io("writing", path, e)),
            _ => {}
        }
        let Some(name) = path.file_name() else {
            let e = std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path does not end in a file name");
            return Err(Error::io("writing", path, e));
        };
        // A name no other call or process uses: a process-wide counter, the pid, and random
        // bits (containers on one volume often share pid 1); a temporary file only this call
        // created is removed on failure.
        let (tmp, mut file) = loop {
            use std::hash::{BuildHasher, Hasher};
            let n = SAVES.fetch_add(1, Ordering::Relaxed);
            let random = std::hash::RandomState::new().build_hasher().finish();
            let tmp = path.with_file_name(format!(
                ".{}.tmp-{}-{n}-{random:016x}",
                name.to_string_lossy(),
                std::process::id()
            ));
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp) {
                Ok(f) => break (tmp, f),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n % 64 != 63 => continue,
                Err(e) => return Err(Error::io("creating", &tmp, e)),
            }
        };
        let written = file
            .write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io("writing", &tmp, e))
            .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io("renaming into place", path, e)));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// Loads tuned choices saved by [`Gpu::save_tuning`] on this adapter, replacing choices of
    /// the same classes; returns how many were loaded. The file's text is read as
    /// [`Gpu::load_tuning_json`] reads its text.
    ///
    /// The file names the adapter that measured it (name, backend, driver and its version,
    /// vendor and device ids, whether the kernels reduce with subgroups): speeds change with
    /// each, so a file of another identity or format version is an [`Error::TuningMismatch`]
    /// (tune again and save). A file that is not a valid tuning file (not JSON, an entry
    /// malformed or repeating another's class, more than 4096 entries or 4 MiB) is an
    /// [`Error::TuningCorrupt`]. A path that is not a regular file (nor a link to one) is an
    /// [`Error::NotRegularFile`]: a FIFO or a device is refused without reading it, so the call
    /// never blocks. Either way nothing is loaded.
    /// Entries of a kernel family this version does not tune (from a later version) are skipped
    /// with a logged warning.
    pub fn load_tuning(&self, path: impl AsRef<Path>) -> Result<usize> {
        let path = path.as_ref();
        self.load_tuning_text(&read_limited(path)?, path)
    }
}

/// Reads a tuning file: a regular file (opened without blocking) of at most [`MAX_TUNING_BYTES`].
fn read_limited(path: &Path) -> Result<Vec<u8>> {
    // Not "corrupt": a folder or `/dev/zero` is not to be deleted and tuned again.
    let (file, len) = open_regular(path)?;
    if len > MAX_TUNING_BYTES {
        return Err(too_large(path, len));
    }
    // The file may grow while it is read: read one byte past the limit at most.
    let mut text = Vec::with_capacity(len as usize);
    // (More is refused by `load_tuning_text`.)
    file.take(MAX_TUNING_BYTES + 1).read_to_end(&mut text).map_err(|e| Error::io("reading", path, e))?;
    Ok(text)
}
