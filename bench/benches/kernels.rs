//! `cargo bench -p int8-wgpu-bench`: the device's read-limit kernels; GEMV/GEMM against the simple
//! kernel of issue 12 (`gpu-simple-f32`), the dense f32 GPU matmul of the same design, the CPU reference path and candle's Q8_0 `QMatMul`; GPU
//! quantization and dequantization; W8A8 and LLM.int8() beside W8A16 and dense f32.
//!
//! GPU figures use GPU timestamps when the adapter has `TIMESTAMP_QUERY` (kernel time), else
//! wall clock over many dispatches in one submission. `INT8_BENCH=full` runs the whole matrix.
//! For markdown tables with every ratio, from interleaved runs:
//! `cargo run --release -p int8-wgpu-bench --example bench_table`.

#[path = "suite/mod.rs"]
mod suite;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use int8_wgpu::{ActivationQuant, DType, Gpu, GpuQuantizedTensor, QuantScheme, reference};
use int8_wgpu_bench::{ReadLimit, time_forward};

fn gpu() -> Gpu {
    let gpu = Gpu::new().expect("benches need a GPU adapter (see README)");
    eprintln!("adapter: {}", gpu.describe());
    gpu
}

fn linear(c: &mut Criterion) {
    if !suite::section("linear") {
        return;
    }
    let devices = suite::Devices::open();
    eprintln!("adapter: {}", devices.auto.describe());
    for shape in suite::shapes() {
        let limit = ReadLimit::new(&devices.auto, suite::weight_bytes(shape)).expect("read limit");
        let mut g = c.benchmark_group(format!("read/{}x{}", shape.0, shape.1));
        g.throughput(Throughput::Bytes(limit.bytes()));
        for kernel in limit.kernels() {
            g.bench_function(kernel.name().replace(' ', "-"), |b| {
                b.iter_custom(|n| limit.time(kernel, n as u32).expect("time").per_iter * n as u32)
            });
        }
        g.finish();
        for (sname, scheme) in suite::schemes() {
            let layer = suite::Layer::new(shape, scheme);
            let candle = suite::Candle::new(&layer);
            let simple = layer.simple(&devices.auto);
            for m in suite::rows() {
                // Above 8 rows both paths: `gemm` and `gemv x<passes>` (see suite::Devices).
                for (i, (path, gpu, _)) in devices.paths(m).into_iter().enumerate() {
                    let dense = suite::dense(gpu, &layer);
                    let group = path.replace(' ', "");
                    let mut g = c.benchmark_group(format!("{group}/{}x{}/{sname}", shape.0, shape.1));
                    g.throughput(Throughput::Bytes(layer.weight_bytes()));
                    for dtype in suite::dtypes() {
                        let l = layer.gpu_layer(gpu, dtype);
                        let (_, x) = layer.input(gpu, m, dtype);
                        let id = format!("gpu-w8a{}-{dtype}", if dtype == DType::F32 { 32 } else { 16 });
                        g.bench_function(BenchmarkId::new(id, m), |b| {
                            b.iter_custom(|n| time_forward(&l, &x, n as u32).expect("time").per_iter * n as u32)
                        });
                    }
                    let (xh, x) = layer.input(gpu, m, DType::F32);
                    g.bench_function(BenchmarkId::new("gpu-dense-f32", m), |b| {
                        b.iter_custom(|n| dense.time_forward(&x, n as u32).expect("time").per_iter * n as u32)
                    });
                    // The simple kernel and the CPU yardsticks once per row count, not once per path.
                    if i == 0 {
                        if let Some(s) = &simple {
                            let (_, x) = layer.input(&devices.auto, m, DType::F32);
                            if m == suite::rows()[0] {
                                layer.check_simple(s, &x);
                            }
                            g.bench_function(BenchmarkId::new("gpu-simple-f32", m), |b| {
                                b.iter_custom(|n| s.time(&x, n as u32).expect("time").per_iter * n as u32)
                            });
                        }
                        if m <= suite::cpu_rows() {
                            g.bench_function(BenchmarkId::new("cpu-reference-f32", m), |b| {
                                b.iter(|| reference::linear(&xh, &layer.q, None).expect("cpu"))
                            });
                        }
                        let cx = candle.input(&xh);
                        g.bench_function(BenchmarkId::new("cpu-candle-q8_0-f32", m), |b| {
                            b.iter(|| candle.forward(&cx))
                        });
                    }
                    g.finish();
                }
            }
        }
    }
}

