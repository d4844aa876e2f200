//! Where a run writes: a temporary folder beside the output, moved into place when complete.
//!
//! - The temporary folder is `.int8-wgpu-tmp-<pid>-<n>` in the output's parent: short and
//!   independent of the output's name, so that every output name that fits the file system fits
//!   it too.
//! - While a run lives, its folder is in a process-wide list, so that [`remove_temp_folders`]
//!   (from a signal handler) can remove it, and holds a lock file, [`LOCK_FILE`], that the run
//!   keeps locked (`flock`), so that another process can tell it is live even where the pid in
//!   its name says nothing (another pid namespace, another machine on a network file system).
//!   The lock file is removed just before the folder moves into place.
//! - A run first removes the temporary folders that killed runs left in the output's parent:
//!   only those holding the lock file this tool writes, never a folder that merely has the name.
//! - The move into place never replaces anything without `overwrite`. With it, the old output is
//!   exchanged with the new one in one step where the OS can (Linux `renameat2`, macOS
//!   `renamex_np`), then removed; elsewhere it is moved aside first.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::rename::{exchange, rename_no_replace, unsupported};
use crate::{Error, Result};

/// How a temporary folder's name starts; `<pid>-<n>` follows.
const TMP_MARK: &str = ".int8-wgpu-tmp-";

/// The lock file in a temporary folder: what tells this tool's folders from any other of the
/// same name, which is never removed.
const LOCK_FILE: &str = ".int8-wgpu-lock";

/// The lock file's text (checked, with its name, before a folder is removed as stale).
const LOCK_TEXT: &str = "int8-wgpu: the unfinished output of a quantization run; the next run into this folder's \
                         parent removes it once that run is gone\n";

/// The temporary folders of this process's runs (absolute paths).
static LIVE: Mutex<Live> = Mutex::new(Live { unfinished: Vec::new(), old: Vec::new(), finished: 0 });

/// What [`remove_temp_folders`] may remove, and how many runs are past that point.
struct Live {
    /// The temporary folders of runs in progress, their output not yet in place.
    unfinished: Vec<PathBuf>,
    /// The old copies of replaced outputs, registered while they are removed.
    old: Vec<PathBuf>,
    /// Runs whose output moved into place.
    finished: usize,
}

impl Live {
    #[cfg(unix)]
    fn holds(&self, path: &Path) -> bool {
        self.unfinished.iter().chain(&self.old).any(|p| p == path)
    }
}

/// What [`remove_temp_folders`] did, for a signal handler's message: a signal after a run's
/// output moved into place removed nothing of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cleanup {
    /// Unfinished outputs removed; the runs that were writing them fail ([`Error::Interrupted`]).
    pub unfinished: usize,
    /// Runs of this process whose output had already moved into place, complete (kept).
    pub finished: usize,
}

/// The `<n>` of the next temporary folder: one process may run several quantizations.
static NEXT: AtomicU64 = AtomicU64::new(0);

fn live() -> MutexGuard<'static, Live> {
    // The list stays valid whatever panicked while holding it.
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Removes the temporary folders of this process's quantizations in progress; each of those runs
/// then fails (its folder is gone) instead of writing an output.
///
/// For applications that handle SIGINT and SIGTERM themselves: call it from the handler before
/// the process exits. The handler must run on an ordinary thread, as those of the `ctrlc` and
/// `signal-hook` crates do, not inside a raw signal handler: this takes a lock and removes files.
/// The `int8-wgpu` command-line tool does exactly this. Folders that no process got to remove
/// (`kill -9`, a crash, a power cut) are removed by the next run into the same parent folder.
///
/// The old copy of an output being replaced is removed too. Returns how many unfinished
/// outputs were removed and how many runs had already put theirs in place (which are kept).
/// Every folder is tried; the first failure is returned.
pub fn remove_temp_folders() -> Result<Cleanup> {
    let mut live = live();
    let cleanup = Cleanup { unfinished: live.unfinished.len(), finished: live.finished };
    let (unfinished, old) = (std::mem::take(&mut live.unfinished), std::mem::take(&mut live.old));
    let mut first = Ok(cleanup);
    for path in unfinished.into_iter().chain(old) {
        if let Err(e) = remove_all(&path) {
            first = first.and(Err(Error::io("removing", path, e)));
        }
    }
    first
}

/// A run's temporary output folder, removed when dropped unless [`commit`] moved it into place.
pub(crate) struct TmpDir {
    path: PathBuf,
    /// The open lock file, its lock held for the folder's life (also once the file is removed
    /// before the commit); `None` until written, or where locks are not supported.
    _lock: Option<File>,
}

