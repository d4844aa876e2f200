//! The benchmark matrix and its measurements, shared by `benches/kernels.rs` (criterion) and
//! `examples/bench_table.rs` (markdown tables).
//!
//! Environment: `INT8_BENCH=full` runs the whole matrix of the fast-kernels issue (shapes
//! 384x1536, 4096x4096, 4096x14336, 14336x4096; M 1, 4, 8, 32, 128, 512; W8A32, W8A16-f16,
//! W8A16-bf16; symmetric per channel, per group 128, asymmetric per channel). The default is a
//! quick subset that finishes in minutes on a software rasterizer. `INT8_BENCH_CPU_ROWS=N` times
//! the CPU reference only up to N activation rows; `INT8_BENCH_ONLY=linear`, `=quantize` or `=a8`
//! runs one section; `INT8_BENCH_ROWS=1,8` only those activation row counts; `INT8_BENCH_ROUNDS=N`
//! sets the interleaved rounds each median is taken over.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use candle_core::Module;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use int8_wgpu::{
    ActivationQuant, DType, Error, Gpu, GpuOptions, GpuTensor, Granularity, QuantScheme, QuantizedLinear,
    QuantizedTensor, reference,
};
use int8_wgpu_bench::{DenseLinear, ReadKernel, ReadLimit, ReadLimitEstimate, SimpleGemv, Timing, TimingSource};

/// `[out, in]` of a layer.
pub type Shape = (usize, usize);

pub fn full() -> bool {
    std::env::var("INT8_BENCH").is_ok_and(|v| v == "full")
}

