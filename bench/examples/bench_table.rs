//! Prints the benchmark matrix (the same cases as `cargo bench`) as markdown tables: the
//! device's read limit (the fastest round of several read-only kernels over several rounds,
//! with its spread), then int8 GEMV/GEMM against
//! that limit, the simple kernel of issue 12 (checked against the reference first), the dense f32
//! GPU layer of the same design, the single-threaded CPU reference and
//! candle's Q8_0 `QMatMul` on all cores, plus GPU vs CPU quantization, and the layers with int8
//! activations (W8A8, LLM.int8() with 0, 8 and 64 outlier columns) beside W8A16 and dense f32, and
//! W8A8's integer matmul beside the simple kernel with int8 activations.
//!
//! `cargo run --release -p int8-wgpu-bench --example bench_table` (quick subset), or with
//! `INT8_BENCH=full`. Medians over interleaved rounds; see `benches/suite/mod.rs`.

#[path = "../benches/suite/mod.rs"]
mod suite;

use std::collections::HashMap;
use std::time::Duration;

use int8_wgpu::{ActivationQuant, DType, ForwardStage, Gpu, QuantScheme, QuantizedLinear, reference};
use int8_wgpu_bench::{
    DenseLinear, ReadLimit, ReadLimitEstimate, SimpleGemvA8, SimpleQuantize, time_forward, time_stage,
};
use suite::{Measured, Probe};

const MIN: Duration = Duration::from_millis(300);

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// What one device (one kernel path) needs for a layer: the dense layer and the int8 layer per
/// activation dtype, built once per shape and scheme.
struct PathLayers {
    dense: DenseLinear,
    int8: Vec<(DType, QuantizedLinear)>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let devices = suite::Devices::open();
    let gpu = &devices.auto;
    println!("adapter: {}", gpu.describe());
    println!("subgroup reductions: {}", gpu.capabilities().subgroup_reductions);
    println!("load average at start: {}", suite::load_average());
    println!("rounds per median: {}\n", suite::rounds());
    if suite::section("linear") {
        linear(&devices)?;
    }
    if suite::section("quantize") {
        quantize(gpu)?;
    }
    if suite::section("a8") {
        int8_activations(gpu)?;
    }
    println!("\nload average at end: {}", suite::load_average());
    Ok(())
}

