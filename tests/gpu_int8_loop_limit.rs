//! Int8-activation layers (W8A8, LLM.int8()) on long rows and many outlier columns: on CPU
//! adapters llvmpipe stops all of a shader invocation's loops after 65535 iterations, so the
//! library must pick a kernel and rows per pass that stay within it (or refuse a forced one),
//! for any outlier count up to `in`. Elsewhere the same cases simply run.
//!
//! Exact cases: weights are integers of at most 63 with one 127 per row (per-channel scales of
//! exactly 1) and activations ±0.5 or ±1, so with every column an outlier each f32 partial sum
//! is a multiple of 0.5 below 2^23 (2^17 · 63 + 64 at most): exact in any order, and a skipped
//! term cannot hide in a tolerance.

mod common;

use std::time::Duration;

use half::f16;
use int8_wgpu::gpu::{LinearKernel, TuneOptions};
use int8_wgpu::{
    ActivationQuant, DType, Element, Error, Gpu, GpuOptions, Granularity, QuantScheme, QuantizedLinear,
    QuantizedTensor, reference,
};

const PER_ROW: Granularity = Granularity::PerChannel { axis: 0 };

fn llm(t: f32) -> ActivationQuant {
    ActivationQuant::llm_int8(t).unwrap()
}

/// See the file's comment: `[n, k]` integer weights with a 127 in each row.
fn exact_weights(n: usize, k: usize, seed: u64) -> QuantizedTensor {
    let mut w: Vec<f32> = common::rand_vec(n * k, seed).iter().map(|v| (v * 63.0).round()).collect();
    for r in 0..n {
        w[r * k + (r * 7919) % k] = 127.0;
    }
    reference::quantize(&w, &[n, k], QuantScheme::symmetric(PER_ROW)).unwrap()
}

/// See the file's comment: ±0.5 and ±1, no zeros (every column an outlier for llm(0.25)).
fn exact_activations(m: usize, k: usize, seed: u64) -> Vec<f32> {
    common::rand_vec(m * k, seed).iter().map(|v| if v.abs() < 0.5 { 0.5f32.copysign(*v) } else { v.signum() }).collect()
}

/// Runs `m` rows of the exact case `[n, k]` through `gpu` with `act`: W8A8 (no bias, no outlier
/// columns) bit-equal to `reference::linear_a8`; LLM.int8() with every column an outlier equal
/// to the exact sum rounded once to `T`.
fn check_exact<T: Element>(gpu: &Gpu, n: usize, k: usize, m: usize, act: ActivationQuant) {
    let ctx = format!("{} [{n}, {k}] m={m} {act:?}", T::DTYPE);
    let q = exact_weights(n, k, (n + k + m) as u64);
    let x: Vec<T> = common::to_dtype(&exact_activations(m, k, (k + m) as u64));
    let layer = QuantizedLinear::from_quantized::<T>(gpu, &q, None, T::DTYPE).unwrap();
    let layer = layer.with_activation_quant(act).unwrap();
    let y = layer.forward_host(&x, &[m, k]).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    if act.outlier_threshold().is_none() {
        return common::assert_a8_close(&y, &x, &q, None, act, &ctx);
    }
    assert_eq!(reference::outlier_columns(&x, k, act).len(), k, "{ctx}: every column an outlier");
    let (want, _) = reference::linear_a8_f64(&x, &q, None, act).unwrap();
    let wrong: Vec<_> = y
        .iter()
        .zip(&want)
        .enumerate()
        .filter(|(_, (g, w))| g.to_f32() != T::from_f32(exact_f32(**w)).to_f32())
        .collect();
    assert!(
        wrong.is_empty(),
        "{ctx}: {} of {} outputs wrong, first y[{}] = {:?}, exact {}",
        wrong.len(),
        y.len(),
        wrong[0].0,
        wrong[0].1.0,
        wrong[0].1.1
    );
}

/// An exact case's sum, which f32 holds exactly.
fn exact_f32(v: f64) -> f32 {
    assert_eq!(f64::from(v as f32), v, "the case's sum is not exact in f32");
    v as f32
}

fn open(options: GpuOptions) -> Gpu {
    Gpu::with_options(options).unwrap()
}

