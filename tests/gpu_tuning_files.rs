//! Tuning files under hostile conditions: concurrent saves to one path, paths that are not
//! regular files, and files whose entries no tuning run could have written.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use int8_wgpu::{Error, Gpu, GpuOptions};
use serde_json::{Value, json};

fn fresh() -> Gpu {
    Gpu::with_options(GpuOptions::default()).expect("a second device on the test adapter")
}

/// A tuning document of this adapter with `entries`.
fn doc_with(gpu: &Gpu, dir: &Path, entries: Vec<Value>) -> Value {
    let empty = dir.join("empty.json");
    gpu.save_tuning(&empty).unwrap();
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&empty).unwrap()).unwrap();
    std::fs::remove_file(empty).unwrap();
    doc["entries"] = entries.into();
    doc
}

/// A valid entry of the weight-only family.
fn entry(activation: &str, in_class: u64, out_class: u64) -> Value {
    json!({
        "family": "linear", "activation": activation, "in_class": in_class, "out_class": out_class,
        "rows": "1", "grouped": false, "zero_point": false, "variant": "generic",
    })
}

/// `n` entries of distinct classes.
fn distinct_entries(n: usize) -> Vec<Value> {
    let all = ["f32", "f16", "bf16"]
        .into_iter()
        .flat_map(|a| (0..16).flat_map(move |i| (0..16).map(move |o| entry(a, 1 << i, 1 << o))));
    let v: Vec<Value> = all.take(n).collect();
    assert_eq!(v.len(), n);
    v
}

fn write(dir: &Path, name: &str, doc: &Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string(doc).unwrap()).unwrap();
    p
}

/// Runs `f` on a thread; a call still running after 10 s fails the test (or ends the process,
/// where the call would go on reading without bound) instead of hanging it.
fn within_timeout<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(r) => r,
        Err(_) => {
            // Straight to stderr: the test harness would swallow eprintln! at exit.
            let _ = writeln!(std::io::stderr(), "FAILED: load_tuning on {what} still running after 10 s");
            std::process::exit(101);
        }
    }
}

#[test]
fn concurrent_saves_to_one_path_all_succeed_and_readers_see_whole_files() {
    let _ = gpu_or_skip!();
    let gpu = fresh();
    let dir = common::TempDir::new("tuning-concurrent");
    // A few hundred entries make the file long enough that a torn write would be seen.
    let doc = doc_with(&gpu, dir.path(), distinct_entries(300));
    assert_eq!(gpu.load_tuning(write(dir.path(), "seed.json", &doc)).unwrap(), 300);
    std::fs::remove_file(dir.path().join("seed.json")).unwrap();
    let path = dir.path().join("tuning.json");
    gpu.save_tuning(&path).unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let (loads, bad_loads) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (reader, path, done) = (fresh(), path.clone(), done.clone());
            let (loads, bad_loads) = (loads.clone(), bad_loads.clone());
            std::thread::spawn(move || {
                let mut first_error = None;
                while !done.load(Ordering::Relaxed) {
                    match reader.load_tuning(&path) {
                        Ok(n) => assert_eq!(n, 300),
                        Err(e) => {
                            bad_loads.fetch_add(1, Ordering::Relaxed);
                            first_error.get_or_insert(e.to_string());
                        }
                    }
                    loads.fetch_add(1, Ordering::Relaxed);
                }
                first_error
            })
        })
        .collect();
    let savers: Vec<_> = (0..4)
        .map(|_| {
            let (gpu, path) = (gpu.clone(), path.clone());
            std::thread::spawn(move || {
                let errors: Vec<String> =
                    (0..200).filter_map(|_| gpu.save_tuning(&path).err().map(|e| e.to_string())).collect();
                errors
            })
        })
        .collect();
    let failed_saves: Vec<String> = savers.into_iter().flat_map(|s| s.join().unwrap()).collect();
    done.store(true, Ordering::Relaxed);
    let reader_errors: Vec<Option<String>> = readers.into_iter().map(|r| r.join().unwrap()).collect();

    let (loads, bad_loads) = (loads.load(Ordering::Relaxed), bad_loads.load(Ordering::Relaxed));
    assert!(
        failed_saves.is_empty() && bad_loads == 0,
        "{} of 800 saves failed ({:?}); {bad_loads} of {loads} loads failed ({reader_errors:?})",
        failed_saves.len(),
        failed_saves.first()
    );
    assert!(loads > 0);
    // Every temporary file was renamed into place or removed.
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["tuning.json"]);
    assert_eq!(gpu.load_tuning(&path).unwrap(), 300);
}

#[cfg(unix)]
#[test]
fn fifos_and_devices_are_refused_without_blocking() {
    let _ = gpu_or_skip!();
    let dir = common::TempDir::new("tuning-fifo");
    let fifo = dir.path().join("tuning.json");
    let s = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(s.success());
    let folder = dir.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    // Not "corrupt; delete it and tune again": nobody should delete `/dev/zero`.
    for (path, kind) in
        [(fifo, "a FIFO"), (PathBuf::from("/dev/zero"), "a character device"), (folder.clone(), "a folder")]
    {
        let p = path.clone();
        let e = within_timeout(&path.display().to_string(), move || fresh().load_tuning(p)).unwrap_err();
        assert!(matches!(&e, Error::NotRegularFile { path: found, .. } if *found == path), "{e:?}");
        assert_eq!(e.to_string(), format!("`{}` is {kind}, not a regular file", path.display()));
    }
}

