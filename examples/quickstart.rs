//! Quantize a realistic 4096×4096 layer on the GPU, run it as W8A32 and W8A16 (f16, bf16), then
//! with int8 activations (W8A8, LLM.int8()), and check everything against the CPU reference.
//!
//! `cargo run --release --example quickstart [-- OUT IN]`

use std::time::Instant;

use half::{bf16, f16};
use int8_wgpu::{ActivationQuant, DType, Element, Gpu, QuantScheme, QuantizedLinear, QuantizedTensor, reference};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::init();
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let (out_f, in_f) = match args[..] {
        [o, i] => (o, i),
        _ => (4096, 4096),
    };
    let gpu = Gpu::new()?;
    println!("adapter: {}", gpu.describe());
    println!("features: {:?}", gpu.capabilities());

    // A weight with the spread of a trained layer: mostly small, a few outliers.
    let weight: Vec<f32> = (0..out_f * in_f)
        .map(|i| {
            let u = pseudo_random(i as u64);
            0.02 * u + if i % 997 == 0 { 0.3 * u.signum() } else { 0.0 }
        })
        .collect();
    let bias: Vec<f32> = (0..out_f).map(|i| 0.01 * pseudo_random(i as u64 + 7)).collect();
    let scheme = QuantScheme::default();
    println!("\nweight [{out_f}, {in_f}] f32, scheme {scheme:?}");

    let t = Instant::now();
    let layer = QuantizedLinear::from_float(&gpu, &weight, [out_f, in_f], Some(&bias), scheme, DType::F32)?;
    let gpu_q = layer.weight().to_host()?;
    println!("quantized on the GPU in {:.2?} (wall clock, upload and readback included)", t.elapsed());
    let t = Instant::now();
    let cpu_q = reference::quantize(&weight, &[out_f, in_f], scheme)?;
    println!("quantized on the CPU reference in {:.2?}", t.elapsed());
    let same_ints = gpu_q.values() == cpu_q.values();
    let same_scales = gpu_q.scales().iter().zip(cpu_q.scales()).all(|(a, b)| a.to_bits() == b.to_bits());
    println!("GPU vs CPU: ints identical: {same_ints}, scale bits identical: {same_scales}");
    let err = cpu_q.error(&weight)?;
    println!("quantization error: MSE {:.3e}, max abs {:.3e}", err.mse, err.max_abs);
    let f32_bytes = weight.len() * 4;
    println!(
        "memory: f32 {:.1} MiB -> int8 + scales {:.1} MiB ({:.2}x smaller; {:.1} MiB on the GPU)",
        mib(f32_bytes),
        mib(cpu_q.nbytes()),
        f32_bytes as f64 / cpu_q.nbytes() as f64,
        layer.weight().nbytes() as f64 / 1048576.0
    );

    println!("\nforward (rows m; error vs the f64 oracle, relative to max |y|):");
    let mut ok = same_ints && same_scales;
    // W8A16 layers adopt the int8 weights already made (as from a checkpoint).
    let l16 = QuantizedLinear::from_quantized(&gpu, &cpu_q, Some(&bias), DType::F16)?;
    let lb16 = QuantizedLinear::from_quantized(&gpu, &cpu_q, Some(&bias), DType::BF16)?;
    for m in [1, 4, 32] {
        let x: Vec<f32> = (0..m * in_f).map(|i| pseudo_random(i as u64 + 99)).collect();
        ok &= run::<f32>(&gpu, &layer, &cpu_q, &x, &bias, m, in_f)?;
        ok &= run::<f16>(&gpu, &l16, &cpu_q, &x, &bias, m, in_f)?;
        ok &= run::<bf16>(&gpu, &lb16, &cpu_q, &x, &bias, m, in_f)?;
    }
    ok &= int8_activations(&gpu, &cpu_q, &bias, in_f)?;
    println!("\n{}", if ok { "all checks passed" } else { "CHECKS FAILED" });
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

