//! The CLI under signals: SIGINT and SIGTERM remove the temporary folder, and a later run
//! removes those of killed runs.

#![cfg(unix)]

mod common;

use common::TempDir;

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use int8_wgpu::checkpoint::Checkpoint;

use common::square::{temp_folders, write_model};

fn exe() -> Option<&'static str> {
    common::cli_exe()
}

/// A model whose error evaluation takes long enough to interrupt: 3 layers of 512x512 with
/// `--eval-rows 4096` (the most allowed) are some 6 billion multiply-adds.
fn slow_model(name: &str) -> TempDir {
    let inp = TempDir::new(name);
    write_model(inp.path(), 3, 512);
    inp
}

fn spawn_quantize(exe: &str, input: &Path, output: &Path, eval_rows: &str) -> Child {
    Command::new(exe)
        .arg("quantize")
        .arg(input)
        .arg(output)
        .args(["--cpu", "--eval-rows", eval_rows])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the run's temporary folder is in `parent`, and returns its name.
fn wait_for_temp_folder(child: &mut Child, parent: &Path) -> String {
    let start = Instant::now();
    loop {
        if let Some(name) = temp_folders(parent).pop() {
            return name;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before its temporary folder appeared");
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no temporary folder appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for the child to exit; kills it (and fails) if it does not within two minutes.
fn wait_exit(mut child: Child) -> (std::process::ExitStatus, String) {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("the run did not exit after the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    (o.status, String::from_utf8_lossy(&o.stderr).into_owned())
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: sending a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

#[test]
fn sigint_and_sigterm_remove_the_temporary_folder() {
    let Some(exe) = exe() else { return };
    let inp = slow_model("sig-in");
    for (sig, code, name) in [(libc::SIGTERM, 143, "SIGTERM"), (libc::SIGINT, 130, "SIGINT")] {
        let out = TempDir::new("sig-out");
        let dest = out.path().join("q");
        let mut child = spawn_quantize(exe, inp.path(), &dest, "4096");
        wait_for_temp_folder(&mut child, out.path());
        signal(&child, sig);
        let (status, stderr) = wait_exit(child);
        assert_eq!(status.code(), Some(code), "{name}: {status}\n{stderr}");
        assert!(
            stderr.ends_with(&format!("interrupted by {name}; the unfinished output was removed\n")),
            "{name}: {stderr}"
        );
        assert_eq!(temp_folders(out.path()), Vec::<String>::new(), "{name}");
        assert!(!dest.exists(), "{name}");
    }
}

#[test]
fn a_later_run_removes_the_temporary_folders_of_killed_runs() {
    let Some(exe) = exe() else { return };
    let inp = slow_model("kill-in");
    let out = TempDir::new("kill-out");
    let dest = out.path().join("q");
    let mut child = spawn_quantize(exe, inp.path(), &dest, "4096");
    let killed = wait_for_temp_folder(&mut child, out.path());
    let dead_pid = child.id();
    signal(&child, libc::SIGKILL);
    let (status, _) = wait_exit(child);
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
    assert_eq!(temp_folders(out.path()), std::slice::from_ref(&killed), "kill -9 leaves its folder");

    // Only folders holding the lock file this tool writes are removed: a folder named like a
    // killed run's that another program made is left alone, as are a live process's (ours),
    // anything not of our naming, and older versions' `.<output>.int8-wgpu-tmp-<pid>-<nanos>`
    // and `<that>.old` (which may hold the only copy of a previous output).
    let mine = format!(".int8-wgpu-tmp-{}-77", std::process::id());
    let impostor = format!(".int8-wgpu-tmp-{dead_pid}-5");
    let legacy = format!(".q.int8-wgpu-tmp-{dead_pid}-1700000000000000000");
    let legacy_old = format!("{legacy}.old");
    let unrelated = format!(".int8-wgpu-tmp-{dead_pid}-x");
    for name in [&mine, &impostor, &legacy, &legacy_old, &unrelated] {
        fs::create_dir(out.path().join(name)).unwrap();
        fs::write(out.path().join(name).join("f.txt"), "x").unwrap();
    }

    let o = Command::new(exe)
        .arg("quantize")
        .arg(inp.path())
        .arg(out.path().join("q2"))
        .args(["--cpu", "--eval-rows", "0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let mut left = temp_folders(out.path());
    left.sort();
    let mut want = vec![mine, impostor, legacy, legacy_old, unrelated];
    want.sort();
    assert_eq!(left, want);
    assert!(!out.path().join(&killed).exists());
    assert_eq!(Checkpoint::open(out.path().join("q2")).unwrap().quantized_layers(), ["l0", "l1", "l2"]);
}
