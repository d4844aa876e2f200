//! Input files that another program truncates (and writes back) while they are read: every
//! read is the file's bytes or an `Error::Corrupt`, never a signal (a memory map of a file that
//! shrinks faults with SIGBUS), through the library and through the CLI.

mod common;

use common::TempDir;

use std::fs;
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use int8_wgpu::checkpoint::Checkpoint;
use int8_wgpu::quantizer::Quantizer;
use int8_wgpu::{Error, QuantizedTensor};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

/// Writes F32 layers `l{i}.weight` of `[n, n]` and an F32 `embed.weight` of `[n, n]` into
/// `dir/model.safetensors`, with a `config.json`; returns the tensors' bytes by name.
fn write_model(dir: &Path, layers: usize, n: usize) -> Vec<(String, Vec<u8>)> {
    let mut tensors: Vec<(String, Vec<u8>)> = (0..layers)
        .map(|i| (format!("l{i}.weight"), bytemuck::cast_slice(&common::rand_vec(n * n, 7 + i as u64)).to_vec()))
        .collect();
    tensors.push(("embed.weight".into(), bytemuck::cast_slice(&common::rand_vec(n * n, 3)).to_vec()));
    let views = tensors.iter().map(|(name, d)| (name.as_str(), TensorView::new(Dtype::F32, vec![n, n], d).unwrap()));
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    fs::write(dir.join("config.json"), r#"{"model_type": "toy"}"#).unwrap();
    tensors
}

fn truncate(file: &Path, len: u64) {
    fs::OpenOptions::new().write(true).open(file).unwrap().set_len(len).unwrap();
}

/// Writes `bytes` back over `file` in place (extending it again after a truncation).
fn write_back(file: &Path, bytes: &[u8]) {
    fs::OpenOptions::new().write(true).open(file).unwrap().write_all_at(bytes, 0).unwrap();
}

/// Asserts `e` is the error of a file that changed while it was read: its size, or (a
/// truncation and a rewrite to the same size) its modification time; of a named tensor, or not.
fn assert_changed_size(e: &Error, ctx: &str) {
    let inner = match e {
        Error::Tensor { source, .. } => source,
        e => e,
    };
    assert!(matches!(inner, Error::Corrupt(_)), "{ctx}: {e:?}");
    let m = e.to_string();
    assert!(
        m.contains("changed size while it was being read") || m.contains("was modified while it was being read"),
        "{ctx}: {e}"
    );
}

/// Sets `flag` when dropped: a panicking reader still stops the writer thread of its scope.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A quantized checkpoint of the model, with its own bytes and the quantized tensors of its
/// layers read while it was untouched.
struct Quantized {
    _dirs: (TempDir, TempDir),
    folder: PathBuf,
    file: PathBuf,
    good: Vec<u8>,
    layers: Vec<(String, QuantizedTensor)>,
    embed: Vec<u8>,
}

fn quantized(name: &str, layers: usize, n: usize) -> Quantized {
    let (inp, out) = (TempDir::new(&format!("{name}-in")), TempDir::new(&format!("{name}-out")));
    let tensors = write_model(inp.path(), layers, n);
    let folder = out.path().join("q");
    Quantizer::new(inp.path(), &folder).cpu().eval_rows(0).exclude("embed*").run().unwrap();
    let file = folder.join("model.safetensors");
    let ck = Checkpoint::open(&folder).unwrap();
    let layers = ck.quantized_layers().into_iter().map(|l| (l.clone(), ck.quantized_tensor(&l).unwrap())).collect();
    let embed = tensors.iter().find(|(n, _)| n == "embed.weight").unwrap().1.clone();
    let good = fs::read(&file).unwrap();
    Quantized { _dirs: (inp, out), folder, file, good, layers, embed }
}

#[test]
fn bytes_read_before_a_truncation_stay_readable_and_later_reads_are_errors() {
    let q = quantized("trunc-lib", 2, 64);
    let ck = Checkpoint::open(&q.folder).unwrap();
    let bytes = ck.bytes("embed.weight").unwrap();
    let (layer, want) = &q.layers[0];
    truncate(&q.file, 8);
    // Bytes handed out before the truncation are the tensor's (a slice of a map of the file
    // faulted here with SIGBUS).
    assert_eq!(&bytes[..], q.embed.as_slice());
    assert_changed_size(&ck.bytes("embed.weight").unwrap_err(), "bytes");
    assert_changed_size(&ck.tensor_f32("embed.weight").unwrap_err(), "tensor_f32");
    assert_changed_size(&ck.quantized_tensor(layer).unwrap_err(), "quantized_tensor");
    if let Some(gpu) = common::gpu() {
        assert_changed_size(&ck.linear(&gpu, layer).unwrap_err(), "linear");
    }
    // Written back to the same size: the checkpoint opened before still refuses it (its bytes
    // were modified since its header was checked); one opened anew reads it.
    write_back(&q.file, &q.good);
    assert_changed_size(&ck.quantized_tensor(layer).unwrap_err(), "written back");
    let ck = Checkpoint::open(&q.folder).unwrap();
    assert_eq!(&ck.quantized_tensor(layer).unwrap(), want);
    assert_eq!(&ck.bytes("embed.weight").unwrap()[..], q.embed.as_slice());
}

#[test]
fn reads_racing_truncations_are_the_bytes_or_an_error_never_a_signal() {
    // A thread truncates the file to various lengths and writes it back while this one reads
    // whole tensors: each read is the tensor or an error, whenever the truncation lands.
    let q = quantized("trunc-race", 2, 1024);
    let stop = AtomicBool::new(false);
    let (mut ok, mut failed) = (0, 0);
    std::thread::scope(|s| {
        s.spawn(|| {
            let lens = [0, 8, q.good.len() as u64 / 2, q.good.len() as u64 - 1];
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                truncate(&q.file, lens[i % lens.len()]);
                std::thread::sleep(Duration::from_micros(200 + 300 * (i % 3) as u64));
                write_back(&q.file, &q.good);
                // Now and then a quiet spell, in which a checkpoint opened anew reads its tensors.
                let quiet = if i % 8 == 7 { 30_000 } else { 100 + 500 * (i % 4) as u64 };
                std::thread::sleep(Duration::from_micros(quiet));
                i += 1;
            }
        });
        let _stop = StopOnDrop(&stop);
        let gpu = common::gpu();
        let start = Instant::now();
        let mut round = 0;
        while start.elapsed() < Duration::from_millis(1500) || ok == 0 || failed == 0 {
            assert!(start.elapsed() < Duration::from_secs(60), "{ok} reads succeeded, {failed} failed");
            let ck = match Checkpoint::open(&q.folder) {
                Ok(ck) => ck,
                Err(_) => continue,
            };
            let (layer, want) = &q.layers[round % q.layers.len()];
            let results = [
                ck.bytes("embed.weight").map(|b| assert_eq!(&b[..], q.embed.as_slice())),
                ck.tensor_f32("embed.weight").map(|v| assert_eq!(bytemuck::cast_slice::<f32, u8>(&v), q.embed)),
                ck.quantized_tensor(layer).map(|t| assert_eq!(&t, want)),
                match &gpu {
                    Some(gpu) if round % 8 == 0 => ck.linear(gpu, layer).map(drop),
                    _ => Ok(()),
                },
            ];
            for (i, r) in results.into_iter().enumerate() {
                match r {
                    Ok(()) => ok += 1,
                    Err(e) => {
                        assert_changed_size(&e, &format!("read {i} of round {round}"));
                        failed += 1;
                    }
                }
            }
            round += 1;
        }
        stop.store(true, Ordering::Relaxed);
    });
    eprintln!("{ok} reads were the tensor, {failed} were errors");
}

// ---- The CLI ---------------------------------------------------------------------------------

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
    let Some(exe) = option_env!("CARGO_BIN_EXE_int8-wgpu") else {
        eprintln!("SKIPPED: the CLI is not built (feature `cli` off)");
        return;
    };
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
    let Some(exe) = option_env!("CARGO_BIN_EXE_int8-wgpu") else {
        eprintln!("SKIPPED: the CLI is not built (feature `cli` off)");
        return;
    };
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