/// Runs one forward in dtype `T` and compares with the f64 oracle; returns whether it is within
/// the dtype's rounding (f32: 1e-5, f16: 2^-10, bf16: 2^-7, relative to max |y|).
fn run<T: Element>(
    gpu: &Gpu,
    layer: &QuantizedLinear,
    q: &QuantizedTensor,
    x: &[f32],
    bias: &[f32],
    m: usize,
    k: usize,
) -> Result<bool, Box<dyn std::error::Error>> {
    let xt: Vec<T> = x.iter().map(|&v| T::from_f32(v)).collect();
    let bt: Vec<T> = bias.iter().map(|&v| T::from_f32(v)).collect();
    let t = Instant::now();
    let y = layer.forward_host(&xt, &[m, k])?;
    let dt = t.elapsed();
    gpu.synchronize()?;
    let (want, _) = reference::linear_f64(&xt, q, Some(&bt))?;
    let err = max_rel_error(&y, &want, &want);
    let bound = match T::DTYPE {
        DType::F32 => 1e-5,
        DType::F16 => 2f64.powi(-10),
        DType::BF16 => 2f64.powi(-7),
    };
    // What runs these rows: a GEMV (in passes of up to 8 rows) or the tiled GEMM.
    let kernel = layer.weight().gpu().linear_kernel(layer.weight(), T::DTYPE, None, m);
    println!(
        "  W8A{:<2} {:<4} m={m:<3} {kernel}: max rel error {err:.2e} (bound {bound:.1e}) {}  [{dt:.2?} wall: upload, first-use compile, readback]",
        if T::DTYPE == DType::F32 { 32 } else { 16 },
        T::DTYPE.to_string(),
        if err <= bound { "ok" } else { "FAIL" }
    );
    Ok(err <= bound)
}

/// W8A8 and LLM.int8() (bf16 in and out) on activations with a few outlier columns: the GPU's
/// int8 activations must equal the CPU's bit for bit, and the output must be within bf16's
/// rounding of the f64 oracle of the same quantized operands; the f64 error of each against the
/// unquantized product shows what the outlier columns cost W8A8 and what LLM.int8() recovers.
fn int8_activations(
    gpu: &Gpu,
    q: &QuantizedTensor,
    bias: &[f32],
    k: usize,
) -> Result<bool, Box<dyn std::error::Error>> {
    println!("\nint8 activations, bf16 in and out (error vs the f64 product of x and the dequantized weights):");
    let m = 4;
    // Activations in [-1, 1) with outlier features: columns where one token reaches 20.
    let mut x: Vec<f32> = (0..m * k).map(|i| pseudo_random(i as u64 + 123)).collect();
    for c in (0..k).step_by(k / 6) {
        x[(c % m) * k + c] = 20.0;
    }
    let xt: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
    let bt: Vec<bf16> = bias.iter().map(|&v| bf16::from_f32(v)).collect();
    let (exact, _) = reference::linear_f64(&xt, q, Some(&bt))?;
    let mut ok = true;
    for (name, a8) in [("W8A8", ActivationQuant::per_token()), ("LLM.int8()", ActivationQuant::llm_int8(6.0)?)] {
        let layer = QuantizedLinear::from_quantized(gpu, q, Some(bias), DType::BF16)?.with_activation_quant(a8)?;
        let y = layer.forward_host(&xt, &[m, k])?;
        let outliers = layer.last_outlier_columns()?;
        let on_gpu = gpu.quantize_activations(&int8_wgpu::GpuTensor::from_host(gpu, &xt, &[m, k])?, a8)?;
        let same = on_gpu == reference::quantize_activations(&xt, k, a8)?;
        let (want, _) = reference::linear_a8_f64(&xt, q, Some(&bt), a8)?;
        let err = max_rel_error(&y, &want, &exact);
        let quant = max_rel_error(&y, &exact, &exact);
        let pass = same && err <= 2f64.powi(-7);
        println!(
            "  {name:<10} m={m}: {} outlier columns; int8 activations equal the CPU's: {same}; max rel error vs its oracle {err:.2e} (bound 7.8e-3) {}; vs the unquantized product {quant:.2e}",
            outliers.len(),
            if pass { "ok" } else { "FAIL" }
        );
        ok &= pass;
    }
    Ok(ok)
}

/// The largest `|y − want|`, relative to the largest `|scale|`.
fn max_rel_error<T: Element>(y: &[T], want: &[f64], scale: &[f64]) -> f64 {
    let ymax = scale.iter().fold(0f64, |a, v| a.max(v.abs()));
    y.iter().zip(want).fold(0f64, |a, (g, w)| a.max((f64::from(g.to_f32()) - w).abs())) / ymax
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / 1048576.0
}

/// Deterministic values in [-1, 1).
fn pseudo_random(i: u64) -> f32 {
    let mut s = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    s ^= s >> 31;
    s = s.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    s ^= s >> 29;
    (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
}