/// Item: LLM.int8() on the int8 GEMM summed the outlier columns once per output (16 per
/// invocation) and passed the limit from about 4100 outlier columns: wrong values, then zeros.
#[test]
fn llm_int8_on_the_gemm_stays_exact_with_every_column_an_outlier() {
    let gpu = gpu_or_skip!();
    // The default choice takes the GEMM from 64 rows where `in % 16 != 0` on CPU adapters.
    let k = 4100;
    let q = reference::quantize(&common::rand_vec(5 * k, 1), &[5, k], QuantScheme::symmetric(PER_ROW)).unwrap();
    let layer = QuantizedLinear::from_quantized::<f32>(&gpu, &q, None, DType::F32).unwrap();
    let x = common::rand_vec(64 * k, 2);
    let l = layer.with_activation_quant(llm(1e-3)).unwrap();
    common::assert_a8_close(&l.forward_host(&x, &[64, k]).unwrap(), &x, &q, None, llm(1e-3), "[64, 4100] llm(1e-3)");
    check_exact::<f32>(&gpu, 5, k, 64, llm(0.25));
    // Forced onto the GEMM from 9 rows, up to the most inputs an int8 dot product takes.
    let gemm = open(GpuOptions { gemm_min_rows: Some(9), ..Default::default() });
    for (k, m) in [(16400, 9), (131072, 9), (131071, 70)] {
        check_exact::<f32>(&gemm, 3, k, m, llm(0.25));
    }
    check_exact::<f16>(&gemm, 3, 16400, 9, llm(0.25));
}

/// Every column an outlier on long rows of the four-row GEMVs (16-byte units: 8192 inputs;
/// words: 8196): a loop per output over the columns passed llvmpipe's limit; one loop for all
/// of an invocation's outputs stays inside. Exact data: a skipped column changes the sum.
#[test]
fn thousands_of_outlier_columns_on_the_gemvs_stay_exact() {
    let _ = gpu_or_skip!();
    let gemv = open(GpuOptions { gemm_min_rows: Some(usize::MAX), ..Default::default() });
    for (k, m) in [(8192, 8), (8196, 5)] {
        check_exact::<f32>(&gemv, 40, k, m, llm(0.25));
    }
}

/// The default threshold, 6, with |x| up to 7 over 4100 columns and 64 rows (the GEMM on CPU
/// adapters): nearly every column an outlier.
#[test]
fn llm_int8_at_the_default_threshold_on_the_gemm_matches_the_reference() {
    let gpu = gpu_or_skip!();
    let k = 4100;
    let q = reference::quantize(&common::rand_vec(5 * k, 3), &[5, k], QuantScheme::symmetric(PER_ROW)).unwrap();
    let layer = QuantizedLinear::from_quantized::<f32>(&gpu, &q, None, DType::F32).unwrap();
    let layer = layer.with_activation_quant(llm(6.0)).unwrap();
    let x: Vec<f32> = common::rand_vec(64 * k, 4).iter().map(|v| v * 7.0).collect();
    assert!(reference::outlier_columns(&x, k, llm(6.0)).len() > 4000);
    common::assert_a8_close(&layer.forward_host(&x, &[64, k]).unwrap(), &x, &q, None, llm(6.0), "[64, 4100] llm(6)");
}

/// Item: the GEMM's skipped outlier sums came back finite where the result overflows f16.
#[test]
fn an_overflowing_llm_int8_gemm_is_an_overflow() {
    let _ = gpu_or_skip!();
    let gpu = open(GpuOptions { gemm_min_rows: Some(9), ..Default::default() });
    let k = 16400;
    let q = reference::quantize(&vec![1.0f32; 3 * k], &[3, k], QuantScheme::symmetric(PER_ROW)).unwrap();
    let layer = QuantizedLinear::from_quantized::<f16>(&gpu, &q, None, DType::F16).unwrap();
    let layer = layer.with_activation_quant(llm(6.0)).unwrap();
    // Row 7 overflows: the last of its GEMM thread's four rows, whose sums were cut first.
    let mut x = vec![f16::from_f32(0.5); 9 * k];
    x[7 * k..8 * k].fill(f16::from_f32(100.0));
    let cpu = reference::linear_a8(&x, &q, None, llm(6.0));
    assert!(matches!(cpu, Err(Error::Overflow { .. })), "reference: {cpu:?}");
    let r = layer.forward_host(&x, &[9, k]);
    assert!(matches!(r, Err(Error::Overflow { .. })), "expected Error::Overflow, found {r:?}");
}

