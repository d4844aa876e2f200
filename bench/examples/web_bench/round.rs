//! One round of the browser bench (`scripts/web-bench.sh`): the same cases natively (the
//! `web_bench` example, whose module this is) and in Chromium (`web/tests/browser/bench.rs`, which includes this file),
//! one sample per case, printed as [`Sample::line`]s. The script interleaves the two
//! platforms' rounds on the shared cores, and the example's `--table` mode prints the medians.
//!
//! Linear layers are timed by [`Gpu::time_pass_async`] (GPU timestamps where the adapter has
//! them); quantization by the caller's wall clock around `quantize_tensor_async` (its flag
//! readback included), as the library records no quantization into a pass.

use std::time::Duration;

use int8_wgpu::gpu::{Timing, TimingSource};
use int8_wgpu::{ActivationQuant, DType, Gpu, GpuTensor, QuantScheme, QuantizedLinear, Result};

/// Weight shapes `[out, in]`.
pub const SHAPES: [[usize; 2]; 2] = [[1536, 384], [4096, 4096]];

/// Activation rows of the linear layers.
pub const ROWS: [usize; 2] = [1, 8];

/// Marks a sample's line in the output (a browser's console lines come back among others).
pub const MARK: &str = "WEBBENCH";

/// The layers timed at each shape and row count: name, activation dtype, int8 activations.
pub const LAYERS: [(&str, DType, bool); 3] =
    [("W8A32 f32", DType::F32, false), ("W8A16 bf16", DType::BF16, false), ("W8A8 bf16", DType::BF16, true)];

/// One measured case of one round.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// `quantize` or a layer of [`LAYERS`].
    pub job: String,
    /// The weight's `[out, in]`.
    pub shape: [usize; 2],
    /// Activation rows (0 for quantization).
    pub rows: usize,
    /// The kernel the library picked (`Gpu::linear_kernel`); `quantize` for quantization.
    pub kernel: String,
    /// `ts` (GPU timestamps), `wall` (one submission until idle) or `host` (the caller's clock).
    pub timer: String,
    /// Microseconds per forward or per quantization.
    pub us: f64,
}

impl Sample {
    /// The line a round prints for this sample on `platform` (`native` or `browser`).
    pub fn line(&self, platform: &str) -> String {
        let [n, k] = self.shape;
        let job = self.job.replace(' ', "_");
        format!("{MARK} {platform} {job} {n}x{k} {} {} {} {:.1}", self.rows, self.kernel, self.timer, self.us)
    }

    /// Parses a [`Sample::line`] found anywhere in `line`: the platform and the sample.
    pub fn parse(line: &str) -> Option<(String, Sample)> {
        let at = line.find(MARK)?;
        let f: Vec<&str> = line[at..].split_whitespace().collect();
        let [_, platform, job, shape, rows, kernel, timer, us] = f[..] else { return None };
        let (n, k) = shape.split_once('x')?;
        let sample = Sample {
            job: job.replace('_', " "),
            shape: [n.parse().ok()?, k.parse().ok()?],
            rows: rows.parse().ok()?,
            kernel: kernel.into(),
            timer: timer.into(),
            us: us.parse().ok()?,
        };
        Some((platform.into(), sample))
    }
}

/// Deterministic weights in [-0.05, 0.05) (xorshift), the same on both platforms.
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 23) as f32 - 1.0) * 0.05
        })
        .collect()
}

/// Times every case once, after one untimed run each: quantization of each shape, then each
/// layer at each row count, repetitions sized so that a sample lasts about `min`. `now_ms` is
/// the platform's wall clock in milliseconds; each sample goes to `out` as it is measured.
pub async fn round(gpu: &Gpu, min: Duration, now_ms: &dyn Fn() -> f64, out: &mut dyn FnMut(Sample)) -> Result<()> {
    let scheme = QuantScheme::default();
    for shape in SHAPES {
        let [n, k] = shape;
        let w = GpuTensor::from_host(gpu, &values(n * k, 1), &[n, k])?;
        // Quantization: wall clock of whole calls, repeated to last about `min`.
        let mut q = gpu.quantize_tensor_async(&w, scheme).await?;
        let (mut calls, start) = (0u32, now_ms());
        while calls == 0 || now_ms() - start < min.as_secs_f64() * 1e3 {
            q = gpu.quantize_tensor_async(&w, scheme).await?;
            calls += 1;
        }
        let us = (now_ms() - start) * 1e3 / f64::from(calls);
        out(Sample { job: "quantize".into(), shape, rows: 0, kernel: "quantize".into(), timer: "host".into(), us });
        drop(w);
        for m in ROWS {
            for (job, dtype, a8) in LAYERS {
                let mut layer = QuantizedLinear::from_gpu::<f32>(q.clone(), None, dtype)?;
                let act = a8.then(ActivationQuant::per_token);
                if let Some(act) = act {
                    layer = layer.with_activation_quant(act)?;
                }
                let kernel = gpu.linear_kernel(layer.weight(), dtype, act, m).to_string();
                let x = input(gpu, m * k, dtype)?.reshape(&[m, k])?;
                let y = GpuTensor::zeros(gpu, &[m, n], dtype)?;
                let (l, xr, yr) = (&layer, &x, &y);
                let time = move |iters| gpu.time_pass_async(iters, move |pass| l.record(pass, xr, yr));
                time(1).await?;
                let one = time(1).await?.per_iter.as_secs_f64().max(1e-7);
                let iters = (min.as_secs_f64() / one).ceil().clamp(1.0, 1000.0) as u32;
                let t = time(iters).await?;
                out(Sample { job: job.into(), shape, rows: m, kernel, timer: timer(&t).into(), us: us_of(&t) });
            }
        }
    }
    Ok(())
}

fn us_of(t: &Timing) -> f64 {
    t.per_iter.as_secs_f64() * 1e6
}

fn timer(t: &Timing) -> &'static str {
    match t.source {
        TimingSource::GpuTimestamps => "ts",
        TimingSource::WallClock => "wall",
    }
}

/// A fixed activation of `len` values in `dtype`, in [-1, 1].
fn input(gpu: &Gpu, len: usize, dtype: DType) -> Result<GpuTensor> {
    let v: Vec<f32> = (0..len).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect();
    match dtype {
        DType::BF16 => {
            GpuTensor::from_host(gpu, &v.iter().map(|&x| half::bf16::from_f32(x)).collect::<Vec<_>>(), &[len])
        }
        DType::F16 => GpuTensor::from_host(gpu, &v.iter().map(|&x| half::f16::from_f32(x)).collect::<Vec<_>>(), &[len]),
        DType::F32 => GpuTensor::from_host(gpu, &v, &[len]),
    }
}
