//! Tuning in a browser: `Gpu::tune_async` times the candidate kernels by GPU timestamps, the
//! choices go out as JSON (what a page keeps in `localStorage`) and into a second device, whose
//! layers then run the tuned kernels within the native suite's bound.

use std::time::Duration;

use half::f16;
use int8_wgpu::gpu::{TimingSource, TuneCase, TuneOptions, TuneReport};
use int8_wgpu::{
    ActivationQuant, Element, Error, Gpu, GpuOptions, GpuQuantizedTensor, GpuTensor, Granularity, QuantScheme,
    QuantizedLinear, QuantizedTensor, reference,
};
use wasm_bindgen_test::{console_log, wasm_bindgen_test};

use crate::common;

/// Few short rounds: the suite's time, not the choice's quality, is what matters here.
const QUICK: TuneOptions = TuneOptions { rounds: 3, min_sample: Duration::from_millis(2), margin: 0.05 };

/// Row counts of three classes: one row, a GEMV pass, the GEMM.
const ROWS: [usize; 3] = [1, 4, 16];

fn weight(n: usize, k: usize, seed: u64) -> QuantizedTensor {
    let s = QuantScheme::symmetric(Granularity::PerChannel { axis: 0 });
    reference::quantize(&common::rand_vec(n * k, seed), &[n, k], s).unwrap()
}

/// Every result timed each candidate once per kernel, by what the adapter offers.
fn check_report(gpu: &Gpu, report: &TuneReport, a8: bool) {
    console_log!("tuning on {} ({:?}):\n{report}", report.adapter, gpu.capabilities());
    assert_eq!(report.results.len(), ROWS.len());
    for r in &report.results {
        assert!(!r.candidates.is_empty(), "{r:?}");
        assert_eq!(r.source, TimingSource::GpuTimestamps, "{r:?}");
        for (i, c) in r.candidates.iter().enumerate() {
            assert_eq!(c.kernel.is_a8(), a8, "{r:?}");
            assert!(c.median > Duration::ZERO && c.min <= c.median && c.median <= c.max, "{c:?}");
            assert!(r.candidates[..i].iter().all(|d| d.kernel != c.kernel), "{r:?}");
        }
        assert!(r.median(r.chosen).is_some(), "the choice was a candidate: {r:?}");
    }
}

/// A layer on `gpu`, its kernel at each row count, and its outputs within the bound.
async fn run_loaded<T: Element>(gpu: &Gpu, w: &QuantizedTensor, act: Option<ActivationQuant>, report: &TuneReport) {
    let k = w.shape()[1];
    let mut layer = QuantizedLinear::from_quantized(gpu, w, None::<&[T]>, T::DTYPE).unwrap();
    if let Some(act) = act {
        layer = layer.with_activation_quant(act).unwrap();
    }
    for (r, &m) in report.results.iter().zip(&ROWS) {
        assert_eq!(gpu.linear_kernel(layer.weight(), T::DTYPE, act, m), r.chosen, "loaded choice at {m} rows");
        let x: Vec<T> = common::to_dtype(&common::rand_vec(m * k, m as u64));
        let xt = GpuTensor::from_host(gpu, &x, &[m, k]).unwrap();
        let y: Vec<T> = layer.forward(&xt).unwrap().read_async().await.unwrap();
        let ctx = format!("tuned {} at {m} rows ({act:?})", r.chosen);
        match act {
            Some(act) => common::assert_a8_close(&y, &x, w, None, act, &ctx),
            None => common::assert_linear_close(&y, &x, w, None, &ctx),
        }
    }
}

