//! Tunes the fused linear's kernel choice on this device for the bench shapes and prints every
//! candidate's median, what tuning chose and what the heuristic would have run.
//!
//! `cargo run --release --example tune [-- tuning.json]`: with a path, the choices are saved
//! there (and loaded by any later `Gpu::load_tuning` on the same adapter and driver).
//! `INT8_BENCH=full` adds the 7B-class shapes and more row counts, `INT8_TUNE_DTYPES=all` the
//! 16-bit activations, `INT8_TUNE_ROUNDS=N` sets the interleaved rounds (default 3),
//! `INT8_TUNE_ROWS=1,8` the activation row counts, `INT8_TUNE_SHAPES=1024x4096,384x1536` the
//! `[out, in]` shapes, `INT8_TUNE_LAYERS=int8` the layers with int8
//! activations (W8A8, LLM.int8()) instead of weight-only ones (`=all`: both).

use int8_wgpu::gpu::{TuneCase, TuneOptions};
use int8_wgpu::{DType, Gpu, GpuQuantizedTensor, QuantScheme, QuantizedTensor};

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(", "))
        .unwrap_or_else(|_| "unknown".into())
}

/// A symmetric per-channel weight of `[n, k]` with int8 values spread over the range; the
/// kernels' speed does not depend on the values.
fn weight(n: usize, k: usize) -> Result<QuantizedTensor, int8_wgpu::Error> {
    let values: Vec<i8> = (0..n * k).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as i8).collect();
    let scales = (0..n).map(|i| 1e-3 + i as f32 * 1e-6).collect();
    QuantizedTensor::new(&[n, k], QuantScheme::default(), values, scales, None)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let full = std::env::var("INT8_BENCH").is_ok_and(|v| v == "full");
    let shapes: Vec<(usize, usize)> = match std::env::var("INT8_TUNE_SHAPES") {
        Ok(list) => list
            .split(',')
            .map(|s| {
                let (n, k) = s.split_once('x').ok_or_else(|| format!("INT8_TUNE_SHAPES: `{s}` is not OUTxIN"))?;
                Ok::<_, Box<dyn std::error::Error>>((n.trim().parse()?, k.trim().parse()?))
            })
            .collect::<Result<_, _>>()?,
        Err(_) if full => vec![(1536, 384), (4096, 4096), (14336, 4096), (4096, 14336)],
        Err(_) => vec![(1536, 384), (4096, 4096)],
    };
    let rows: Vec<usize> = match std::env::var("INT8_TUNE_ROWS") {
        Ok(list) => list.split(',').map(str::parse).collect::<Result<_, _>>()?,
        Err(_) if full => vec![1, 4, 8, 32, 128, 512],
        Err(_) => vec![1, 8, 32, 128],
    };
    let rows = &rows[..];
    let dtypes = match std::env::var("INT8_TUNE_DTYPES").as_deref() {
        Ok("all") => vec![DType::F32, DType::F16, DType::BF16],
        _ => vec![DType::F32],
    };
    // INT8_TUNE_LAYERS=int8: layers with int8 activations (W8A8, LLM.int8()); =all: both kinds.
    let int8: &[bool] = match std::env::var("INT8_TUNE_LAYERS").as_deref() {
        Ok("int8") => &[true],
        Ok("all") => &[false, true],
        _ => &[false],
    };
    let rounds = std::env::var("INT8_TUNE_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    let options = TuneOptions { rounds, ..TuneOptions::default() };

    let gpu = Gpu::new()?;
    println!("adapter: {}", gpu.describe());
    println!("load average at start: {}", load_average());
    println!("rounds per median: {rounds}\n");
    let weights: Vec<GpuQuantizedTensor> =
        shapes.iter().map(|&(n, k)| GpuQuantizedTensor::from_host(&gpu, &weight(n, k)?)).collect::<Result<_, _>>()?;
    let cases: Vec<TuneCase> = weights
        .iter()
        .flat_map(|w| dtypes.iter().map(move |&activation| (w, activation)))
        .flat_map(|(weight, activation)| int8.iter().map(move |&a8| TuneCase { weight, activation, rows, a8 }))
        .collect();
    let report = gpu.tune(&cases, &options)?;
    println!("{report}");
    println!("load average at end: {}", load_average());
    if let Some(path) = std::env::args().nth(1) {
        gpu.save_tuning(&path)?;
        println!("saved {} choices to {path}", gpu.tuning().len());
    }
    Ok(())
}