fn linear(devices: &suite::Devices) -> Result<(), Box<dyn std::error::Error>> {
    let gpu = &devices.auto;
    println!(
        "Read limit: every read-only kernel over the weight's bytes, interleaved, {} rounds; GB/s of the fastest, median and slowest round. A busy machine only slows a read, so the limit is the fastest round of any kernel (`**`); `of the limit` = each kernel's fastest round against it.\n",
        suite::read_limit_rounds()
    );
    println!("| [out, in] | MiB | read kernel | timer | GB/s fastest | median | slowest | of the limit |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut limits: HashMap<suite::Shape, (ReadLimit, ReadLimitEstimate)> = HashMap::new();
    for shape in suite::shapes() {
        let bytes = suite::weight_bytes(shape);
        let (limit, measured, estimate) = suite::read_limit(gpu, bytes, MIN);
        for (kernel, m) in &measured {
            let star = if *kernel == estimate.kernel { "**" } else { "" };
            println!(
                "| [{}, {}] | {:.1} | {star}{}{star} | {} | {:.2} | {:.2} | {:.2} | {:.0}% |",
                shape.0,
                shape.1,
                bytes as f64 / (1 << 20) as f64,
                kernel.name(),
                m.source,
                limit.gb_per_s(m.min),
                limit.gb_per_s(m.median),
                limit.gb_per_s(m.max),
                100.0 * limit.gb_per_s(m.min) / estimate.gb_per_s,
            );
        }
        limits.insert(shape, (limit, estimate));
    }

    println!(
        "\ntimer: `ts` = GPU timestamps around one pass of many dispatches (kernel time); `wall` = wall clock of one submission of many dispatches. Above 8 rows both paths are measured: the tiled GEMM and passes of the 8-row GEMV; `*` marks the one the library picks on this adapter. Each row's figures are medians of one interleaved set (every kernel, the read limit's fastest kernel, the simple kernel per dtype, the dense layer, the CPU reference and candle, in turn). `read limit GB/s` = the fastest round of the read-limit table above or of that table's fastest kernel re-measured in the set, whichever is faster, and in brackets the in-set rounds' slowest/median/fastest GB/s (a spread far below the limit: the machine was busy); `kernel/limit` = the kernel's median weight GB/s / that read limit. `simple µs` = issue 12's simple kernel (4 weight rows per invocation, u32 loads, `unpack4xI8`, f32 accumulate; above one activation row, 8 rows at a time inside the word loop, each with its accumulators, so each weight word is read once per 8 rows; bench/shaders/simple_gemv.wgsl) on the row's dtype, checked against the CPU reference before timing; `pick/simple` = int8 GPU µs / simple µs (below 1, the library's kernel is faster). `vs rows` = M x the 1-row GEMV time (the layer called row by row) / this time. `candle Q8_0` = candle-core's quantized `QMatMul` (f32 activations, all cores); `GPU/candle` and `ref/candle` are time ratios: above 1, candle is faster.\n"
    );
    println!(
        "| kernel | [out, in] | M | act | scheme | int8 GPU µs | timer | weight GB/s | GFLOP/s | read limit GB/s | kernel/limit | simple µs | pick/simple | dense f32 GPU µs | int8 vs dense | vs rows | CPU ref µs | candle Q8_0 µs | GPU/candle | ref/candle |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for shape in suite::shapes() {
        let (limit, estimate) = &limits[&shape];
        for (sname, scheme) in suite::schemes() {
            let layer = suite::Layer::new(shape, scheme);
            let candle = suite::Candle::new(&layer);
            let simple = layer.simple(gpu);
            let mut paths: HashMap<*const Gpu, PathLayers> = HashMap::new();
            // 1-row GEMV time per dtype: the "row by row" yardstick.
            let mut one_row = HashMap::new();
            for m in suite::rows() {
                // The host copy of the f32 activations `layer.input` uploads.
                let xh = suite::values(m * shape.1, 2);
                // The simple kernel's inputs on the default device, one per dtype.
                let sx: Vec<_> = suite::dtypes().into_iter().map(|dt| layer.input(gpu, m, dt).1).collect();
                if m == suite::rows()[0] {
                    candle.check(&layer, &xh);
                }
                // At every row count: a yardstick that skipped work (llvmpipe's loop limit once
                // cut this one short at 128 rows) would time the wrong product.
                if let Some(s) = &simple {
                    sx.iter().for_each(|x| layer.check_simple(s, x));
                }
                let cx = candle.input(&xh);
                let run = devices.paths(m);
                for (_, dev, _) in &run {
                    paths.entry(std::ptr::from_ref(*dev)).or_insert_with(|| PathLayers {
                        dense: suite::dense(dev, &layer),
                        int8: suite::dtypes().into_iter().map(|dt| (dt, layer.gpu_layer(dev, dt))).collect(),
                    });
                }
                // Inputs per path and dtype (f32 also feeds the dense layer).
                let inputs: Vec<Vec<_>> = run
                    .iter()
                    .map(|(_, dev, _)| suite::dtypes().into_iter().map(|dt| layer.input(dev, m, dt).1).collect())
                    .collect();
                // One interleaved set: limit, candle, [ref], [simple per dtype], then per path dense
                // and each dtype.
                let mut probes = vec![
                    Probe::gpu(|n| limit.time(estimate.kernel, n).expect("read limit")),
                    Probe::cpu(|| drop(candle.forward(&cx))),
                ];
                let cpu = m <= suite::cpu_rows();
                if cpu {
                    probes.push(Probe::cpu(|| drop(reference::linear(&xh, &layer.q, None).expect("cpu"))));
                }
                let first_simple = probes.len();
                if let Some(s) = &simple {
                    probes.extend(sx.iter().map(|x| Probe::gpu(move |n| s.time(x, n).expect("simple"))));
                }
                for ((_, dev, _), x) in run.iter().zip(&inputs) {
                    let p = &paths[&std::ptr::from_ref(*dev)];
                    // dtypes() starts with f32, the dense layer's input.
                    probes.push(Probe::gpu(|n| p.dense.time_forward(&x[0], n).expect("dense")));
                    for ((_, l), x) in p.int8.iter().zip(x) {
                        probes.push(Probe::gpu(|n| time_forward(l, x, n).expect("int8")));
                    }
                }
                let t = suite::measure(MIN, &mut probes);
                drop(probes);
                // The in-set read kernel can only have come out slower than the device reads.
                let in_set = [t[0].max, t[0].median, t[0].min].map(|d| limit.gb_per_s(d));
                let limit_gbs = estimate.gb_per_s.max(in_set[2]);
                let mut at = first_simple;
                let simple_t: HashMap<DType, Duration> = if simple.is_some() {
                    suite::dtypes().into_iter().zip(&t[at..]).map(|(dt, m)| (dt, m.median)).collect()
                } else {
                    HashMap::new()
                };
                at += simple_t.len();
                for (path, _, picked) in &run {
                    let y = Yardsticks {
                        limit_gbs,
                        in_set,
                        simple: simple_t.clone(),
                        dense: t[at].median,
                        reference: cpu.then(|| t[2].median),
                        candle: t[1].median,
                    };
                    at += 1;
                    for dtype in suite::dtypes() {
                        let row = Row { layer: &layer, scheme: sname, path, picked: *picked, m, dtype, int8: &t[at] };
                        at += 1;
                        print_row(&row, &y, &mut one_row);
                    }
                }
            }
        }
    }
    Ok(())
}

/// The figures of one interleaved set that every row of the set shares.
struct Yardsticks {
    /// The read limit (GB/s) the row is measured against.
    limit_gbs: f64,
    /// The read kernel's slowest, median and fastest round in this set, GB/s.
    in_set: [f64; 3],
    /// The simple kernel per activation dtype (none for schemes it does not take).
    simple: HashMap<DType, Duration>,
    dense: Duration,
    reference: Option<Duration>,
    candle: Duration,
}

/// One row of the table: the int8 layer on one path, in one activation dtype.
struct Row<'a> {
    layer: &'a suite::Layer,
    scheme: &'a str,
    path: &'a str,
    picked: bool,
    m: usize,
    dtype: DType,
    int8: &'a Measured,
}

