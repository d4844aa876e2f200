//! Prints one markdown table of the benchmark matrix (the same cases as `cargo bench`):
//! int8 GEMV/GEMM against the CPU reference path, the dense f32 GPU layer of the same design
//! and the roofline read kernel, plus GPU vs CPU quantization.
//!
//! `cargo run --release --example bench_table` (quick subset) or with `INT8_BENCH=full`.

#[path = "../benches/suite/mod.rs"]
mod suite;

use std::time::Duration;

use int8_wgpu::{DType, reference};

const MIN: Duration = Duration::from_millis(300);

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let devices = suite::Devices::open();
    let gpu = &devices.auto;
    println!("adapter: {}", gpu.describe());
    println!("subgroup reductions: {}\n", gpu.uses_subgroup_reductions());
    println!(
        "timer: `ts` = GPU timestamps around one pass of many dispatches (kernel time); `wall` = wall clock of one submission of many dispatches. Above 8 rows both paths are measured: the tiled GEMM and passes of the 8-row GEMV; `*` marks the one the library picks on this adapter. `vs rows` = M x the 1-row GEMV time (the layer called row by row) / this time.\n"
    );
    println!(
        "| kernel | [out, in] | M | act | scheme | int8 GPU µs | timer | weight GB/s | GFLOP/s | roofline GB/s | kernel/roofline | dense f32 GPU µs | int8 vs dense | vs rows | CPU ref µs | GPU vs CPU |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    if suite::section("linear") {
        for shape in suite::shapes() {
            for (sname, scheme) in suite::schemes() {
                let layer = suite::Layer::new(shape, scheme);
                let (_, roof) = suite::yardsticks(gpu, &layer);
                let rt = suite::time_gpu(MIN, |n| roof.time(n).expect("roofline"));
                let roof_gbs = layer.weight_bytes() as f64 / rt.per_iter.as_secs_f64() / 1e9;
                // 1-row GEMV time per dtype: the "row by row" yardstick.
                let mut one_row = std::collections::HashMap::new();
                for m in suite::rows() {
                    let (xh, _) = layer.input(gpu, m, DType::F32);
                    let ct = (m <= suite::cpu_rows())
                        .then(|| suite::time_cpu(MIN, || drop(reference::linear(&xh, &layer.q, None).expect("cpu"))));
                    for (path, dev, picked) in devices.paths(m) {
                        let (dense, _) = suite::yardsticks(dev, &layer);
                        let (_, x32) = layer.input(dev, m, DType::F32);
                        let dt = suite::time_gpu(MIN, |n| dense.time_forward(&x32, n).expect("dense"));
                        for dtype in suite::dtypes() {
                            let l = layer.gpu_layer(dev, dtype);
                            let (_, x) = layer.input(dev, m, dtype);
                            let t = suite::time_gpu(MIN, |n| l.time_forward(&x, n).expect("int8"));
                            let s = t.per_iter.as_secs_f64();
                            if m == 1 {
                                one_row.insert(dtype, s);
                            }
                            let rows =
                                one_row.get(&dtype).map_or("-".into(), |t1| format!("{:.2}x", m as f64 * t1 / s));
                            let gbs = layer.weight_bytes() as f64 / s / 1e9;
                            let cpu =
                                ct.map_or("- | -".into(), |c| format!("{:.1} | {:.2}x", us(c), c.as_secs_f64() / s));
                            println!(
                                "| {path}{} | [{}, {}] | {m} | {dtype} | {sname} | {:.1} | {} | {gbs:.2} | {:.2} | {roof_gbs:.2} | {:.0}% | {:.1} | {:.2}x | {rows} | {cpu} |",
                                if picked { "*" } else { "" },
                                shape.0,
                                shape.1,
                                us(t.per_iter),
                                suite::source(&t),
                                layer.flops(m) / s / 1e9,
                                100.0 * gbs / roof_gbs,
                                us(dt.per_iter),
                                dt.per_iter.as_secs_f64() / s,
                            );
                        }
                    }
                }
            }
        }
    }
    if suite::section("quantize") {
        println!(
            "\n| quantize | [out, in] | scheme | input | GPU ms (wall, incl. flag readback) | CPU ref ms | GPU vs CPU | GPU dequant f32 ms (wall) | CPU dequant ms |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        for shape in suite::quantize_shapes() {
            for (sname, scheme) in suite::schemes() {
                let layer = suite::Layer::new(shape, scheme);
                let (input, quantize) = suite::gpu_quantize(gpu, &layer, scheme);
                let g = suite::time_cpu(MIN, &quantize);
                let c = suite::time_cpu(MIN, || {
                    drop(reference::quantize(&layer.weight, &[shape.0, shape.1], scheme).expect("q"))
                });
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
                    "| quantize | [{}, {}] | {sname} | {input} | {:.2} | {:.2} | {:.2}x | {} | {:.2} |",
                    shape.0,
                    shape.1,
                    g.as_secs_f64() * 1e3,
                    c.as_secs_f64() * 1e3,
                    c.as_secs_f64() / g.as_secs_f64(),
                    gd.map_or("-".into(), |d| format!("{:.2}", d.as_secs_f64() * 1e3)),
                    cd.as_secs_f64() * 1e3
                );
            }
        }
    }
    Ok(())
}
