//! [`Gpu::tune`]: times every candidate kernel of the fused linear on the real layer, in
//! interleaved rounds, and records the fastest (the heuristic's choice within a margin) in the
//! device's tuning table (`tune_table.rs`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::gpu::linear::choose::{a8_gemm_past_loop_limit, choose_kernel, class_of, resolve};
use crate::gpu::linear::facts::{DeviceFacts, WeightFacts};
use crate::gpu::linear::kernel::LinearKernel;
use crate::gpu::linear::loop_limit::Chooser;
use crate::gpu::linear::plan::{Bound, LinearPlan};
use crate::gpu::linear::tune_table::TuneClass;
use crate::gpu::options::TuneOptions;
use crate::gpu::params::GEMV_MAX_ROWS;
use crate::gpu::tensor::check_numel;
use crate::gpu::timing::{Timing, TimingSource, time_passes};
use crate::gpu::{Gpu, GpuQuantizedTensor, GpuTensor};
use crate::reference::check_a8_weight_scheme;
use crate::{ActivationQuant, DType, Error, Result};

/// A layer to tune: its weight, activation dtype, and the activation row counts it will run.
#[derive(Clone, Copy, Debug)]
pub struct TuneCase<'a> {
    /// The quantized weight (on the `Gpu` that tunes).
    pub weight: &'a GpuQuantizedTensor,
    /// The activation (and output) dtype.
    pub activation: DType,
    /// Activation row counts; each is timed and sets the choice of its [`TuneClass`] (a later
    /// count of the same class replaces an earlier one's choice).
    pub rows: &'a [usize],
    /// Tune the layer as it runs with int8 activations (W8A8, LLM.int8():
    /// [`QuantizedLinear::with_activation_quant`](crate::QuantizedLinear::with_activation_quant)),
    /// whose kernels and choices are their own; the weight must suit them. Timed with per-token
    /// activations (no outlier columns), as the kernels do not depend on how many there are.
    pub a8: bool,
}

/// One candidate's measured time per forward.
#[derive(Clone, Copy, Debug)]
pub struct CandidateTiming {
    /// The kernel.
    pub kernel: LinearKernel,
    /// Median time of one forward over the rounds.
    pub median: Duration,
    /// Fastest round.
    pub min: Duration,
    /// Slowest round.
    pub max: Duration,
    /// Forwards per sample.
    pub iters: u32,
}

/// The tuning of one (layer, row count).
#[derive(Clone, Debug)]
pub struct TuneResult {
    /// The class the choice was recorded for.
    pub class: TuneClass,
    /// The weight's `[out, in]`.
    pub shape: [usize; 2],
    /// Activation rows timed.
    pub rows: usize,
    /// Every candidate that suits the layer, in timing order.
    pub candidates: Vec<CandidateTiming>,
    /// The fastest candidate, or the heuristic's choice where that is within
    /// [`TuneOptions::margin`] of it; now recorded.
    pub chosen: LinearKernel,
    /// What the heuristic would run (explicit options applied).
    pub heuristic: LinearKernel,
    /// What timed the candidates.
    pub source: TimingSource,
}

impl TuneResult {
    /// The median of `kernel`, if it was a candidate.
    pub fn median(&self, kernel: LinearKernel) -> Option<Duration> {
        self.candidates.iter().find(|c| c.kernel == kernel).map(|c| c.median)
    }
}

/// What [`Gpu::tune`] measured and chose.
#[derive(Clone, Debug)]
pub struct TuneReport {
    /// The adapter ([`Gpu::describe`]).
    pub adapter: String,
    /// One result per (case, row count), in the order given.
    pub results: Vec<TuneResult>,
}

impl fmt::Display for TuneReport {
    /// A markdown table: every candidate's median in µs (`*` the chosen one), the heuristic's
    /// choice, and how much faster the chosen kernel is than it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "| [out, in] | act | M | class | timer | candidates: median µs (min-max) | chosen | heuristic | heuristic / chosen |"
        )?;
        writeln!(f, "|---|---|---|---|---|---|---|---|---|")?;
        for r in &self.results {
            let us = |d: Duration| d.as_secs_f64() * 1e6;
            let cells: Vec<String> = r
                .candidates
                .iter()
                .map(|c| {
                    let star = if c.kernel == r.chosen { "*" } else { "" };
                    format!("{}{star} {:.0} ({:.0}-{:.0})", c.kernel, us(c.median), us(c.min), us(c.max))
                })
                .collect();
            let ratio = match (r.median(r.heuristic), r.median(r.chosen)) {
                (Some(h), Some(c)) => format!("{:.2}x", h.as_secs_f64() / c.as_secs_f64()),
                _ => "-".into(),
            };
            let timer = if r.source == TimingSource::GpuTimestamps { "ts" } else { "wall" };
            writeln!(
                f,
                "| [{}, {}] | {} | {} | {} | {timer} | {} | {} | {} | {ratio} |",
                r.shape[0],
                r.shape[1],
                r.class.activation,
                r.rows,
                r.class.rows.label(),
                cells.join(", "),
                r.chosen,
                r.heuristic,
            )?;
        }
        Ok(())
    }
}