/// Activation rows up to which the CPU reference path is timed (`INT8_BENCH_CPU_ROWS`, default
/// all): it is single-threaded and takes minutes per call at 512 rows of the largest shapes.
pub fn cpu_rows() -> usize {
    std::env::var("INT8_BENCH_CPU_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(usize::MAX)
}

pub fn shapes() -> Vec<Shape> {
    if full() { vec![(1536, 384), (4096, 4096), (14336, 4096), (4096, 14336)] } else { vec![(1536, 384), (4096, 4096)] }
}

/// Shapes of the quantize/dequantize benches: the linear shapes, and always the 7B-class
/// [4096, 14336] layer the fast-kernels issue asks for.
pub fn quantize_shapes() -> Vec<Shape> {
    let mut s = shapes();
    if !s.contains(&(4096, 14336)) {
        s.push((4096, 14336));
    }
    s
}

/// Whether a section of the benches runs: `INT8_BENCH_ONLY=linear`, `=quantize` or `=a8` picks one.
pub fn section(name: &str) -> bool {
    std::env::var("INT8_BENCH_ONLY").map_or(true, |v| v == name)
}

/// `INT8_BENCH_ROWS=1,8`: only these activation row counts (one cell of a table can then be
/// rerun in minutes).
fn rows_override() -> Option<Vec<usize>> {
    let v = std::env::var("INT8_BENCH_ROWS").ok()?;
    let rows: Vec<usize> = v.split(',').filter_map(|r| r.trim().parse().ok()).filter(|&r| r > 0).collect();
    (!rows.is_empty()).then_some(rows)
}

pub fn rows() -> Vec<usize> {
    rows_override().unwrap_or_else(|| if full() { vec![1, 4, 8, 32, 128, 512] } else { vec![1, 8, 32, 128] })
}

/// Activation rows of the benches with int8 activations (W8A8, LLM.int8()).
pub fn a8_rows() -> Vec<usize> {
    rows_override().unwrap_or_else(|| if full() { vec![1, 8, 32, 128, 512] } else { vec![1, 8, 64, 512] })
}

/// Outlier columns LLM.int8() is benched with.
pub const OUTLIER_COUNTS: [usize; 3] = [0, 8, 64];

/// The value outlier columns are given, above LLM.int8()'s default threshold of 6.
pub const OUTLIER_VALUE: f32 = 8.0;

pub fn dtypes() -> Vec<DType> {
    vec![DType::F32, DType::F16, DType::BF16]
}

pub fn schemes() -> Vec<(&'static str, QuantScheme)> {
    let mut s = vec![("sym/ch", QuantScheme::default())];
    if full() {
        s.push(("sym/g128", QuantScheme::symmetric(Granularity::PerGroup { size: 128 })));
        s.push(("asym/ch", QuantScheme::asymmetric(Granularity::PerChannel { axis: 0 })));
    }
    s
}

/// Deterministic weights in [-0.05, 0.05) (the quantizer's xorshift).
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let v = int8_wgpu::quantizer::random_activations(n, seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    v.into_iter().map(|x| x * 0.05).collect()
}

/// Bytes of the packed int8 weight of a shape (rows padded to whole u32 words).
pub fn weight_bytes(shape: Shape) -> u64 {
    (shape.0 * shape.1.div_ceil(4) * 4) as u64
}

/// One quantized layer with its float weight.
pub struct Layer {
    pub shape: Shape,
    pub weight: Vec<f32>,
    pub q: QuantizedTensor,
    pub scheme: QuantScheme,
}

impl Layer {
    pub fn new(shape: Shape, scheme: QuantScheme) -> Self {
        let weight = values(shape.0 * shape.1, 1);
        let q = reference::quantize(&weight, &[shape.0, shape.1], scheme).expect("quantize");
        Self { shape, weight, q, scheme }
    }

    pub fn gpu_layer(&self, gpu: &Gpu, dtype: DType) -> QuantizedLinear {
        QuantizedLinear::from_quantized::<f32>(gpu, &self.q, None, dtype).expect("layer")
    }

    /// The layer with int8 activations (`a8`: W8A8 or LLM.int8()), `dtype` in and out.
    pub fn a8_layer(&self, gpu: &Gpu, dtype: DType, a8: ActivationQuant) -> QuantizedLinear {
        self.gpu_layer(gpu, dtype).with_activation_quant(a8).expect("int8 activations need symmetric per-row weights")
    }

    /// The simple kernel of issue 12 over this layer's weight, for the schemes it takes
    /// (symmetric per channel); `None` for the others.
    pub fn simple(&self, gpu: &Gpu) -> Option<SimpleGemv> {
        (self.scheme == QuantScheme::default()).then(|| SimpleGemv::new(gpu, &self.q).expect("simple GEMV"))
    }

    /// Panics unless the simple kernel computes this layer's product on `x` within
    /// `SimpleGemv::check`'s tolerance (f32 sums in another order, plus a 16-bit output's one
    /// rounding) of `reference::linear`: a yardstick timed on the wrong product is no yardstick.
    pub fn check_simple(&self, simple: &SimpleGemv, x: &GpuTensor) {
        let worst = simple.check(x, &self.q).expect("simple GEMV check");
        assert!(worst <= 1.0, "the simple GEMV is off the reference: {worst:.2} x the tolerance ({})", x.dtype());
    }

    /// Activations `[m, in]` on the GPU in `dtype`.
    pub fn input(&self, gpu: &Gpu, m: usize, dtype: DType) -> (Vec<f32>, GpuTensor) {
        (values(m * self.shape.1, 2), self.input_with_outliers(gpu, m, dtype, 0))
    }

    /// Activations `[m, in]` in `dtype` with `outliers` columns (evenly spread) holding
    /// [`OUTLIER_VALUE`] in row 0, so LLM.int8() at threshold 6 finds exactly that many.
    pub fn input_with_outliers(&self, gpu: &Gpu, m: usize, dtype: DType, outliers: usize) -> GpuTensor {
        let k = self.shape.1;
        let mut x = values(m * k, 2);
        for i in 0..outliers {
            x[i * k / outliers] = OUTLIER_VALUE;
        }
        let shape = [m, k];
        let t = match dtype {
            DType::F32 => GpuTensor::from_host(gpu, &x, &shape),
            DType::F16 => {
                GpuTensor::from_host(gpu, &x.iter().map(|&v| half::f16::from_f32(v)).collect::<Vec<_>>(), &shape)
            }
            DType::BF16 => {
                GpuTensor::from_host(gpu, &x.iter().map(|&v| half::bf16::from_f32(v)).collect::<Vec<_>>(), &shape)
            }
        };
        t.expect("input")
    }

    /// Bytes of packed int8 weight one forward reads.
    pub fn weight_bytes(&self) -> u64 {
        weight_bytes(self.shape)
    }

    pub fn flops(&self, m: usize) -> f64 {
        2.0 * (m * self.shape.0 * self.shape.1) as f64
    }
}

/// Rounds each median is taken over (`INT8_BENCH_ROUNDS`, default 3).
pub fn rounds() -> usize {
    std::env::var("INT8_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(3)
}

/// The 1-, 5- and 15-minute load averages, as `uptime` prints them: a bench beside a build
/// reads half its speed, so every table says what else was running.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(", "))
        .unwrap_or_else(|_| "unknown".into())
}

/// One thing to time: runs `iters` iterations and returns the time of one, and what timed it.
pub struct Probe<'a>(Box<dyn FnMut(u32) -> (Duration, &'static str) + 'a>);

