//! Input files that another program truncates (and writes back) while they are read: every
//! read is the file's bytes or an `Error::Corrupt`, never a signal (a memory map of a file that
//! shrinks faults with SIGBUS), through the library (the CLI's runs: cli/tests/cli_truncation.rs).

mod common;

use common::TempDir;

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use int8_wgpu::checkpoint::Checkpoint;
use int8_wgpu::quantizer::Quantizer;
use int8_wgpu::{Error, QuantizedTensor};

use common::truncation::{truncate, write_back, write_layers_and_embed as write_model};

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