impl Gpu {
    /// The tuned choices, in a stable order.
    pub fn tuning(&self) -> Vec<(TuneClass, LinearKernel)> {
        self.tune_table().entries()
    }

    /// Forgets every tuned choice: plans made from now on follow the heuristic.
    pub fn clear_tuning(&self) {
        self.tune_table().clear();
    }

    /// Times every kernel of the fused linear that suits each case's weight at each of its
    /// row counts, on the real weight, and records the fastest (or the heuristic's choice, where
    /// no candidate beats it by [`TuneOptions::margin`]) for the case's class
    /// ([`TuneClass`]); later plans of layers of that class run it. A case with
    /// [`TuneCase::a8`] times the int8-activation kernels, activation quantizer
    /// included, and needs a weight that takes int8 activations (else [`Error::Scheme`]).
    ///
    /// Explicit [`GpuOptions`](crate::GpuOptions) decide what they name (`gemm_min_rows`: GEMM
    /// or passes; `gemv_rows_per_thread`, `gemv_rows_per_group`: the GEMV kernel), a tuned
    /// choice decides the rest, the heuristic decides for classes never tuned. A layer keeps
    /// the plans it already made for a row count: tune (or load) before a layer's first
    /// forward, or use [`QuantizedLinear::tune`](crate::QuantizedLinear::tune), which re-plans
    /// the layer it tunes.
    ///
    /// The candidates run in interleaved rounds ([`TuneOptions`]) on zero-bias forwards of a
    /// fixed input, timed by GPU timestamps where the device has them (kernel time), else by
    /// the wall clock of one submission of many forwards. Takes seconds on a software adapter
    /// for large layers: about `rounds + 2` forwards per candidate and row count. In a browser
    /// use [`Gpu::tune_async`].
    pub fn tune(&self, cases: &[TuneCase<'_>], options: &TuneOptions) -> Result<TuneReport> {
        self.block_on(self.tune_async(cases, options))
    }

    /// [`Gpu::tune`] without blocking, for a browser: it awaits each timing's readback. There
    /// it times by GPU timestamps alone (a browser has no wall clock here): a device without
    /// `TIMESTAMP_QUERY` gets [`Error::Unsupported`]. Save the choices with
    /// [`Gpu::tuning_json`] (a page can keep them in `localStorage`) and give them to the next
    /// session's device with [`Gpu::load_tuning_json`].
    pub async fn tune_async(&self, cases: &[TuneCase<'_>], options: &TuneOptions) -> Result<TuneReport> {
        options.check()?;
        // Every case and row count is checked before any is timed (and before any allocation).
        for case in cases {
            if !case.weight.gpu().same_device(self) {
                return Err(Error::Gpu("a tuning case's weight belongs to another device".into()));
            }
            let [n, k] = [case.weight.shape()[0], case.weight.shape()[1]];
            for &m in case.rows {
                if m == 0 {
                    return Err(Error::Shape("tuning needs at least one activation row".into()));
                }
                check_numel(&[m, k], "the tuning activation")?;
                check_numel(&[m, n], "the tuning output")?;
            }
        }
        let mut results = Vec::new();
        for case in cases {
            for &m in case.rows {
                let r = self.tune_one(case, m, options).await?;
                self.tune_table().extend([(r.class, r.chosen)]);
                results.push(r);
            }
        }
        Ok(TuneReport { adapter: self.describe(), results })
    }

    async fn tune_one(&self, case: &TuneCase<'_>, m: usize, options: &TuneOptions) -> Result<TuneResult> {
        let (w, dtype, a8) = (case.weight, case.activation, case.a8);
        let (n, k) = (w.shape()[0], w.shape()[1]);
        if a8 {
            check_a8_weight_scheme(w.scheme(), w.shape())?;
        }
        let (facts, weight) = (DeviceFacts::of(self), WeightFacts::of(w));
        let act = a8.then(ActivationQuant::per_token);
        let x = pattern(self, m * k, dtype)?;
        let y = GpuTensor::zeros(self, &[m, n], dtype)?;
        let no_bias = self.zeroed_buffer("int8-wgpu tuning bias", 4)?;
        let mut runs = Vec::new();
        for &kernel in LinearKernel::candidates(a8) {
            // The GEMM replaces GEMV passes only above one pass (`gemm_min_rows` is at least 9),
            // or int8 GEMVs that no pass of one row keeps within a CPU adapter's loop limit.
            if kernel.is_gemm() && m <= GEMV_MAX_ROWS && !(a8 && a8_gemm_past_loop_limit(&facts, [n, k], m)) {
                continue;
            }
            // One activation row runs a wide kernel as its four-row one.
            if matches!(kernel, LinearKernel::GemvRows16Wide | LinearKernel::A8Rows16Wide) && m == 1 {
                continue;
            }
            let Some(choice) = resolve(&facts, &weight, m, dtype, act, kernel, Chooser::Candidate) else { continue };
            // Candidates past a CPU adapter's loop limit are not run.
            let plan = match choice.and_then(|c| LinearPlan::new(self, w, m, &c, false)) {
                Err(Error::Unsupported(_)) => continue,
                p => Arc::new(p?),
            };
            runs.push((kernel, plan.bind(self, w, x.buffer(), &no_bias, y.buffer())));
        }
        if runs.is_empty() {
            // Every candidate was refused (a CPU adapter's loop limit on very long rows).
            return Err(Error::Unsupported(format!(
                "no kernel can run a [{n}, {k}] layer on {m} rows on this adapter \
                 (see Gpu::is_cpu_adapter: llvmpipe's loop limit)"
            )));
        }
        // One untimed forward each (first-touch costs), then one that sizes the samples.
        let mut iters = Vec::with_capacity(runs.len());
        for (_, p) in &runs {
            time(self, p, 1).await?;
            let one = time(self, p, 1).await?.per_iter.as_secs_f64().max(1e-7);
            iters.push((options.min_sample.as_secs_f64() / one).ceil().clamp(1.0, 1000.0) as u32);
        }
        let mut samples = vec![Vec::new(); runs.len()];
        let mut source = TimingSource::GpuTimestamps;
        for _ in 0..options.rounds.max(1) {
            for (i, (_, p)) in runs.iter().enumerate() {
                let t = time(self, p, iters[i]).await?;
                // One wall-clock sample (a timestamp that did not advance) marks the set.
                if t.source == TimingSource::WallClock {
                    source = t.source;
                }
                samples[i].push(t.per_iter);
                iters[i] = t.iters;
            }
        }
        let candidates: Vec<CandidateTiming> = runs
            .iter()
            .zip(samples.iter_mut())
            .zip(&iters)
            .map(|(((kernel, _), s), &iters)| {
                s.sort();
                CandidateTiming { kernel: *kernel, median: s[s.len() / 2], min: s[0], max: s[s.len() - 1], iters }
            })
            .collect();
        let heuristic = choose_kernel(&facts, &weight, m, a8, None);
        let fastest =
            candidates.iter().min_by_key(|c| c.median).ok_or_else(|| Error::Gpu("tuning timed no candidate".into()))?;
        let chosen = match candidates.iter().find(|c| c.kernel == heuristic) {
            Some(h) if fastest.median.as_secs_f64() * (1.0 + options.margin) >= h.median.as_secs_f64() => heuristic,
            _ => fastest.kernel,
        };
        let class = class_of(w, dtype, m, a8);
        Ok(TuneResult { class, shape: [n, k], rows: m, candidates, chosen, heuristic, source })
    }
}

/// Times `iters` forwards of `plan`.
async fn time(gpu: &Gpu, plan: &Bound, iters: u32) -> Result<Timing> {
    time_passes(gpu, iters, |_| {}, |pass| plan.record(pass)).await
}

/// A fixed activation of `len` values in `dtype`, spread over [-1, 1] so that no kernel meets
/// only zeros.
fn pattern(gpu: &Gpu, len: usize, dtype: DType) -> Result<GpuTensor> {
    let v: Vec<f32> = (0..len).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect();
    let shape = [len];
    match dtype {
        DType::F32 => GpuTensor::from_host(gpu, &v, &shape),
        DType::F16 => GpuTensor::from_host(gpu, &v.iter().map(|&x| half::f16::from_f32(x)).collect::<Vec<_>>(), &shape),
        DType::BF16 => {
            GpuTensor::from_host(gpu, &v.iter().map(|&x| half::bf16::from_f32(x)).collect::<Vec<_>>(), &shape)
        }
    }
}