/// Needs the adapter's timestamps (SwiftShader has `timestamp-query`); without them tuning in a
/// browser is an `Unsupported` error, as there is no wall clock to fall back to.
#[wasm_bindgen_test]
async fn tuning_saved_as_json_runs_in_a_second_device() {
    // Devices of their own: a tuned choice would change the other tests' heuristic kernels.
    let gpu = common::open(GpuOptions::default()).await;
    let (wf, wa) = (weight(48, 256, 1), weight(40, 192, 2));
    let wg = GpuQuantizedTensor::from_host(&gpu, &wf).unwrap();
    let case = TuneCase { weight: &wg, activation: f16::DTYPE, rows: &ROWS, a8: false };
    let tuned = gpu.tune_async(&[case], &QUICK).await;
    if !gpu.capabilities().timestamps {
        assert!(matches!(tuned, Err(Error::Unsupported(_))), "{tuned:?}");
        return;
    }
    let report = tuned.unwrap();
    check_report(&gpu, &report, false);
    let act = ActivationQuant::per_token();
    let a8 = QuantizedLinear::from_quantized(&gpu, &wa, None::<&[f32]>, f32::DTYPE)
        .unwrap()
        .with_activation_quant(act)
        .unwrap();
    let a8_report = a8.tune_async(&ROWS, &QUICK).await.unwrap();
    check_report(&gpu, &a8_report, true);

    // What a page stores, and the next session's device that loads it.
    let json = gpu.tuning_json().unwrap();
    console_log!("tuning JSON: {json}");
    let second = common::open(GpuOptions::default()).await;
    assert_eq!(second.load_tuning_json(&json).unwrap(), gpu.tuning().len());
    assert_eq!(second.tuning(), gpu.tuning());
    run_loaded::<f16>(&second, &wf, None, &report).await;
    run_loaded::<f32>(&second, &wa, Some(act), &a8_report).await;
}

/// `time_pass_async` times a layer's recorded forwards; the blocking forms and tuning inside a
/// forward (`tune_on_first_use`) are errors naming the async form, never a hang or a silent
/// untuned choice.
#[wasm_bindgen_test]
async fn timing_awaits_and_blocking_tuning_is_refused() {
    let options = GpuOptions { tune_on_first_use: Some(QUICK), ..Default::default() };
    let gpu = common::open(options).await;
    let w = weight(24, 64, 3);
    let layer = QuantizedLinear::from_quantized(&gpu, &w, None::<&[f32]>, f32::DTYPE).unwrap();
    let x = GpuTensor::from_host(&gpu, &common::rand_vec(2 * 64, 4), &[2, 64]).unwrap();
    let y = GpuTensor::zeros(&gpu, &[2, 24], f32::DTYPE).unwrap();

    let e = layer.forward(&x).unwrap_err();
    assert!(matches!(&e, Error::Unsupported(m) if m.contains("tune_async")), "{e}");
    let e = layer.tune(&[2], &QUICK).unwrap_err();
    assert!(matches!(&e, Error::Unsupported(m) if m.contains("_async")), "{e}");
    assert!(gpu.time_pass(1, |_| Ok(())).is_err());

    // Without timestamps a browser has no clock to time by.
    let tuned = layer.tune_async(&[2], &QUICK).await;
    if !gpu.capabilities().timestamps {
        assert!(matches!(tuned, Err(Error::Unsupported(_))), "{tuned:?}");
        return;
    }
    // Tuned first, the class needs no tuning inside the forward.
    tuned.unwrap();
    let t = gpu.time_pass_async(4, |pass| layer.record(pass, &x, &y)).await.unwrap();
    console_log!("time_pass_async: {t:?}");
    // 4 forwards, or a doubling of them where the browser's timestamps are coarse.
    assert_eq!(t.source, TimingSource::GpuTimestamps);
    assert!(t.iters % 4 == 0 && (t.iters / 4).is_power_of_two(), "{t:?}");
    assert!(t.per_iter > Duration::ZERO);
    // One small forward may fit between two of a browser's coarse timestamps: the pass is then
    // timed again with doubled repetitions until they advance, never an error.
    let one = gpu.time_pass_async(1, |pass| layer.record(pass, &x, &y)).await.unwrap();
    console_log!("time_pass_async(1): {one:?}");
    assert_eq!(one.source, TimingSource::GpuTimestamps);
    assert!(one.iters.is_power_of_two() && one.per_iter > Duration::ZERO, "{one:?}");
    let got: Vec<f32> = y.read_async().await.unwrap();
    let xs: Vec<f32> = x.read_async().await.unwrap();
    common::assert_linear_close(&got, &xs, &w, None, "timed forwards");
}