impl TmpDir {
    /// Creates a new temporary folder in `parent` (an absolute path) and registers it.
    pub(crate) fn create(parent: &Path) -> Result<TmpDir> {
        let mut live = live();
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = parent.join(format!("{TMP_MARK}{}-{n}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => {
                    live.unfinished.push(path.clone());
                    let mut tmp = TmpDir { path, _lock: None };
                    drop(live);
                    // On failure `tmp` is dropped, which removes the folder.
                    tmp._lock = write_lock(&tmp.path)?;
                    return Ok(tmp);
                }
                // Left by an earlier process with our pid, and not (yet) removable.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io("creating folder", &path, e)),
            }
        }
    }

    /// The folder.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Fails if [`remove_temp_folders`] removed the folder: the run was interrupted.
    pub(crate) fn ensure_live(&self) -> Result<()> {
        if live().unfinished.contains(&self.path) { Ok(()) } else { Err(interrupted(&self.path)) }
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let mut live = live();
        if let Some(i) = live.unfinished.iter().position(|p| *p == self.path) {
            live.unfinished.swap_remove(i);
            let _ = remove_all(&self.path);
        }
    }
}

fn interrupted(tmp: &Path) -> Error {
    Error::Interrupted { folder: tmp.to_path_buf() }
}

fn appeared(output: &Path) -> Error {
    Error::Output(format!(
        "output `{}` appeared while quantizing (another program or run created it); it was left as it is and this \
         run's result discarded; remove it, choose another folder, or allow overwriting (--force)",
        output.display()
    ))
}

fn not_a_folder(output: &Path) -> Error {
    Error::Output(format!("output `{}` exists and is not a folder", output.display()))
}

/// Moves the finished `tmp` to `output`. Without `overwrite`, nothing at `output` is ever
/// replaced. With it, a folder there is replaced and its old copy removed; a failure to remove
/// that copy is not an error but a warning, returned.
pub(crate) fn commit(tmp: TmpDir, output: &Path, overwrite: bool) -> Result<Vec<String>> {
    commit_with(tmp, output, overwrite, remove_all)
}

/// [`commit`], removing the old output with `remove` (tests make it fail).
fn commit_with(
    tmp: TmpDir,
    output: &Path,
    overwrite: bool,
    remove: fn(&Path) -> io::Result<()>,
) -> Result<Vec<String>> {
    let mut live = live();
    // Under the lock: an interrupt either removes the folder before the move or finds it moved.
    let Some(i) = live.unfinished.iter().position(|p| *p == tmp.path) else { return Err(interrupted(&tmp.path)) };
    // Not part of the output; the lock itself stays held through the open file.
    let lock = tmp.path.join(LOCK_FILE);
    match fs::remove_file(&lock) {
        // Gone with its folder: the move below says so.
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(Error::io("removing", &lock, e)),
        _ => {}
    }
    let old = if overwrite { replace(&tmp.path, output)? } else { place(&tmp.path, output).map(|()| None)? };
    // In place: an interrupt from now on leaves the output and reports it finished.
    live.unfinished.swap_remove(i);
    live.finished += 1;
    if old.as_deref() == Some(tmp.path.as_path()) {
        live.old.push(tmp.path.clone());
    }
    drop(live);
    let Some(old) = old else { return Ok(Vec::new()) };
    // An exchanged old copy stays registered while it is removed, so an interrupt removes it too,
    // and gets a lock file, so that a later run removes what a kill -9 meanwhile would leave.
    // Never into a link's target: a replaced link is removed itself.
    let real_dir = fs::symlink_metadata(&old).is_ok_and(|m| m.is_dir());
    let _lock = if old == tmp.path && real_dir { write_lock(&old).ok().flatten() } else { None };
    let removed = remove(&old);
    live_forget(&old);
    Ok(match removed {
        Ok(()) => Vec::new(),
        Err(e) => vec![format!(
            "the previous output was replaced, but its old copy `{}` could not be removed ({e}); delete it",
            old.display()
        )],
    })
}

fn live_forget(path: &Path) {
    live().old.retain(|p| p != path);
}

/// Moves `tmp` to the free path `output`.
fn place(tmp: &Path, output: &Path) -> Result<()> {
    rename_no_replace(tmp, output).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => appeared(output),
        _ => Error::io("moving into place", output, e),
    })
}

/// Moves `tmp` to `output`, replacing a folder there. Returns where the old output is now, if
/// there was one: `tmp` after an exchange, a sibling of `output` where it was moved aside.
fn replace(tmp: &Path, output: &Path) -> Result<Option<PathBuf>> {
    // Another program may create or remove `output` between the steps: a few tries.
    for _ in 0..3 {
        match rename_no_replace(tmp, output) {
            Ok(()) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("moving into place", output, e)),
        }
        // A link is replaced itself (the exchange moves the link, not what it leads to).
        match fs::symlink_metadata(output) {
            // A folder that appeared or changed during the run: replaced only if a checkpoint's.
            Ok(m) if m.is_dir() => super::checks::check_replaceable(output)?,
            Ok(m) if m.is_symlink() => {}
            Ok(_) => return Err(not_a_folder(output)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("moving into place", output, e)),
        }
        match exchange(tmp, output) {
            Ok(()) => return Ok(Some(tmp.to_path_buf())),
            Err(e) if unsupported(&e) => return move_aside_and_replace(tmp, output).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound && tmp.exists() => continue,
            Err(e) => return Err(Error::io("moving into place", output, e)),
        }
    }
    Err(Error::Output(format!(
        "output `{}` kept appearing and disappearing while it was being replaced; try again",
        output.display()
    )))
}