/// Item: W8A8 and LLM.int8() layers on long rows run on any number of rows with the library's
/// own choice: 16-byte rows past 65536 inputs, word rows past 16384 and past 65536 (where even
/// one row a pass of the word GEMV passes the limit).
#[test]
fn long_int8_activation_rows_run_on_several_rows() {
    let gpu = gpu_or_skip!();
    for (k, rows) in [(70000, &[2, 8][..]), (131072, &[2, 8]), (16388, &[2, 8]), (70004, &[2]), (131068, &[3])] {
        for &m in rows {
            check_exact::<f32>(&gpu, 5, k, m, ActivationQuant::per_token());
            check_exact::<f32>(&gpu, 5, k, m, llm(0.25));
        }
    }
    // Word rows past 65536 inputs run on the GEMM there: no GEMV pass stays within the limit.
    let kernel = |k| {
        let w = int8_wgpu::GpuQuantizedTensor::from_host(&gpu, &exact_weights(1, k, 1)).unwrap();
        gpu.linear_kernel(&w, DType::F32, Some(ActivationQuant::per_token()), 2)
    };
    assert!(
        !gpu.capabilities().cpu_adapter
            || (kernel(70004) == LinearKernel::A8Gemm && kernel(70000) != LinearKernel::A8Gemm)
    );
}

/// One row of more than 65536 inputs not a multiple of 16: the word GEMV passed the limit
/// there (silently wrong before); the GEMM runs it on CPU adapters.
#[test]
fn one_long_word_row_is_exact() {
    let gpu = gpu_or_skip!();
    for k in [70004, 131068] {
        check_exact::<f32>(&gpu, 5, k, 1, ActivationQuant::per_token());
        check_exact::<f32>(&gpu, 5, k, 1, llm(0.25));
    }
}

/// Tuning a layer whose rows no GEMV can run on a CPU adapter times the GEMM the library runs
/// there, and the tuned layer stays exact.
#[test]
fn tuning_long_word_rows_times_the_gemm() {
    let _ = gpu_or_skip!();
    let gpu = open(GpuOptions::default());
    let k = 70004;
    let q = exact_weights(3, k, 11);
    let layer = QuantizedLinear::from_quantized::<f32>(&gpu, &q, None, DType::F32).unwrap();
    let layer = layer.with_activation_quant(llm(0.25)).unwrap();
    let quick = TuneOptions { rounds: 1, min_sample: Duration::from_micros(100), margin: 0.0 };
    let report = layer.tune(&[2], &quick).unwrap_or_else(|e| panic!("{e}"));
    assert!(!report.results[0].candidates.is_empty());
    check_exact::<f32>(&gpu, 3, k, 2, llm(0.25));
}

/// A GEMV that `GpuOptions::gemm_min_rows` keeps rows on and that cannot run them is refused
/// with the option named; GPUs run it.
#[test]
fn a_forced_gemv_past_the_loop_limit_is_refused() {
    let _ = gpu_or_skip!();
    let gpu = open(GpuOptions { gemm_min_rows: Some(usize::MAX), ..Default::default() });
    let k = 70004;
    let q = exact_weights(3, k, 9);
    let layer = QuantizedLinear::from_quantized::<f32>(&gpu, &q, None, DType::F32).unwrap();
    let layer = layer.with_activation_quant(ActivationQuant::per_token()).unwrap();
    let x = exact_activations(9, k, 10);
    match layer.forward_host(&x, &[9, k]) {
        Err(Error::Unsupported(e)) => {
            assert!(gpu.capabilities().cpu_adapter, "{e}");
            assert!(e.contains("65535") && e.contains("gemm_min_rows") && e.contains("a8_rows_main"), "{e}");
        }
        Ok(_) => {
            assert!(!gpu.capabilities().cpu_adapter, "a CPU adapter ran past its loop limit");
            check_exact::<f32>(&gpu, 3, k, 9, ActivationQuant::per_token());
        }
        Err(e) => panic!("{e}"),
    }
}
