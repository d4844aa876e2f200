//! `int8-wgpu quantize` on input files that another program truncates, writes back or rewrites
//! in place while they are read: the run fails cleanly or writes one model's right output, never
//! dies of a signal (the library's reads: tests/checkpoint_truncation.rs).

mod common;

use common::TempDir;

use std::fs;
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::truncation::{truncate, write_back, write_layers_and_embed as write_model};

/// Every file under `dir` with its bytes, relative paths sorted.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.strip_prefix(dir).unwrap().to_path_buf(), fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    v
}

/// Runs `int8-wgpu quantize` on `input` into `output` (`--cpu` when `cpu`); meanwhile, after
/// `delay`, truncates `input/model.safetensors` to `len`, waits `hold` and writes `good` back.
/// Returns the exit status and stderr.
fn disturbed_run(
    exe: &str,
    input: &Path,
    output: &Path,
    cpu: bool,
    good: &[u8],
    disturb: Option<(Duration, u64, Duration)>,
) -> (std::process::ExitStatus, String) {
    let mut cmd = Command::new(exe);
    cmd.arg("quantize").arg(input).arg(output).args(["--eval-rows", "8"]);
    if cpu {
        cmd.arg("--cpu");
    }
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    if let Some((delay, len, hold)) = disturb {
        let file = input.join("model.safetensors");
        std::thread::sleep(delay);
        truncate(&file, len);
        std::thread::sleep(hold);
        write_back(&file, good);
    }
    let o = child.wait_with_output().unwrap();
    (o.status, String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn cli_runs_whose_input_is_truncated_fail_cleanly_or_write_the_right_output() {
    let exe = env!("CARGO_BIN_EXE_int8-wgpu");
    let inp = TempDir::new("trunc-cli-in");
    write_model(inp.path(), 6, 512);
    let good = fs::read(inp.path().join("model.safetensors")).unwrap();
    let out = TempDir::new("trunc-cli-out");
    let gpu = common::gpu().is_some();
    // Undisturbed runs: the output every successful run must write, and how long a run takes.
    let want = {
        let dest = out.path().join("want");
        let start = Instant::now();
        let (status, err) = disturbed_run(exe, inp.path(), &dest, true, &good, None);
        assert!(status.success(), "{err}");
        (snapshot(&dest), start.elapsed())
    };
    let (want, run_time) = want;
    if gpu {
        let dest = out.path().join("want-gpu");
        let (status, err) = disturbed_run(exe, inp.path(), &dest, false, &good, None);
        assert!(status.success(), "{err}");
        assert_eq!(snapshot(&dest), want, "GPU and CPU outputs differ");
    }
    let lens = [0, 8, good.len() as u64 / 3, good.len() as u64 * 2 / 3, good.len() as u64 - 1];
    let runs = 60 + if gpu { 6 } else { 0 };
    let (mut succeeded, mut failed) = (0, Vec::new());
    for i in 0..runs {
        let cpu = i < 60;
        let dest = out.path().join(format!("run{i}"));
        // Delays spread over the run (a GPU run starts slower: opening the device).
        let span = run_time.as_micros() as u64 * if cpu { 1 } else { 4 };
        let delay = Duration::from_micros(span * (i as u64 * 7 % 60) / 60);
        let hold = Duration::from_micros(500 * (i as u64 % 5));
        let (status, err) =
            disturbed_run(exe, inp.path(), &dest, cpu, &good, Some((delay, lens[i % lens.len()], hold)));
        assert_eq!(status.signal(), None, "run {i} died of a signal; stderr:\n{err}");
        assert!(!err.contains("panicked"), "run {i} panicked:\n{err}");
        if status.success() {
            assert_eq!(snapshot(&dest), want, "run {i} succeeded with another output");
            succeeded += 1;
        } else {
            assert_eq!(status.code(), Some(1), "run {i}: {err}");
            assert!(err.starts_with("error: "), "run {i}: {err}");
            assert!(!dest.exists(), "run {i} failed and left its output");
            failed.push(err);
        }
    }
    // Nothing half-written: only the outputs of successful runs are there.
    let left = fs::read_dir(out.path()).unwrap().count();
    assert_eq!(left, succeeded + 1 + usize::from(gpu), "temporary folders left behind");
    eprintln!("{succeeded} runs wrote the right output, {} failed; the failures:", failed.len());
    failed.sort();
    failed.dedup();
    for e in &failed {
        eprint!("  {e}");
    }
}

/// The input rewritten in place, at the same size and with the same header, by another model's
/// bytes (as `dd conv=notrunc` or `rsync --inplace` do) at points spread over the run: each run
/// writes the output of one model or fails cleanly, never a mix of the two (which runs that
/// checked only the size wrote).
#[test]
fn cli_runs_whose_input_is_rewritten_in_place_write_one_models_output_or_fail() {
    let exe = env!("CARGO_BIN_EXE_int8-wgpu");
    let (a_dir, b_dir) = (TempDir::new("inplace-a"), TempDir::new("inplace-b"));
    write_model(a_dir.path(), 6, 512);
    let a = fs::read(a_dir.path().join("model.safetensors")).unwrap();
    // Model B: the same header, other data (every data byte of each 4-byte float's low byte).
    let header_end = 8 + u64::from_le_bytes(a[..8].try_into().unwrap()) as usize;
    let mut b = a.clone();
    for v in b[header_end..].iter_mut().step_by(4) {
        *v ^= 0x5A;
    }
    fs::write(b_dir.path().join("model.safetensors"), &b).unwrap();
    fs::copy(a_dir.path().join("config.json"), b_dir.path().join("config.json")).unwrap();
    let out = TempDir::new("inplace-out");
    let run = |input: &Path, dest: &Path| {
        let start = Instant::now();
        let (status, err) = disturbed_run(exe, input, dest, true, &[], None);
        assert!(status.success(), "{err}");
        (snapshot(dest), start.elapsed())
    };
    let (want_a, run_time) = run(a_dir.path(), &out.path().join("want-a"));
    let (want_b, _) = run(b_dir.path(), &out.path().join("want-b"));
    assert_ne!(want_a, want_b);
    let file = a_dir.path().join("model.safetensors");
    let (mut outputs, mut failed) = ([0, 0], 0);
    for i in 0..24u64 {
        fs::write(&file, &a).unwrap();
        // File times are coarse (a clock tick): the rewrite must come in a later tick than
        // the write the run starts from, as any real rewrite does.
        std::thread::sleep(Duration::from_millis(20));
        let dest = out.path().join(format!("run{i}"));
        let child = Command::new(exe)
            .arg("quantize")
            .arg(a_dir.path())
            .arg(&dest)
            .args(["--eval-rows", "8", "--cpu"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(run_time.as_micros() as u64 * (i * 5 % 24) / 24));
        fs::OpenOptions::new().write(true).open(&file).unwrap().write_all_at(&b, 0).unwrap();
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.signal(), None, "run {i} died of a signal:\n{err}");
        if o.status.success() {
            let got = snapshot(&dest);
            let which = [&want_a, &want_b].iter().position(|w| **w == got);
            let which = which.unwrap_or_else(|| panic!("run {i} succeeded with a mix of the two models"));
            outputs[which] += 1;
        } else {
            assert!(err.contains("was modified while it was being read") || err.contains("changed"), "run {i}: {err}");
            assert!(!dest.exists(), "run {i} failed and left its output");
            failed += 1;
        }
    }
    eprintln!("{} runs wrote model A's output, {} model B's, {failed} failed cleanly", outputs[0], outputs[1]);
}