fn quantize(c: &mut Criterion) {
    if !suite::section("quantize") {
        return;
    }
    let gpu = gpu();
    for shape in suite::quantize_shapes() {
        for (sname, scheme) in suite::schemes() {
            let layer = suite::Layer::new(shape, scheme);
            let mut g = c.benchmark_group(format!("quantize/{}x{}/{sname}", shape.0, shape.1));
            g.throughput(Throughput::Elements((shape.0 * shape.1) as u64));
            let (input, quantize) = suite::gpu_quantize(&gpu, &layer, scheme);
            g.bench_function(format!("gpu-{input}-wall"), |b| b.iter(&quantize));
            g.bench_function("cpu-reference", |b| {
                b.iter(|| reference::quantize(&layer.weight, &[shape.0, shape.1], scheme).expect("q"))
            });
            g.finish();
            let mut g = c.benchmark_group(format!("dequantize/{}x{}/{sname}", shape.0, shape.1));
            g.throughput(Throughput::Elements((shape.0 * shape.1) as u64));
            let gq = GpuQuantizedTensor::from_host(&gpu, &layer.q).expect("upload");
            // The f32 result is one GPU tensor: a weight over one storage binding has none.
            if !matches!(gq.dequantize(DType::F32), Err(int8_wgpu::Error::TooLarge { .. })) {
                g.bench_function("gpu-f32-wall", |b| {
                    b.iter(|| {
                        let t = gq.dequantize(DType::F32).expect("dq");
                        gpu.synchronize().expect("sync");
                        t
                    })
                });
            }
            g.bench_function("cpu-reference", |b| b.iter(|| layer.q.dequantize()));
            g.finish();
        }
    }
}

/// W8A8 and LLM.int8() (0, 8, 64 outlier columns) beside W8A16 and dense f32, bf16 in and out.
fn int8_activations(c: &mut Criterion) {
    if !suite::section("a8") {
        return;
    }
    let gpu = gpu();
    let llm = ActivationQuant::llm_int8(ActivationQuant::DEFAULT_THRESHOLD).expect("threshold");
    for shape in suite::shapes() {
        let layer = suite::Layer::new(shape, QuantScheme::default());
        let dense = suite::dense(&gpu, &layer);
        let w8a16 = layer.gpu_layer(&gpu, DType::BF16);
        let w8a8 = layer.a8_layer(&gpu, DType::BF16, ActivationQuant::per_token());
        let llm = layer.a8_layer(&gpu, DType::BF16, llm);
        let path = if gpu.capabilities().packed_dot { "dot4" } else { "unpacked" };
        let mut g = c.benchmark_group(format!("a8-{path}/{}x{}", shape.0, shape.1));
        g.throughput(Throughput::Bytes(layer.weight_bytes()));
        for m in suite::a8_rows() {
            let (_, xf) = layer.input(&gpu, m, DType::F32);
            g.bench_function(BenchmarkId::new("gpu-dense-f32", m), |b| {
                b.iter_custom(|n| dense.time_forward(&xf, n as u32).expect("time").per_iter * n as u32)
            });
            let x = layer.input_with_outliers(&gpu, m, DType::BF16, 0);
            for (id, l) in [("gpu-w8a16-bf16", &w8a16), ("gpu-w8a8-bf16", &w8a8)] {
                g.bench_function(BenchmarkId::new(id, m), |b| {
                    b.iter_custom(|n| time_forward(l, &x, n as u32).expect("time").per_iter * n as u32)
                });
            }
            for outliers in suite::OUTLIER_COUNTS {
                let x = layer.input_with_outliers(&gpu, m, DType::BF16, outliers);
                g.bench_function(BenchmarkId::new(format!("gpu-llm-int8-bf16-{outliers}-outliers"), m), |b| {
                    b.iter_custom(|n| time_forward(&llm, &x, n as u32).expect("time").per_iter * n as u32)
                });
            }
        }
        g.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}

criterion_group! { name = benches; config = config(); targets = linear, quantize, int8_activations }
criterion_main!(benches);