impl<'a> Probe<'a> {
    /// GPU work that times itself (GPU timestamps, else the wall clock of one submission).
    pub fn gpu(mut f: impl FnMut(u32) -> Timing + 'a) -> Self {
        Probe(Box::new(move |iters| {
            let t = f(iters);
            (t.per_iter, source(&t))
        }))
    }

    /// Host work, timed by the wall clock over `iters` calls.
    pub fn cpu(mut f: impl FnMut() + 'a) -> Self {
        Probe(Box::new(move |iters| {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            (start.elapsed() / iters, "cpu")
        }))
    }
}

/// The median time of one iteration over the rounds, and the fastest and slowest round.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    pub median: Duration,
    pub min: Duration,
    pub max: Duration,
    /// `ts` (GPU timestamps), `wall` (one submission) or `cpu`.
    pub source: &'static str,
}

/// Times every probe interleaved (A B C, A B C, ...) for [`rounds`] rounds, so a stall or a
/// neighbour's build on this shared machine weighs on all of them alike, and returns each one's
/// median. Before the rounds, each probe runs once to warm up (drivers compile pipelines at the
/// first dispatch) and is given the iteration count that makes one round last about `min`.
pub fn measure(min: Duration, probes: &mut [Probe<'_>]) -> Vec<Measured> {
    measure_rounds(min, probes, rounds()).into_iter().map(|(m, _)| m).collect()
}

/// [`measure`] over `rounds` rounds, with each probe's time of every round (in round order).
pub fn measure_rounds(min: Duration, probes: &mut [Probe<'_>], rounds: usize) -> Vec<(Measured, Vec<Duration>)> {
    let iters: Vec<u32> = probes
        .iter_mut()
        .map(|p| {
            (p.0)(1);
            let (one, _) = (p.0)(1);
            if one >= min { 1 } else { (min.as_secs_f64() / one.as_secs_f64().max(1e-9)).ceil().min(65536.0) as u32 }
        })
        .collect();
    let mut samples = vec![Vec::new(); probes.len()];
    let mut sources = vec![""; probes.len()];
    for _ in 0..rounds.max(1) {
        for (i, p) in probes.iter_mut().enumerate() {
            let (t, src) = (p.0)(iters[i]);
            samples[i].push(t);
            sources[i] = src;
        }
    }
    samples
        .into_iter()
        .zip(sources)
        .map(|(rounds, source)| {
            let mut s = rounds.clone();
            s.sort();
            (Measured { median: s[s.len() / 2], min: s[0], max: s[s.len() - 1], source }, rounds)
        })
        .collect()
}

/// Wall-clock time of a closure, after one warm-up call, repeated until `min` has passed.
pub fn time_cpu(min: Duration, mut f: impl FnMut()) -> Duration {
    f(); // warm-up (caches, first-dispatch compiles when f drives the GPU)
    let start = Instant::now();
    let mut n = 0u32;
    while n == 0 || start.elapsed() < min {
        f();
        n += 1;
    }
    start.elapsed() / n
}

pub fn source(t: &Timing) -> &'static str {
    match t.source {
        TimingSource::GpuTimestamps => "ts",
        TimingSource::WallClock => "wall",
    }
}

/// Rounds of the read limit's own measurement: at least 5, whatever [`rounds`] says, since its
/// best round is the figure.
pub fn read_limit_rounds() -> usize {
    rounds().max(5)
}

/// The device's read limit for `bytes`: every read pattern measured interleaved over
/// [`read_limit_rounds`] rounds, in [`ReadLimit::kernels`] order, and the estimate (the fastest
/// round of any pattern, with that pattern's spread).
pub fn read_limit(gpu: &Gpu, bytes: u64, min: Duration) -> (ReadLimit, Vec<(ReadKernel, Measured)>, ReadLimitEstimate) {
    let limit = ReadLimit::new(gpu, bytes).expect("read limit");
    let kernels = limit.kernels();
    let l = &limit;
    let mut probes: Vec<Probe> =
        kernels.iter().map(|&k| Probe::gpu(move |n| l.time(k, n).expect("read kernel"))).collect();
    let measured = measure_rounds(min, &mut probes, read_limit_rounds());
    drop(probes);
    let timings: Vec<_> = kernels.iter().zip(&measured).map(|(&k, (_, rounds))| (k, rounds.clone())).collect();
    let estimate = limit.estimate(&timings).expect("a read kernel");
    (limit, kernels.into_iter().zip(measured.into_iter().map(|(m, _)| m)).collect(), estimate)
}

/// The CPU yardstick a user without a GPU would run: candle's Q8_0 `QMatMul` (blocks of 32
/// weights with an f16 scale; activations quantized to Q8_0 per call), on all cores.
pub struct Candle {
    matmul: QMatMul,
    k: usize,
}

impl Candle {
    /// Quantizes the layer's float weight with candle.
    pub fn new(layer: &Layer) -> Self {
        let (n, k) = layer.shape;
        let w = candle_core::Tensor::from_slice(&layer.weight, (n, k), &candle_core::Device::Cpu).expect("tensor");
        let q = QTensor::quantize(&w, GgmlDType::Q8_0).expect("candle Q8_0");
        Self { matmul: QMatMul::from_qtensor(q).expect("QMatMul"), k }
    }

    /// f32 activations `[m, in]` as a candle tensor.
    pub fn input(&self, x: &[f32]) -> candle_core::Tensor {
        candle_core::Tensor::from_slice(x, (x.len() / self.k, self.k), &candle_core::Device::Cpu).expect("tensor")
    }

    /// `y = x · Wᵀ`, `[m, out]`.
    pub fn forward(&self, x: &candle_core::Tensor) -> candle_core::Tensor {
        self.matmul.forward(x).expect("candle forward")
    }

    /// Panics unless candle computes the layer's product (within Q8_0's error, 1 % of the
    /// output's norm): a yardstick timed on the wrong product would be no yardstick.
    pub fn check(&self, layer: &Layer, x: &[f32]) {
        let (n, k) = layer.shape;
        let y: Vec<f32> = self.forward(&self.input(x)).flatten_all().expect("flat").to_vec1().expect("vec");
        let (mut err, mut norm) = (0.0f64, 0.0f64);
        for (i, got) in y.iter().enumerate() {
            let (r, c) = (i / n, i % n);
            let want: f64 = (0..k).map(|j| f64::from(x[r * k + j]) * f64::from(layer.weight[c * k + j])).sum();
            err += (f64::from(*got) - want).powi(2);
            norm += want * want;
        }
        assert!(y.len() == x.len() / k * n && err.sqrt() <= 0.01 * norm.sqrt(), "candle's Q8_0 product is off");
    }
}

/// The benches' devices: the default one, and two that are forced onto one path for more than
/// 8 activation rows, so both paths are measured whichever the default picks.
pub struct Devices {
    pub auto: Gpu,
    gemm: Gpu,
    passes: Gpu,
}

impl Devices {
    pub fn open() -> Self {
        let open = |gemm_min_rows| {
            Gpu::with_options(GpuOptions { gemm_min_rows, ..Default::default() })
                .expect("benches need a GPU adapter (see README)")
        };
        Self { auto: open(None), gemm: open(Some(9)), passes: open(Some(usize::MAX)) }
    }

    /// The paths that serve `m` rows: (name, device, whether the default picks it).
    pub fn paths(&self, m: usize) -> Vec<(String, &Gpu, bool)> {
        // Activation rows one GEMV pass serves.
        let max = 8;
        if m <= max {
            return vec![("gemv".into(), &self.auto, true)];
        }
        // Float layers' GEMM threshold does not depend on the weight (untuned devices).
        let w = self.auto.quantize(&[1f32; 16], &[1, 16], Default::default()).expect("a weight");
        let gemm = self.auto.linear_kernel(&w, int8_wgpu::DType::F32, None, m).is_gemm();
        vec![("gemm".into(), &self.gemm, gemm), (format!("gemv x{}", m.div_ceil(max)), &self.passes, !gemm)]
    }
}

/// GPU quantization of a layer's weight, with how its input was given: `resident` (a GPU tensor,
/// when it fits one storage binding) or `host` (uploaded in row blocks, upload included).
pub fn gpu_quantize<'a>(gpu: &'a Gpu, layer: &'a Layer, scheme: QuantScheme) -> (&'static str, Box<dyn Fn() + 'a>) {
    let shape = [layer.shape.0, layer.shape.1];
    match GpuTensor::from_host(gpu, &layer.weight, &shape) {
        Ok(t) => ("resident", Box::new(move || drop(gpu.quantize_tensor(&t, scheme).expect("quantize")))),
        Err(Error::TooLarge { .. }) => {
            ("host", Box::new(move || drop(gpu.quantize(&layer.weight, &shape, scheme).expect("quantize"))))
        }
        Err(e) => panic!("uploading the weight: {e}"),
    }
}

/// The dense f32 GPU layer of a shape.
pub fn dense(gpu: &Gpu, layer: &Layer) -> DenseLinear {
    DenseLinear::new(gpu, &layer.weight, [layer.shape.0, layer.shape.1]).expect("dense")
}