fn print_row(row: &Row, y: &Yardsticks, one_row: &mut HashMap<DType, f64>) {
    let Row { layer, scheme, path, picked, m, dtype, int8 } = *row;
    let s = int8.median.as_secs_f64();
    if m == 1 {
        one_row.insert(dtype, s);
    }
    let rows = one_row.get(&dtype).map_or("-".into(), |t1| format!("{:.2}x", m as f64 * t1 / s));
    let gbs = layer.weight_bytes() as f64 / s / 1e9;
    let candle = y.candle.as_secs_f64();
    let (simple, pick_simple) = y
        .simple
        .get(&dtype)
        .map_or(("-".into(), "-".into()), |d| (format!("{:.1}", us(*d)), format!("{:.2}x", s / d.as_secs_f64())));
    let (reference, ref_candle) = y
        .reference
        .map_or(("-".into(), "-".into()), |c| (format!("{:.1}", us(c)), format!("{:.1}x", c.as_secs_f64() / candle)));
    println!(
        "| {path}{} | [{}, {}] | {m} | {dtype} | {scheme} | {:.1} | {} | {gbs:.2} | {:.2} | {:.2} ({:.2}/{:.2}/{:.2}) | {:.0}% | {simple} | {pick_simple} | {:.1} | {:.2}x | {rows} | {reference} | {:.1} | {:.1}x | {ref_candle} |",
        if picked { "*" } else { "" },
        layer.shape.0,
        layer.shape.1,
        us(int8.median),
        int8.source,
        layer.flops(m) / s / 1e9,
        y.limit_gbs,
        y.in_set[0],
        y.in_set[1],
        y.in_set[2],
        100.0 * gbs / y.limit_gbs,
        us(y.dense),
        y.dense.as_secs_f64() / s,
        us(y.candle),
        s / candle,
    );
}