/// Saving replaces only a regular file: never a FIFO, a folder, a device or a link (once, the
/// rename put a file in their place, and as root `save_tuning("/dev/null")` would replace it).
#[cfg(unix)]
#[test]
fn saving_replaces_only_a_regular_file() {
    let _ = gpu_or_skip!();
    let gpu = fresh();
    let dir = common::TempDir::new("tuning-save-kinds");
    let fifo = dir.path().join("fifo.json");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs").success());
    let folder = dir.path().join("folder.json");
    std::fs::create_dir(&folder).unwrap();
    let target = dir.path().join("target.json");
    std::fs::write(&target, "kept").unwrap();
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let dangling = dir.path().join("dangling.json");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
    for (path, kind) in
        [(&fifo, "a FIFO"), (&folder, "a folder"), (&link, "a symbolic link"), (&dangling, "a symbolic link")]
    {
        let e = gpu.save_tuning(path).unwrap_err();
        assert!(matches!(&e, Error::NotRegularFile { path: found, .. } if found == path), "{e:?}");
        assert_eq!(e.to_string(), format!("`{}` is {kind}, not a regular file", path.display()));
        assert!(!std::fs::symlink_metadata(path).unwrap().is_file(), "{} was replaced", path.display());
    }
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "kept");
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["dangling.json", "fifo.json", "folder.json", "link.json", "target.json"], "no temporary left");
    // A regular file is replaced.
    gpu.save_tuning(&target).unwrap();
    assert_eq!(gpu.load_tuning(&target).unwrap(), 0);
}

/// Temporary files of other runs or processes at the path (a killed run's, or a container's
/// with the same pid) neither fail a save nor are removed by it.
#[test]
fn others_temporary_files_are_left_alone() {
    let _ = gpu_or_skip!();
    let gpu = fresh();
    let dir = common::TempDir::new("tuning-temps");
    let path = dir.path().join("t.json");
    let pid = std::process::id();
    let theirs: Vec<PathBuf> = (0..4096).map(|n| dir.path().join(format!(".t.json.tmp-{pid}-{n}"))).collect();
    for t in &theirs {
        std::fs::write(t, "someone else's").unwrap();
    }
    gpu.save_tuning(&path).unwrap();
    assert_eq!(gpu.load_tuning(&path).unwrap(), 0);
    assert!(theirs.iter().all(|t| std::fs::read_to_string(t).unwrap() == "someone else's"));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), theirs.len() + 1, "no temporary of ours left");
}

#[test]
fn files_over_the_size_limit_are_refused_unread() {
    let _ = gpu_or_skip!();
    let dir = common::TempDir::new("tuning-large");
    let path = dir.path().join("tuning.json");
    // Sparse: 5 MiB of zero bytes that would take no time to read, but far more than any table.
    std::fs::File::create(&path).unwrap().set_len(5 << 20).unwrap();
    let e = fresh().load_tuning(&path).unwrap_err();
    assert!(matches!(e, Error::TuningCorrupt { .. }), "{e:?}");
    assert!(e.to_string().contains("it is 5242880 bytes; tuning files are at most 4194304"), "{e}");
}

#[test]
fn entries_no_tuning_could_write_are_refused() {
    let _ = gpu_or_skip!();
    let gpu = fresh();
    let dir = common::TempDir::new("tuning-entries");
    let cases: [(&str, Vec<Value>, &str); 5] = [
        (
            "huge-class.json",
            vec![entry("f32", 1 << 63, 64)],
            "entry 0: `in_class` is not a power of two from 1 to 2^32",
        ),
        (
            "above-2^32.json",
            vec![entry("f32", 64, 1 << 33)],
            "entry 0: `out_class` is not a power of two from 1 to 2^32",
        ),
        (
            "too-many-elements.json",
            vec![entry("f16", 1 << 20, 1 << 14)],
            "entry 0: no weight of fewer than 2^32 elements has `in_class` 1048576 and `out_class` 16384",
        ),
        (
            "repeated.json",
            vec![entry("f32", 64, 64), entry("bf16", 64, 64), entry("f32", 64, 64)],
            "entry 2 repeats the class of entry 0",
        ),
        ("10000-duplicates.json", vec![entry("f32", 64, 64); 10_000], "it has 10000 entries; at most 4096 are read"),
    ];
    for (name, entries, detail) in cases {
        let path = write(dir.path(), name, &doc_with(&gpu, dir.path(), entries));
        let e = gpu.load_tuning(&path).unwrap_err();
        assert!(matches!(e, Error::TuningCorrupt { .. }), "{name}: {e:?}");
        assert!(e.to_string().contains(detail), "{name}: {e}");
    }
    assert!(gpu.tuning().is_empty(), "nothing of a refused file is loaded");
    // The largest classes a weight can have load.
    let edge = vec![entry("f32", 1 << 32, 2), entry("f32", 2, 1 << 32), entry("f32", 1 << 17, 1 << 16)];
    let path = write(dir.path(), "edge.json", &doc_with(&gpu, dir.path(), edge));
    assert_eq!(gpu.load_tuning(&path).unwrap(), 3);
}