/// Where two paths cannot be exchanged: the old output is renamed aside, then the new one into
/// place (for a moment nothing is at `output`); should that fail, the old one is put back.
/// Returns where the old output is. Its name is not a temporary folder's: a run killed between
/// the two renames leaves the only copy there, which no later run removes.
fn move_aside_and_replace(tmp: &Path, output: &Path) -> Result<PathBuf> {
    let parent = tmp.parent().unwrap_or(Path::new("."));
    let aside = parent.join(format!(".int8-wgpu-old-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    fs::rename(output, &aside).map_err(|e| Error::io("moving aside", output, e))?;
    if let Err(e) = rename_no_replace(tmp, output) {
        return Err(match fs::rename(&aside, output) {
            Ok(()) => Error::io("moving into place", output, e),
            Err(back) => Error::Output(format!(
                "could not move the new output into place ({e}) nor the previous one back ({back}); the previous \
                 output is at `{}`",
                aside.display()
            )),
        });
    }
    Ok(aside)
}

/// Removes a folder; one that is already gone is fine.
fn remove_all(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

// ---- Folders left by killed runs ----------------------------------------------------------

/// Removes the temporary folders in `parent` that runs killed before they could clean up left
/// behind, leaving any whose process may still be running, and any that does not hold this
/// tool's lock file (another program's, or an older version's). Returns a warning for each that
/// could not be removed.
pub(crate) fn remove_stale(parent: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(parent) else { return Vec::new() };
    let mut warnings = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_folder_pid) else { continue };
        let path = parent.join(&name);
        // Never through a link: only folders we could have made.
        if !entry.file_type().is_ok_and(|t| t.is_dir()) || !is_stale(&path, pid) {
            continue;
        }
        match remove_all(&path) {
            Ok(()) => log::info!("removed `{}`, left by an interrupted run (process {pid})", path.display()),
            Err(e) => warnings.push(format!(
                "could not remove `{}`, left by an interrupted run (process {pid}): {e}",
                path.display()
            )),
        }
    }
    warnings
}

/// The pid in a temporary folder's name: `.int8-wgpu-tmp-<pid>-<n>`; `None` for any other name.
fn temp_folder_pid(name: &str) -> Option<u32> {
    let (pid, n) = name.strip_prefix(TMP_MARK)?.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(n) {
        return None;
    }
    pid.parse().ok()
}

/// Whether the temporary folder `path`, named with `pid`, is one this tool made and belongs to
/// no live run: it holds our lock file, its process is gone (or has our pid, reused, and the
/// folder is not one of ours), and no live run holds the lock. Where this cannot be told (not
/// unix), it is left alone.
#[cfg(unix)]
fn is_stale(path: &Path, pid: u32) -> bool {
    let lock = path.join(LOCK_FILE);
    if !has_lock_text(&lock) {
        return false;
    }
    let gone = if pid == std::process::id() { !live().holds(path) } else { process_gone(pid) };
    gone && !matches!(try_lock(&lock), Ok(None))
}

/// Whether `lock` is a regular file (not a link) holding [`LOCK_TEXT`].
#[cfg(unix)]
fn has_lock_text(lock: &Path) -> bool {
    use std::io::Read;
    if !fs::symlink_metadata(lock).is_ok_and(|m| m.is_file() && m.len() == LOCK_TEXT.len() as u64) {
        return false;
    }
    let mut text = Vec::new();
    let read = File::open(lock).and_then(|f| f.take(LOCK_TEXT.len() as u64).read_to_end(&mut text));
    read.is_ok() && text == LOCK_TEXT.as_bytes()
}

/// Writes the lock file into the temporary folder `dir` and takes its lock: the open file, or
/// `None` where locks are not supported or another process holds it.
fn write_lock(dir: &Path) -> Result<Option<File>> {
    let path = dir.join(LOCK_FILE);
    fs::write(&path, LOCK_TEXT).map_err(|e| Error::io("writing", &path, e))?;
    Ok(try_lock(&path).ok().flatten())
}

#[cfg(not(unix))]
fn is_stale(_: &Path, _: u32) -> bool {
    false
}

#[cfg(unix)]
fn process_gone(pid: u32) -> bool {
    // 0 and negative pids would name process groups.
    let Ok(pid @ 1..) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: signal 0 only asks whether the process exists; nothing is delivered.
    let r = unsafe { libc::kill(pid, 0) };
    r != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// Takes the exclusive lock of a lock file without waiting: the open file holding it, or `None`
/// when another open file holds it.
#[cfg(unix)]
fn try_lock(path: &Path) -> io::Result<Option<File>> {
    use std::os::fd::AsRawFd;
    let f = File::open(path)?;
    // SAFETY: a valid open descriptor.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(Some(f));
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::WouldBlock { Ok(None) } else { Err(e) }
}

#[cfg(not(unix))]
fn try_lock(_: &Path) -> io::Result<Option<File>> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(all(test, unix))]
#[path = "output_tests.rs"]
mod tests;