/// W8A8 and LLM.int8() (0, 8 and 64 outlier columns) beside W8A16 and the dense f32 layer, all
/// bf16 in and out except the dense one, in one interleaved set per row.
fn int8_activations(gpu: &Gpu) -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "\nInt8 activations, the library's pick of kernels; integer products via {}. µs per forward (medians of one interleaved set per row); LLM.int8() at threshold 6 with 0, 8 or 64 outlier columns in the batch. `W8A8 matmul` = the W8A8 layer's integer matmul alone (activations quantized by an earlier forward); `simple int8` = issue 12's simple kernel with int8 activations on the same quantized activations (4 weight rows per invocation, u32 loads, dot4I8Packed, i32 accumulators; bench/shaders/simple_gemv_a8.wgsl; f32 out), checked bit for bit against reference::linear_a8 before timing; `matmul/simple` below 1: the library's int8 GEMV is faster. `act quant` = W8A8's activation quantizer alone; `simple act quant` = one invocation per row (absmax, scale, ints; bench/shaders/simple_quantize.wgsl), checked bit for bit against the reference first.\n",
        if gpu.capabilities().packed_dot { "WGSL dot4I8Packed" } else { "the exact unpacking fallback" }
    );
    println!(
        "| [out, in] | M | dense f32 | W8A16 bf16 | W8A8 | LLM.int8() 0 | LLM.int8() 8 | LLM.int8() 64 | W8A8 vs W8A16 | LLM.int8() 64 vs W8A8 | W8A8 vs dense | W8A8 matmul | simple int8 | matmul/simple | act quant | simple act quant | act/simple |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let threshold = ActivationQuant::llm_int8(ActivationQuant::DEFAULT_THRESHOLD)?;
    for shape in suite::shapes() {
        let layer = suite::Layer::new(shape, QuantScheme::default());
        let dense = suite::dense(gpu, &layer);
        let w8a16 = layer.gpu_layer(gpu, DType::BF16);
        let w8a8 = layer.a8_layer(gpu, DType::BF16, ActivationQuant::per_token());
        let llm = layer.a8_layer(gpu, DType::BF16, threshold);
        let simple = SimpleGemvA8::new(gpu, &layer.q)?;
        let simple_act = SimpleQuantize::new(gpu)?;
        for m in suite::a8_rows() {
            let (_, xf) = layer.input(gpu, m, DType::F32);
            let x: Vec<_> =
                suite::OUTLIER_COUNTS.iter().map(|&c| layer.input_with_outliers(gpu, m, DType::BF16, c)).collect();
            // The simple kernel reads the activations W8A8 quantizes: the bf16 inputs, widened.
            let xs = x[0].read_f32()?;
            let differ = simple.check(&xs, &layer.q)?;
            assert_eq!(differ, 0, "the simple int8 GEMV differs from linear_a8 in {differ} outputs");
            let input = simple.upload(&xs)?;
            let differ = simple_act.check(&x[0])?;
            assert_eq!(differ, 0, "the simple activation quantizer differs from the reference in {differ} values");
            let mut probes = vec![
                Probe::gpu(|n| dense.time_forward(&xf, n).expect("dense")),
                Probe::gpu(|n| time_forward(&w8a16, &x[0], n).expect("w8a16")),
                Probe::gpu(|n| time_forward(&w8a8, &x[0], n).expect("w8a8")),
            ];
            probes.extend(x.iter().map(|x| Probe::gpu(|n| time_forward(&llm, x, n).expect("llm.int8()"))));
            probes.push(Probe::gpu(|n| time_stage(&w8a8, &x[0], ForwardStage::Matmul, n).expect("w8a8 matmul")));
            probes.push(Probe::gpu(|n| simple.time(&input, n).expect("simple int8")));
            probes.push(Probe::gpu(|n| {
                time_stage(&w8a8, &x[0], ForwardStage::QuantizeActivations, n).expect("w8a8 act quant")
            }));
            probes.push(Probe::gpu(|n| simple_act.time_kernel(&x[0], n).expect("simple act quant")));
            let t = suite::measure(MIN, &mut probes);
            drop(probes);
            let u = |i: usize| us(t[i].median);
            println!(
                "| [{}, {}] | {m} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2}x | {:.2}x | {:.2}x | {:.1} | {:.1} | {:.2}x | {:.1} | {:.1} | {:.2}x |",
                shape.0,
                shape.1,
                u(0),
                u(1),
                u(2),
                u(3),
                u(4),
                u(5),
                u(1) / u(2),
                u(2) / u(5),
                u(0) / u(2),
                u(6),
                u(7),
                u(6) / u(7),
                u(8),
                u(9),
                u(8) / u(9),
            );
        }
    }
    Ok(())
}

