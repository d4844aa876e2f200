//! Timing GPU work, for tuning (`linear/tune_measure.rs`) and for profiling ([`Gpu::time_pass`]):
//! GPU timestamps when the device has them, else wall clock.

use std::time::{Duration, Instant};

use crate::gpu::Gpu;
use crate::gpu::timing_repeat::{Outcome, Reading, until_advances};
use crate::{Error, Result};

/// How a GPU time was measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimingSource {
    /// `TIMESTAMP_QUERY` at the start and end of one compute pass holding every iteration:
    /// kernel time, no submission or readback overhead.
    GpuTimestamps,
    /// Wall clock from submitting one command buffer holding every iteration until the device
    /// is idle: includes submission and synchronisation overhead.
    WallClock,
}

/// Time per iteration of some GPU work, and how it was measured.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Duration of one iteration.
    pub per_iter: Duration,
    /// Iterations that were measured together: more than asked for where the timestamps were
    /// too coarse for that many ([`Gpu::time_pass`]).
    pub iters: u32,
    /// What the figure includes.
    pub source: TimingSource,
}

/// Records `iters` repetitions of `record` into one compute pass (after `before` on the
/// encoder) and times them. Natively the device is waited for before and after the submission
/// (the wall clock's span); a browser cannot wait and has no wall clock here, so it times by
/// the timestamps alone, whose readback is what waits for the work. Where the stamps come out
/// equal (a browser's coarse timestamps), the pass is timed again with more repetitions
/// (`timing_repeat.rs`); [`Timing::iters`] says how many were timed.
pub(crate) async fn time_passes(
    gpu: &Gpu,
    iters: u32,
    before: impl Fn(&mut wgpu::CommandEncoder),
    record: impl Fn(&mut wgpu::ComputePass<'_>),
) -> Result<Timing> {
    let outcome = until_advances(iters, |n| time_pass_once(gpu, n, &before, &record)).await?;
    Ok(match outcome {
        Outcome::Ticks { iters, ticks } => {
            let ns = ticks as f64 * f64::from(gpu.queue().get_timestamp_period());
            Timing {
                per_iter: Duration::from_secs_f64(ns * 1e-9 / f64::from(iters)),
                iters,
                source: TimingSource::GpuTimestamps,
            }
        }
        Outcome::Wall { iters, wall } => Timing { per_iter: wall / iters, iters, source: TimingSource::WallClock },
        Outcome::NoClock { .. } => {
            return Err(Error::Unsupported(
                "timing in a browser needs GPU timestamps that advance (timestamp-query): there is no wall clock here"
                    .into(),
            ));
        }
    })
}

/// One pass of `iters` repetitions, submitted alone: its timestamps and wall-clock span.
async fn time_pass_once(
    gpu: &Gpu,
    iters: u32,
    before: &impl Fn(&mut wgpu::CommandEncoder),
    record: &impl Fn(&mut wgpu::ComputePass<'_>),
) -> Result<Reading> {
    let device = gpu.device();
    let mut enc = device.create_command_encoder(&Default::default());
    before(&mut enc);
    let stamps = gpu.capabilities().timestamps.then(|| {
        let set = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("int8-wgpu timing"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let resolve = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("int8-wgpu timing"),
            size: 16,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        (set, resolve)
    });
    {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("int8-wgpu timed"),
            timestamp_writes: stamps.as_ref().map(|(set, _)| wgpu::ComputePassTimestampWrites {
                query_set: set,
                beginning_of_pass_write_index: Some(0),
                end_of_pass_write_index: Some(1),
            }),
        });
        for _ in 0..iters {
            record(&mut pass);
        }
    }
    if let Some((set, resolve)) = &stamps {
        enc.resolve_query_set(set, 0..2, resolve, 0);
    }
    wait_idle(gpu)?;
    let start = now();
    gpu.queue().submit([enc.finish()]);
    wait_idle(gpu)?;
    let wall = start.map(|s| s.elapsed());
    let ticks = match &stamps {
        Some((_, resolve)) => {
            let b = gpu.read_bytes(resolve, 0, 16).await?;
            let stamp = |r: std::ops::Range<usize>| {
                b[r].try_into().map(u64::from_le_bytes).map_err(|_| Error::Gpu("timestamp".into()))
            };
            Some((stamp(0..8)?, stamp(8..16)?))
        }
        None => None,
    };
    Ok(Reading { ticks, wall })
}

/// Waits until the device is idle (natively; a browser cannot block, see [`time_passes`]).
fn wait_idle(gpu: &Gpu) -> Result<()> {
    #[cfg(not(target_arch = "wasm32"))]
    return gpu.synchronize();
    #[cfg(target_arch = "wasm32")]
    {
        let _ = gpu;
        Ok(())
    }
}

/// The wall clock, where there is one (`Instant::now` panics on `wasm32-unknown-unknown`).
fn now() -> Option<Instant> {
    #[cfg(not(target_arch = "wasm32"))]
    return Some(Instant::now());
    #[cfg(target_arch = "wasm32")]
    None
}

impl Gpu {
    /// Times `iters` repetitions of what `record` records into one compute pass, for profiling
    /// a layer ([`QuantizedLinear::record`](crate::QuantizedLinear::record),
    /// [`QuantizedLinear::record_stage`](crate::QuantizedLinear::record_stage)) or an
    /// application's own kernels: kernel time from GPU timestamps around the pass where the
    /// device has `TIMESTAMP_QUERY`, else the wall clock of its one submission until the device
    /// is idle. Waits for the device before and after. Where the timestamps come out equal (too
    /// coarse for one pass, as a browser's may be), the pass is timed again with twice the
    /// repetitions, up to 1024 times `iters`, so `record` may run more often than `iters`:
    /// [`Timing::iters`] says how many were timed. The first error `record` returns is
    /// returned (what was recorded still runs). In a browser use [`Gpu::time_pass_async`].
    pub fn time_pass(&self, iters: u32, record: impl Fn(&mut wgpu::ComputePass<'_>) -> Result<()>) -> Result<Timing> {
        self.block_on(self.time_pass_async(iters, record))
    }

    /// [`Gpu::time_pass`] without blocking, for a browser: it awaits the timestamps' readback
    /// instead of waiting for the device, and needs timestamps that advance there within 1024
    /// times `iters` repetitions (a browser has no wall clock here: else
    /// [`Error::Unsupported`]).
    pub async fn time_pass_async(
        &self,
        iters: u32,
        record: impl Fn(&mut wgpu::ComputePass<'_>) -> Result<()>,
    ) -> Result<Timing> {
        let failed = std::cell::Cell::new(None);
        let timing = time_passes(
            self,
            iters,
            |_| {},
            |pass| {
                if let Err(e) = record(pass) {
                    failed.replace(failed.take().or(Some(e)));
                }
            },
        )
        .await?;
        failed.into_inner().map_or(Ok(timing), Err)
    }
}
