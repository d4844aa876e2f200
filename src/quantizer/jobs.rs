//! The parallel job runner of a conversion: the calling thread hands the input tensors out in
//! order (quantizing layers on the GPU first when there is one), worker threads copy tensors and
//! quantize layers on the CPU, a thread of its own syncs the output files as they grow, and the
//! run fails with the error of the first job in order that failed, as a run in order would.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use super::output::TmpDir;
use super::tensor_job::{Job, copy, gpu_quantize};
use super::{Backend, LayerReport, Progress, Quantizer};
use crate::checkpoint::{Checkpoint, FileReader, ReadBuf, SafetensorsWriter};
use crate::{Error, QuantizedTensor, Result};

/// A job handed to the workers, with the reader of its input file.
enum Work {
    /// Job `i`: copy the tensor, or quantize the layer on the CPU.
    Run(usize, Arc<FileReader>),
    /// Job `i`, a layer the GPU quantized.
    Quantized(usize, Arc<FileReader>, QuantizedTensor),
}

/// What the threads of a conversion share.
struct Shared {
    /// The first job in order that failed (`usize::MAX` for none): no job after it starts, and
    /// every job before it runs, so the run fails with the error a run in order would give.
    first_failed: AtomicUsize,
    /// The failures, with their job index.
    errors: Mutex<Vec<(usize, Error)>>,
    /// The layer reports, by layer index.
    reports: Mutex<Vec<Option<LayerReport>>>,
}

impl Shared {
    fn fail(&self, job: usize, e: Error) {
        self.errors.lock().unwrap_or_else(PoisonError::into_inner).push((job, e));
        self.first_failed.fetch_min(job, Ordering::Relaxed);
    }

    /// Whether job `i` comes after a failed one.
    fn after_failure(&self, i: usize) -> bool {
        i > self.first_failed.load(Ordering::Relaxed)
    }
}

impl Quantizer {
    /// The worker threads the CPU work runs on.
    fn worker_threads(&self) -> usize {
        self.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from)).max(1)
    }

    /// Runs `jobs` on worker threads, the calling thread handing them out in order (and, with a
    /// GPU, quantizing the layers on it first); returns the layer reports in job order, or the
    /// error of the first job in order that failed.
    pub(super) fn run_jobs(
        &self,
        ckpt: &Checkpoint,
        jobs: &[Job<'_>],
        files: &[SafetensorsWriter],
        backend: &Backend,
        tmp: &TmpDir,
        progress: &mut impl FnMut(Progress<'_>),
    ) -> Result<Vec<LayerReport>> {
        let total = jobs.iter().filter(|j| j.layer.is_some()).count();
        let shared = Shared {
            first_failed: AtomicUsize::new(usize::MAX),
            errors: Mutex::new(Vec::new()),
            reports: Mutex::new(vec![None; total]),
        };
        let threads = self.worker_threads();
        // At most `threads` jobs wait: with a GPU, that bounds the quantized layers held.
        let (tx, rx) = mpsc::sync_channel::<Work>(threads);
        // Only the workers hold the receiver: should they all stop, sending fails instead of
        // waiting forever.
        let rx = Arc::new(Mutex::new(rx));
        // Output files are synced as they grow, on a thread of their own: the final sync of each
        // is then short, and no worker waits for the disk.
        let (sync_tx, sync_rx) = mpsc::channel::<usize>();
        std::thread::scope(|s| {
            let shared_ref = &shared;
            s.spawn(move || {
                for f in sync_rx {
                    if let Err(e) = files[f].sync() {
                        // After every job: a job's own error comes first.
                        shared_ref.fail(jobs.len(), e);
                    }
                }
            });
            for _ in 0..threads {
                let (rx, shared, sync_tx) = (Arc::clone(&rx), &shared, sync_tx.clone());
                s.spawn(move || {
                    // Each worker reads its tensors into one buffer, reused: host memory stays
                    // at one tensor (or copy window) per worker.
                    let mut buf = ReadBuf::default();
                    loop {
                        let work = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        let Ok(work) = work else { break };
                        let i = match &work {
                            Work::Run(i, _) | Work::Quantized(i, ..) => *i,
                        };
                        if shared.after_failure(i) {
                            continue;
                        }
                        let job = &jobs[i];
                        let result = tmp.ensure_live().and_then(|()| match work {
                            Work::Run(_, reader) if job.layer.is_none() => {
                                copy(ckpt, &reader, job, &files[job.out], &mut buf)
                            }
                            Work::Run(_, reader) => self.layer(ckpt, &reader, job, &files[job.out], None, &mut buf),
                            Work::Quantized(_, reader, q) => {
                                self.layer(ckpt, &reader, job, &files[job.out], Some(q), &mut buf)
                            }
                        });
                        if files[job.out].sync_due() {
                            let _ = sync_tx.send(job.out);
                        }
                        match result {
                            Ok(Some(report)) => {
                                let (_, index) = job.layer.expect("a report is a layer's");
                                shared.reports.lock().unwrap_or_else(PoisonError::into_inner)[index] = Some(report);
                            }
                            Ok(None) => {}
                            Err(e) => shared.fail(i, e),
                        }
                    }
                });
            }
            drop((rx, sync_tx));
            // The reader of the input file being handed out; a file's handle closes when its
            // last job is done.
            let mut reader: Option<(usize, Arc<FileReader>)> = None;
            // The GPU's inputs are read into this thread's own buffer.
            let mut buf = ReadBuf::default();
            for (i, job) in jobs.iter().enumerate() {
                if shared.after_failure(i) {
                    break;
                }
                let file = job.info.file;
                let r = match &reader {
                    Some((f, r)) if *f == file => Arc::clone(r),
                    _ => match ckpt.open_reader(file) {
                        Ok(r) => Arc::clone(&reader.insert((file, Arc::new(r))).1),
                        Err(e) => {
                            shared.fail(i, e);
                            break;
                        }
                    },
                };
                let work = match (job.layer, backend) {
                    (Some((p, index)), Backend::Gpu(gpu)) => {
                        progress(Progress { done: index, total, layer: Some(p) });
                        match gpu_quantize(gpu, ckpt, &r, job, self.scheme, &mut buf) {
                            Ok(q) => Work::Quantized(i, r, q),
                            Err(e) => {
                                shared.fail(i, e);
                                break;
                            }
                        }
                    }
                    (Some((p, index)), Backend::Cpu) => {
                        progress(Progress { done: index, total, layer: Some(p) });
                        Work::Run(i, r)
                    }
                    (None, _) => Work::Run(i, r),
                };
                if tx.send(work).is_err() {
                    break;
                }
            }
            drop(tx);
        });
        let errors = shared.errors.into_inner().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, e)) = errors.into_iter().min_by_key(|e| e.0) {
            return Err(e);
        }
        let reports = shared.reports.into_inner().unwrap_or_else(PoisonError::into_inner);
        Ok(reports.into_iter().map(|r| r.expect("every layer finished")).collect())
    }
}
