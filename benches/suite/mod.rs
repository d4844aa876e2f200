//! The benchmark matrix and its measurements, shared by `benches/kernels.rs` (criterion) and
//! `examples/bench_table.rs` (one markdown table).
//!
//! Environment: `INT8_BENCH=full` runs the whole matrix of the fast-kernels issue (shapes
//! 384x1536, 4096x4096, 4096x14336, 14336x4096; M 1, 4, 8, 32, 128, 512; W8A32, W8A16-f16,
//! W8A16-bf16; symmetric per channel, per group 128, asymmetric per channel). The default is a
//! quick subset that finishes in minutes on a software rasterizer. `INT8_BENCH_CPU_ROWS=N` times
//! the CPU reference only up to N activation rows; `INT8_BENCH_ONLY=linear` or `=quantize` runs
//! one section.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use int8_wgpu::gpu::baseline::{DenseLinear, Roofline};
use int8_wgpu::gpu::timing::{Timing, TimingSource};
use int8_wgpu::{
    DType, Error, Gpu, GpuOptions, GpuTensor, Granularity, QuantScheme, QuantizedLinear, QuantizedTensor, reference,
};

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

/// Whether a section of the benches runs: `INT8_BENCH_ONLY=linear` or `=quantize` picks one.
pub fn section(name: &str) -> bool {
    std::env::var("INT8_BENCH_ONLY").map_or(true, |v| v == name)
}

pub fn rows() -> Vec<usize> {
    if full() { vec![1, 4, 8, 32, 128, 512] } else { vec![1, 8, 32, 128] }
}

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

/// One quantized layer with its float weight and the yardsticks built on the same data.
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

    /// Activations `[m, in]` on the GPU in `dtype`.
    pub fn input(&self, gpu: &Gpu, m: usize, dtype: DType) -> (Vec<f32>, GpuTensor) {
        let x = values(m * self.shape.1, 2);
        let t = match dtype {
            DType::F32 => GpuTensor::from_host(gpu, &x, &[m, self.shape.1]),
            DType::F16 => GpuTensor::from_host(
                gpu,
                &x.iter().map(|&v| half::f16::from_f32(v)).collect::<Vec<_>>(),
                &[m, self.shape.1],
            ),
            DType::BF16 => GpuTensor::from_host(
                gpu,
                &x.iter().map(|&v| half::bf16::from_f32(v)).collect::<Vec<_>>(),
                &[m, self.shape.1],
            ),
        };
        (x, t.expect("input"))
    }

    /// Bytes of packed int8 weight one forward reads.
    pub fn weight_bytes(&self) -> u64 {
        (self.shape.0 * self.shape.1.div_ceil(4) * 4) as u64
    }

    pub fn flops(&self, m: usize) -> f64 {
        2.0 * (m * self.shape.0 * self.shape.1) as f64
    }
}

/// Times a GPU closure that records `iters` iterations: one warm-up call, then growing counts
/// until one measurement spans at least `min` (so short kernels are not dominated by overhead).
/// Measurements under two seconds are taken three times and the fastest kept: on a shared VM a
/// stall only ever adds time.
pub fn time_gpu(min: Duration, mut f: impl FnMut(u32) -> Timing) -> Timing {
    // Warm-up: drivers may compile a pipeline at its first dispatch (lavapipe does).
    f(1);
    let mut iters = 1;
    loop {
        let t = f(iters);
        if t.per_iter * iters >= min || iters >= 1 << 14 {
            if t.per_iter * iters >= Duration::from_secs(2) {
                return t;
            }
            return (0..2).map(|_| f(iters)).fold(t, |a, b| if b.per_iter < a.per_iter { b } else { a });
        }
        iters = (iters * 4).min(1 << 14);
    }
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
        let max = int8_wgpu::gpu::GEMV_MAX_ROWS;
        if m <= max {
            return vec![("gemv".into(), &self.auto, true)];
        }
        let gemm = self.auto.uses_gemm(m);
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

/// The dense f32 GPU layer and the roofline reader for a shape.
pub fn yardsticks(gpu: &Gpu, layer: &Layer) -> (DenseLinear, Roofline) {
    let dense = DenseLinear::new(gpu, &layer.weight, [layer.shape.0, layer.shape.1]).expect("dense");
    let roof = Roofline::new(gpu, layer.weight_bytes()).expect("roofline");
    (dense, roof)
}
