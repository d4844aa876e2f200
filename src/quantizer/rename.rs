//! Renames that never replace what is in the way, and that exchange two folders in one step,
//! with the native calls where the OS has them (Linux `renameat2`, macOS `renamex_np`) and a
//! portable fallback for the first.

use std::fs;
use std::io;
use std::path::Path;

/// Renames `from` to `to`, failing with `AlreadyExists` when anything is at `to`.
pub(super) fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    match native_rename(from, to, Rename::NoReplace) {
        Err(e) if unsupported(&e) => claim_and_rename(from, to),
        r => r,
    }
}

/// Swaps `a` and `b` in one step; `Unsupported` (or the OS's word for it) where it cannot.
pub(super) fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    native_rename(a, b, Rename::Exchange)
}

#[derive(Clone, Copy)]
enum Rename {
    NoReplace,
    Exchange,
}

/// Whether the OS or file system does not support a rename flag (NFS, some FUSE file systems,
/// kernels before 3.15, APFS-less macOS volumes, other OSes).
pub(super) fn unsupported(e: &io::Error) -> bool {
    #[cfg(unix)]
    if let Some(code) = e.raw_os_error() {
        return [libc::EINVAL, libc::ENOSYS, libc::ENOTSUP, libc::EOPNOTSUPP].contains(&code);
    }
    e.kind() == io::ErrorKind::Unsupported
}

#[cfg(unix)]
fn c_path(p: &Path) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

#[cfg(target_os = "linux")]
fn native_rename(from: &Path, to: &Path, how: Rename) -> io::Result<()> {
    let flags = match how {
        Rename::NoReplace => libc::RENAME_NOREPLACE,
        Rename::Exchange => libc::RENAME_EXCHANGE,
    };
    let (from, to) = (c_path(from)?, c_path(to)?);
    // The system call itself: glibc has a wrapper only from 2.28 on.
    // SAFETY: two valid NUL-terminated paths that outlive the call.
    let r = unsafe {
        libc::syscall(libc::SYS_renameat2, libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), flags)
    };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(target_vendor = "apple")]
fn native_rename(from: &Path, to: &Path, how: Rename) -> io::Result<()> {
    let flags = match how {
        Rename::NoReplace => libc::RENAME_EXCL,
        Rename::Exchange => libc::RENAME_SWAP,
    };
    let (from, to) = (c_path(from)?, c_path(to)?);
    // SAFETY: two valid NUL-terminated paths that outlive the call.
    let r = unsafe { libc::renamex_np(from.as_ptr(), to.as_ptr(), flags) };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(not(any(target_os = "linux", target_vendor = "apple")))]
fn native_rename(_: &Path, _: &Path, _: Rename) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// The portable no-replace rename of a folder: claim `to` by creating it, which fails when
/// anything is there, then rename over that empty folder, which POSIX allows and which fails if
/// something was put into it meanwhile (then the claim is withdrawn, leaving what was put there).
#[cfg(unix)]
fn claim_and_rename(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir(to)?;
    fs::rename(from, to).map_err(|e| {
        let _ = fs::remove_dir(to);
        match e.raw_os_error() {
            Some(code) if [libc::ENOTEMPTY, libc::EEXIST].contains(&code) => {
                io::Error::new(io::ErrorKind::AlreadyExists, e)
            }
            _ => e,
        }
    })
}

/// Without POSIX rename semantics: check, then rename (Windows never renames a folder over an
/// existing folder, so only something created between the two steps could be at risk).
#[cfg(not(unix))]
fn claim_and_rename(from: &Path, to: &Path) -> io::Result<()> {
    if fs::symlink_metadata(to).is_ok() {
        return Err(io::ErrorKind::AlreadyExists.into());
    }
    fs::rename(from, to)
}

#[cfg(all(test, unix))]
pub(super) mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// A fresh folder under the system temp dir, removed on drop.
    pub(crate) struct Scratch(pub(crate) PathBuf);

    impl Scratch {
        pub(crate) fn new(name: &str) -> Self {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("int8-wgpu-unit-{name}-{}-{n}", std::process::id()));
            fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A folder holding `file` with `text`.
    pub(crate) fn folder(path: &Path, file: &str, text: &str) {
        fs::create_dir(path).unwrap();
        fs::write(path.join(file), text).unwrap();
    }

    pub(crate) fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap()
    }

    pub(crate) fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn no_replace_renames_refuse_anything_in_the_way() {
        let s = Scratch::new("noreplace");
        let (a, b) = (s.0.join("a"), s.0.join("b"));
        folder(&a, "f", "new");
        for claim in [rename_no_replace as fn(&Path, &Path) -> io::Result<()>, claim_and_rename] {
            for obstacle in ["full", "empty", "file"] {
                match obstacle {
                    "full" => folder(&b, "user.txt", "mine"),
                    "empty" => fs::create_dir(&b).unwrap(),
                    _ => fs::write(&b, "a file").unwrap(),
                }
                let e = claim(&a, &b).unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{obstacle}: {e}");
                assert_eq!(read(&a.join("f")), "new", "{obstacle}");
                match obstacle {
                    "full" => assert_eq!(read(&b.join("user.txt")), "mine"),
                    "empty" => assert_eq!(names(&b), Vec::<String>::new()),
                    _ => assert_eq!(read(&b), "a file"),
                }
                if b.is_dir() { fs::remove_dir_all(&b) } else { fs::remove_file(&b) }.unwrap();
            }
            claim(&a, &b).unwrap();
            assert_eq!(read(&b.join("f")), "new");
            fs::rename(&b, &a).unwrap();
        }
    }

    #[test]
    fn exchange_swaps_two_folders() {
        let s = Scratch::new("exchange");
        let (a, b) = (s.0.join("a"), s.0.join("b"));
        folder(&a, "f", "new");
        folder(&b, "g", "old");
        match exchange(&a, &b) {
            Ok(()) => {
                assert_eq!(read(&b.join("f")), "new");
                assert_eq!(read(&a.join("g")), "old");
            }
            // A file system without exchange: nothing moved.
            Err(e) if unsupported(&e) => assert_eq!(read(&a.join("f")), "new"),
            Err(e) => panic!("{e}"),
        }
    }
}