fn quantize(gpu: &Gpu) -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "\nGPU quantization, the CPU reference and the simple quantizer (bench/shaders/simple_quantize.wgsl: one invocation per row, absmax, scale, ints; symmetric per channel, resident f32 input; checked against the reference's ints and scale bits first) timed interleaved, medians; `three passes` = the library's statistics/scales/packing passes forced (GpuOptions::quantize_runs = false), what CPU adapters ran before the one-dispatch form; `GPU/simple` below 1: the library's pick is faster. Dequantization timed after, not interleaved.\n"
    );
    println!(
        "| quantize | [out, in] | scheme | input | GPU ms (wall, incl. flag readback) | three passes ms | CPU ref ms | GPU vs CPU | simple GPU ms (wall) | GPU/simple | GPU dequant f32 ms (wall) | CPU dequant ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let simple = SimpleQuantize::new(gpu)?;
    // The same adapter with the three-pass quantization forced: what CPU adapters ran before
    // the one-dispatch form (GPUs run it anyway).
    let passes = Gpu::with_options(int8_wgpu::GpuOptions { quantize_runs: Some(false), ..Default::default() })?;
    for shape in suite::quantize_shapes() {
        for (sname, scheme) in suite::schemes() {
            let layer = suite::Layer::new(shape, scheme);
            let (input, quantize) = suite::gpu_quantize(gpu, &layer, scheme);
            let (_, three) = suite::gpu_quantize(&passes, &layer, scheme);
            // The simple quantizer's job: symmetric per channel from a resident f32 tensor.
            let resident = (scheme == QuantScheme::default())
                .then(|| int8_wgpu::GpuTensor::from_host(gpu, &layer.weight, &[shape.0, shape.1]).ok())
                .flatten();
            if let Some(t) = &resident {
                let differ = simple.check(t)?;
                assert_eq!(differ, 0, "the simple quantizer differs from the reference in {differ} values");
            }
            let mut probes = vec![
                Probe::cpu(&quantize),
                Probe::cpu(|| drop(reference::quantize(&layer.weight, &[shape.0, shape.1], scheme).expect("q"))),
                Probe::cpu(&three),
            ];
            if let Some(t) = &resident {
                probes.push(Probe::cpu(|| {
                    simple.time(t, 1).expect("simple quantize");
                }));
            }
            let t = suite::measure(MIN, &mut probes);
            drop(probes);
            let (g, c, p3) = (t[0].median, t[1].median, t[2].median);
            let s = t.get(3).map(|m| m.median);
            let gq = int8_wgpu::GpuQuantizedTensor::from_host(gpu, &layer.q)?;
            // The f32 result is one GPU tensor: a weight over one binding has none.
            let fits = !matches!(gq.dequantize(DType::F32), Err(int8_wgpu::Error::TooLarge { .. }));
            let gd = fits.then(|| {
                suite::time_cpu(MIN, || {
                    drop(gq.dequantize(DType::F32).expect("dq"));
                    gpu.synchronize().expect("sync");
                })
            });
            let cd = suite::time_cpu(MIN, || drop(layer.q.dequantize()));
            println!(
                "| quantize | [{}, {}] | {sname} | {input} | {:.2} | {:.2} | {:.2} | {:.2}x | {} | {} | {} | {:.2} |",
                shape.0,
                shape.1,
                g.as_secs_f64() * 1e3,
                p3.as_secs_f64() * 1e3,
                c.as_secs_f64() * 1e3,
                c.as_secs_f64() / g.as_secs_f64(),
                s.map_or("-".into(), |s| format!("{:.2}", s.as_secs_f64() * 1e3)),
                s.map_or("-".into(), |s| format!("{:.2}x", g.as_secs_f64() / s.as_secs_f64())),
                gd.map_or("-".into(), |d| format!("{:.2}", d.as_secs_f64() * 1e3)),
                cd.as_secs_f64() * 1e3
            );
        }
    }
    Ok(())
}
