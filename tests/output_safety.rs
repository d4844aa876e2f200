//! What a quantization run may do to the file system around it: nothing outside the input
//! folder is copied (symlinks, FIFOs, sockets), an output that appears during the run is never
//! replaced without `--force`, interrupted runs leave no temporary folders behind, and the
//! temporary folder's name does not depend on the output's (`--force` on a folder that is not a
//! checkpoint: output_force.rs; the CLI under signals: cli/tests/cli_signals.rs).

#![cfg(unix)]

mod common;

use common::TempDir;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use int8_wgpu::Error;
use int8_wgpu::checkpoint::Checkpoint;
use int8_wgpu::quantizer::{self};

use common::square::{quantizer, run_meddling, serial, temp_folders, write_model, write_weights};

/// Everything under `dir`, without following symlinks: relative path, and the file's bytes
/// (`None` for a folder; a symlink shows as `-> target`).
fn tree(dir: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<(PathBuf, Option<Vec<u8>>)>) {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let meta = fs::symlink_metadata(&p).unwrap();
            if meta.is_symlink() {
                let target = fs::read_link(&p).unwrap();
                out.push((rel, Some(format!("-> {}", target.display()).into_bytes())));
            } else if meta.is_dir() {
                out.push((rel, None));
                walk(root, &p, out);
            } else {
                out.push((rel, Some(fs::read(&p).unwrap())));
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

/// The files a quantized toy model's output holds besides `model.safetensors`.
fn names(tree: &[(PathBuf, Option<Vec<u8>>)]) -> Vec<String> {
    tree.iter().map(|(p, _)| p.display().to_string()).collect()
}

#[test]
fn symlinks_never_reach_outside_the_input_folder() {
    let _s = serial();
    let (inp, outside, out) = (TempDir::new("ln-in"), TempDir::new("ln-outside"), TempDir::new("ln-out"));
    write_model(inp.path(), 2, 8);
    fs::write(outside.path().join("secret.txt"), "the shadow file").unwrap();
    let i = inp.path();
    symlink(outside.path(), i.join("tok")).unwrap(); // a folder outside
    symlink(".", i.join("self")).unwrap(); // a loop
    fs::create_dir(i.join("1_Pooling")).unwrap();
    fs::write(i.join("1_Pooling/config.json"), "{}").unwrap();
    symlink("1_Pooling", i.join("pooling")).unwrap(); // a folder inside: not followed either
    symlink("tokenizer.json", i.join("tokenizer_alias.json")).unwrap(); // a file inside
    symlink("../tokenizer.json", i.join("1_Pooling/tok.json")).unwrap(); // inside, through `..`
    symlink(outside.path().join("secret.txt"), i.join("notes.txt")).unwrap(); // a file outside
    symlink("../tok/secret.txt", i.join("1_Pooling/sneaky.txt")).unwrap(); // outside via a linked folder
    symlink("missing.txt", i.join("broken.txt")).unwrap();

    let dest = out.path().join("q");
    let report = quantizer(i, &dest).run().unwrap();

    let t = tree(&dest);
    assert_eq!(
        names(&t),
        [
            "1_Pooling",
            "1_Pooling/config.json",
            "1_Pooling/tok.json",
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_alias.json"
        ]
    );
    let file = |name: &str| t.iter().find(|(p, _)| p == Path::new(name)).unwrap().1.clone().unwrap();
    // Links inside are copied as regular files with the target's bytes.
    assert_eq!(file("tokenizer_alias.json"), br#"{"version": "1.0"}"#);
    assert_eq!(file("1_Pooling/tok.json"), br#"{"version": "1.0"}"#);
    let secret_real = fs::canonicalize(outside.path().join("secret.txt")).unwrap();
    assert_eq!(
        report.warnings,
        [
            format!(
                "not copied: `1_Pooling/sneaky.txt` (a symbolic link to `{}`, outside the input folder)",
                secret_real.display()
            ),
            "not copied: `broken.txt` (a broken symbolic link)".to_string(),
            format!(
                "not copied: `notes.txt` (a symbolic link to `{}`, outside the input folder)",
                secret_real.display()
            ),
            "not copied: `pooling` (a symbolic link to a folder; linked folders are never followed)".to_string(),
            "not copied: `self` (a symbolic link to a folder; linked folders are never followed)".to_string(),
            "not copied: `tok` (a symbolic link to a folder; linked folders are never followed)".to_string(),
        ]
    );
    let copied: Vec<String> = report.copied_files.iter().map(|p| p.display().to_string()).collect();
    assert_eq!(copied, ["1_Pooling/config.json", "1_Pooling/tok.json", "tokenizer.json", "tokenizer_alias.json"]);
    assert!(report.to_string().contains("warning: not copied: `tok` (a symbolic link to a folder"), "{report}");
}

#[test]
fn hub_cache_snapshots_copy_links_into_their_own_blobs_only() {
    let _s = serial();
    // The Hugging Face hub cache: every file of a snapshot links to ../../blobs/<hash>.
    let (hub, out) = (TempDir::new("hub"), TempDir::new("hub-out"));
    let model = hub.path().join("models--org--toy");
    let (blobs, snap) = (model.join("blobs"), model.join("snapshots/0123abcd"));
    fs::create_dir_all(&blobs).unwrap();
    fs::create_dir_all(&snap).unwrap();
    write_weights(&blobs.join("aaa"), 2, 8);
    fs::write(blobs.join("bbb"), r#"{"model_type": "toy"}"#).unwrap();
    fs::write(blobs.join("ccc"), r#"{"version": "hub"}"#).unwrap();
    for (name, blob) in [("model.safetensors", "aaa"), ("config.json", "bbb"), ("tokenizer.json", "ccc")] {
        symlink(format!("../../blobs/{blob}"), snap.join(name)).unwrap();
    }
    // Another model's blob is outside this model.
    let other = hub.path().join("models--org--other/blobs");
    fs::create_dir_all(&other).unwrap();
    fs::write(other.join("ddd"), "other model").unwrap();
    symlink("../../../models--org--other/blobs/ddd", snap.join("vocab.txt")).unwrap();

    let dest = out.path().join("q");
    let report = quantizer(&snap, &dest).run().unwrap();
    let t = tree(&dest);
    assert_eq!(names(&t), ["config.json", "model.safetensors", "tokenizer.json"]);
    assert_eq!(t[2].1.as_deref(), Some(&br#"{"version": "hub"}"#[..]), "copied as a regular file");
    assert_eq!(report.layers.len(), 2);
    assert_eq!(
        report.warnings,
        [format!(
            "not copied: `vocab.txt` (a symbolic link to `{}`, outside the input folder)",
            fs::canonicalize(other.join("ddd")).unwrap().display()
        )]
    );
}

#[test]
fn fifos_and_sockets_are_skipped_without_being_opened() {
    let _s = serial();
    let (inp, out) = (TempDir::new("fifo-in"), TempDir::new("fifo-out"));
    write_model(inp.path(), 2, 8);
    let fifo = inp.path().join("pipe");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
    let _socket = std::os::unix::net::UnixListener::bind(inp.path().join("sock")).unwrap();
    symlink("pipe", inp.path().join("pipe_link")).unwrap(); // a link to a FIFO inside: not opened either

    let dest = out.path().join("q");
    // Opening the FIFO would block forever: run in a thread and release it if that happens.
    let (input, output) = (inp.path().to_path_buf(), dest.clone());
    let run = std::thread::spawn(move || quantizer(&input, &output).run());
    let start = Instant::now();
    while !run.is_finished() {
        if start.elapsed() > Duration::from_secs(120) {
            // Give the blocked reader a writer and an end of file, then fail.
            drop(fs::OpenOptions::new().write(true).open(&fifo));
            let _ = run.join();
            panic!("the run hung opening the FIFO");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let report = run.join().unwrap().unwrap();
    assert_eq!(
        report.warnings,
        [
            "not copied: `pipe` (a FIFO, not a regular file)",
            "not copied: `pipe_link` (a FIFO, not a regular file)",
            "not copied: `sock` (a socket, not a regular file)",
        ]
    );
    assert_eq!(names(&tree(&dest)), ["config.json", "model.safetensors", "tokenizer.json"]);
}

#[test]
fn an_output_created_during_the_run_is_never_replaced_without_force() {
    let _s = serial();
    let (inp, out) = (TempDir::new("race-in"), TempDir::new("race-out"));
    write_model(inp.path(), 3, 8);
    let dest = out.path().join("q");
    let user_file = dest.join("user.txt");
    let e = run_meddling(quantizer(inp.path(), &dest), || {
        fs::create_dir(&dest).unwrap();
        fs::write(&user_file, "the user's work").unwrap();
    })
    .unwrap_err();
    assert!(matches!(e, Error::Output(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "checkpoint error: output `{}` appeared while quantizing (another program or run created it); it was \
             left as it is and this run's result discarded; remove it, choose another folder, or allow overwriting \
             (--force)",
            dest.display()
        )
    );
    assert_eq!(fs::read_to_string(&user_file).unwrap(), "the user's work");
    assert_eq!(names(&tree(&dest)), ["user.txt"]);
    assert_eq!(temp_folders(out.path()), Vec::<String>::new());

    // An empty folder is somebody's too.
    let dest2 = out.path().join("q2");
    let e = run_meddling(quantizer(inp.path(), &dest2), || fs::create_dir(&dest2).unwrap()).unwrap_err();
    assert!(e.to_string().contains("appeared while quantizing"), "{e}");
    assert_eq!(tree(&dest2), []);

    // A file, too.
    let dest3 = out.path().join("q3");
    let e = run_meddling(quantizer(inp.path(), &dest3), || fs::write(&dest3, "a file").unwrap()).unwrap_err();
    assert!(e.to_string().contains("appeared while quantizing"), "{e}");
    assert_eq!(fs::read_to_string(&dest3).unwrap(), "a file");
    assert_eq!(temp_folders(out.path()), Vec::<String>::new());
}

#[test]
fn force_replaces_an_output_created_during_the_run() {
    let _s = serial();
    let (inp, out) = (TempDir::new("force-in"), TempDir::new("force-out"));
    write_model(inp.path(), 3, 8);
    let dest = out.path().join("q");
    let report = run_meddling(quantizer(inp.path(), &dest).overwrite(true), || {
        fs::create_dir(&dest).unwrap();
        fs::write(dest.join("model.safetensors"), "an older checkpoint").unwrap();
        fs::write(dest.join("user.txt"), "replaced, as --force asked").unwrap();
    })
    .unwrap();
    assert_eq!(report.warnings, Vec::<String>::new());
    assert_eq!(names(&tree(&dest)), ["config.json", "model.safetensors", "tokenizer.json"]);
    assert_eq!(Checkpoint::open(&dest).unwrap().quantized_layers(), ["l0", "l1", "l2"]);
    assert_eq!(temp_folders(out.path()), Vec::<String>::new(), "the old copy is removed");

    // A file that appears is not replaced even with --force: it is not a previous output.
    let dest2 = out.path().join("q2");
    let e = run_meddling(quantizer(inp.path(), &dest2).overwrite(true), || fs::write(&dest2, "a file").unwrap())
        .unwrap_err();
    assert_eq!(e.to_string(), format!("checkpoint error: output `{}` exists and is not a folder", dest2.display()));
    assert_eq!(fs::read_to_string(&dest2).unwrap(), "a file");
    assert_eq!(temp_folders(out.path()), Vec::<String>::new());
}

#[test]
fn a_symlink_as_the_output_is_an_existing_output_and_force_replaces_the_link_itself() {
    let _s = serial();
    let (inp, out) = (TempDir::new("link-in"), TempDir::new("link-out"));
    write_model(inp.path(), 2, 8);
    let dest = out.path().join("q");
    let nowhere = out.path().join("nowhere");
    symlink(&nowhere, &dest).unwrap();

    // Without --force: refused before any work, naming the link and where it leads.
    let mut started = false;
    let e = quantizer(inp.path(), &dest).run_with_progress(|_| started = true).unwrap_err();
    assert!(matches!(e, Error::Output(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "checkpoint error: output `{}` already exists: a dangling symbolic link to `{}`; remove it, choose \
             another folder, or allow overwriting (--force), which replaces the link (not what it leads to)",
            dest.display(),
            nowhere.display()
        )
    );
    assert!(!started, "no layer was started");
    assert_eq!(fs::read_link(&dest).unwrap(), nowhere);
    assert_eq!(temp_folders(out.path()), Vec::<String>::new());

    // With --force: the link is replaced by the output; nothing is written where it led.
    let report = quantizer(inp.path(), &dest).overwrite(true).run().unwrap();
    assert_eq!(report.warnings, Vec::<String>::new());
    assert!(!fs::symlink_metadata(&dest).unwrap().is_symlink());
    assert_eq!(Checkpoint::open(&dest).unwrap().quantized_layers(), ["l0", "l1"]);
    assert!(!nowhere.exists());
    assert_eq!(temp_folders(out.path()), Vec::<String>::new());

    // A link to a folder: replaced itself too, the folder it led to left as it was.
    let dest2 = out.path().join("q2");
    let theirs = out.path().join("theirs");
    fs::create_dir(&theirs).unwrap();
    fs::write(theirs.join("user.txt"), "kept").unwrap();
    symlink(&theirs, &dest2).unwrap();
    let e = quantizer(inp.path(), &dest2).run().unwrap_err();
    assert!(e.to_string().contains(&format!("a symbolic link to `{}`", theirs.display())), "{e}");
    quantizer(inp.path(), &dest2).overwrite(true).run().unwrap();
    assert!(!fs::symlink_metadata(&dest2).unwrap().is_symlink());
    assert_eq!(Checkpoint::open(&dest2).unwrap().quantized_layers(), ["l0", "l1"]);
    assert_eq!(names(&tree(&theirs)), ["user.txt"]);
    assert_eq!(temp_folders(out.path()), Vec::<String>::new());
}

#[test]
fn the_old_output_stays_in_place_when_the_commit_fails() {
    let _s = serial();
    let (inp, out) = (TempDir::new("keep-in"), TempDir::new("keep-out"));
    // A single .safetensors file: the final progress call comes right before the commit.
    let file = inp.path().join("w.safetensors");
    write_weights(&file, 2, 8);
    let dest = out.path().join("q");
    fs::create_dir(&dest).unwrap();
    fs::write(dest.join("model.safetensors"), "the previous weights").unwrap();
    fs::write(dest.join("old.txt"), "the previous output").unwrap();
    let parent = out.path().to_path_buf();
    let e = quantizer(&file, &dest)
        .overwrite(true)
        .run_with_progress(|p| {
            if p.layer.is_none() {
                // The finished temporary folder vanishes: moving it into place must fail.
                for name in temp_folders(&parent) {
                    fs::remove_dir_all(parent.join(name)).unwrap();
                }
            }
        })
        .unwrap_err();
    assert!(matches!(&e, Error::Io { op: "moving into place", path, .. } if *path == dest), "{e:?}");
    assert_eq!(names(&tree(&dest)), ["model.safetensors", "old.txt"]);
    assert_eq!(fs::read_to_string(dest.join("old.txt")).unwrap(), "the previous output");
}

#[test]
fn a_255_byte_output_name_works() {
    let _s = serial();
    let (inp, out) = (TempDir::new("long-in"), TempDir::new("long-out"));
    write_model(inp.path(), 2, 8);
    let dest = out.path().join("q".repeat(255));
    let report = quantizer(inp.path(), &dest).run().unwrap();
    assert_eq!(report.layers.len(), 2);
    assert_eq!(Checkpoint::open(&dest).unwrap().quantized_layers(), ["l0", "l1"]);
    assert_eq!(temp_folders(out.path()), Vec::<String>::new());
}

#[test]
fn remove_temp_folders_stops_the_runs_in_progress() {
    let _s = serial();
    let (inp, out) = (TempDir::new("stop-in"), TempDir::new("stop-out"));
    write_model(inp.path(), 3, 8);
    let dest = out.path().join("q");
    let parent = out.path().to_path_buf();
    let mut seen = Vec::new();
    let mut cleanup = quantizer::Cleanup::default();
    let e = run_meddling(quantizer(inp.path(), &dest), || {
        seen = temp_folders(&parent);
        cleanup = quantizer::remove_temp_folders().unwrap();
    })
    .unwrap_err();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(cleanup.unfinished, 1, "{cleanup:?}");
    assert!(matches!(&e, Error::Interrupted { folder } if *folder == parent.join(&seen[0])), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "checkpoint error: the run was interrupted: its temporary output folder `{}` was removed",
            parent.join(&seen[0]).display()
        )
    );
    assert!(!dest.exists());
    assert_eq!(temp_folders(&parent), Vec::<String>::new());
    // Nothing left to remove; later runs are unaffected.
    assert_eq!(quantizer::remove_temp_folders().unwrap().unfinished, 0);
    assert_eq!(quantizer(inp.path(), &dest).run().unwrap().layers.len(), 3);
    // A signal after the output moved into place: nothing of it is removed, and the handler
    // hears that a run finished (the CLI once said "the unfinished output was removed").
    let finished = quantizer::remove_temp_folders().unwrap();
    assert_eq!(finished.unfinished, 0);
    assert!(finished.finished >= 1, "{finished:?}");
    assert_eq!(Checkpoint::open(&dest).unwrap().quantized_layers(), ["l0", "l1", "l2"]);
}
