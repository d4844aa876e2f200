//! Kernel choice by measurement (`Gpu::tune`): what it picks stays within the oracle's
//! tolerance, choices survive a save and load, bad files are refused, explicit options win.
//! Nothing here asserts a time: which variant wins depends on the machine's load.

mod common;

use std::time::Duration;

use half::{bf16, f16};
use int8_wgpu::gpu::{LinearKernel, TuneOptions};
use int8_wgpu::{
    ActivationQuant, DType, Element, Error, Gpu, GpuOptions, Granularity, QuantScheme, QuantizedLinear, reference,
};
use serde_json::Value;

/// Few, short rounds: these tests check choices and results, not speed.
const QUICK: TuneOptions = TuneOptions { rounds: 2, min_sample: Duration::from_micros(500), margin: 0.0 };

fn fresh(options: GpuOptions) -> Gpu {
    Gpu::with_options(options).expect("a second device on the test adapter")
}

/// Runs `m` rows through a new layer of `w` on `gpu` and checks them against the f64 oracle.
fn check<T: Element>(gpu: &Gpu, w: &int8_wgpu::QuantizedTensor, m: usize, ctx: &str) {
    let k = w.shape()[1];
    let x: Vec<T> = common::rand_vec(m * k, m as u64).iter().map(|&v| T::from_f32(v)).collect();
    let b: Vec<T> = common::rand_vec(w.shape()[0], 7).iter().map(|&v| T::from_f32(v)).collect();
    let layer = QuantizedLinear::from_quantized(gpu, w, Some(&b), T::DTYPE).unwrap();
    let y = layer.forward_host(&x, &[m, k]).unwrap();
    common::assert_linear_close(&y, &x, w, Some(&b), &format!("{ctx} {} m={m}", T::DTYPE));
}

fn weight(n: usize, k: usize, scheme: QuantScheme) -> int8_wgpu::QuantizedTensor {
    reference::quantize(&common::rand_vec(n * k, (n * k) as u64), &[n, k], scheme).unwrap()
}

#[test]
fn tuning_picks_a_candidate_and_the_layer_stays_exact() {
    let _ = gpu_or_skip!();
    let gpu = fresh(GpuOptions::default());
    let asym16 = QuantScheme::asymmetric(Granularity::PerGroup { size: 16 });
    let asym_ch = QuantScheme::asymmetric(Granularity::PerChannel { axis: 0 });
    // Row lengths that suit every GEMV (64), whole rows and the generic one (20), only the
    // generic one (17); 12 rows add the GEMM and passes of 8.
    for (i, (n, k, s)) in
        [(33, 64, QuantScheme::default()), (9, 48, asym16), (17, 20, QuantScheme::default()), (5, 17, asym_ch)]
            .into_iter()
            .enumerate()
    {
        let w = weight(n, k, s);
        let dtype = [DType::F32, DType::F16, DType::BF16][i % 3];
        let layer = QuantizedLinear::from_quantized::<f32>(&gpu, &w, None, dtype).unwrap();
        let report = layer.tune(&[1, 5, 12], &QUICK).unwrap();
        assert_eq!(report.results.len(), 3);
        for r in &report.results {
            let names: Vec<LinearKernel> = r.candidates.iter().map(|c| c.kernel).collect();
            let ctx = format!("[{n}, {k}] {dtype} m={}: {names:?}", r.rows);
            assert!(names.contains(&r.chosen) && names.contains(&r.heuristic), "{ctx}: chose {}", r.chosen);
            assert_eq!(names.contains(&LinearKernel::Gemm), r.rows > 8, "{ctx}");
            assert_eq!(names.contains(&LinearKernel::GemvRows), k % 4 == 0, "{ctx}");
            assert_eq!(names.contains(&LinearKernel::GemvLanes { rows_per_group: 4 }), k % 16 == 0, "{ctx}");
            assert!(r.candidates.iter().all(|c| c.median > Duration::ZERO && c.iters >= 1), "{ctx}");
            let label = match r.rows {
                1 => "1",
                5 => "2-8",
                _ => "9-32",
            };
            assert!(format!("{} ", r.class).contains(&format!(" rows {label} ")), "{ctx}: {}", r.class);
            assert_eq!(gpu.linear_kernel(layer.weight(), dtype, None, r.rows), r.chosen, "{ctx}");
        }
        // The report prints one row per result.
        assert_eq!(report.to_string().lines().count(), 2 + 3);
        for m in [1, 5, 12] {
            match dtype {
                DType::F32 => check::<f32>(&gpu, &w, m, "tuned"),
                DType::F16 => check::<f16>(&gpu, &w, m, "tuned"),
                DType::BF16 => check::<bf16>(&gpu, &w, m, "tuned"),
            }
        }
    }
    assert_eq!(gpu.tuning().len(), 4 * 3);
    gpu.clear_tuning();
    assert!(gpu.tuning().is_empty());
}

#[test]
fn the_heuristic_keeps_its_place_within_the_margin() {
    let _ = gpu_or_skip!();
    let gpu = fresh(GpuOptions::default());
    let layer = QuantizedLinear::from_quantized::<f32>(&gpu, &weight(33, 64, QuantScheme::default()), None, DType::F32)
        .unwrap();
    // No candidate is a billion times faster: the heuristic's choice is recorded.
    let report = layer.tune(&[1, 12], &TuneOptions { margin: 1e9, ..QUICK }).unwrap();
    for r in &report.results {
        assert_eq!(r.chosen, r.heuristic, "m={}", r.rows);
        assert!(r.candidates.len() > 1);
    }
}

#[test]
fn saved_choices_load_on_a_fresh_device() {
    let _ = gpu_or_skip!();
    let gpu = fresh(GpuOptions::default());
    let w = weight(33, 64, QuantScheme::default());
    let layer = QuantizedLinear::from_quantized::<f32>(&gpu, &w, None, DType::F16).unwrap();
    layer.tune(&[1, 3, 9], &QUICK).unwrap();
    let dir = common::TempDir::new("tuning");
    let path = dir.path().join("tuning.json");
    gpu.save_tuning(&path).unwrap();
    // The temporary file was renamed into place.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let other = fresh(GpuOptions::default());
    assert_eq!(other.load_tuning(&path).unwrap(), 3);
    assert_eq!(other.tuning(), gpu.tuning());
    let wo = int8_wgpu::GpuQuantizedTensor::from_host(&other, &w).unwrap();
    for m in [1, 3, 9] {
        assert_eq!(
            other.linear_kernel(&wo, DType::F16, None, m),
            gpu.linear_kernel(layer.weight(), DType::F16, None, m)
        );
    }
    let again = dir.path().join("again.json");
    other.save_tuning(&again).unwrap();
    assert_eq!(std::fs::read_to_string(&again).unwrap(), std::fs::read_to_string(&path).unwrap());
}

/// This adapter's saved tuning of a [33, 64] f32 layer at 1, 3 and 12 rows, as JSON.
fn saved_tuning() -> Value {
    let gpu = fresh(GpuOptions::default());
    let w = weight(33, 64, QuantScheme::default());
    QuantizedLinear::from_quantized::<f32>(&gpu, &w, None, DType::F32).unwrap().tune(&[1, 3, 12], &QUICK).unwrap();
    let dir = common::TempDir::new("tuning-doc");
    gpu.save_tuning(dir.path().join("t.json")).unwrap();
    serde_json::from_str(&std::fs::read_to_string(dir.path().join("t.json")).unwrap()).unwrap()
}

/// `doc` with every entry's variant set by `variant(row class)`, written into `dir`.
fn rewritten(doc: &Value, dir: &common::TempDir, variant: impl Fn(&str) -> &'static str) -> std::path::PathBuf {
    let mut doc = doc.clone();
    for e in doc["entries"].as_array_mut().unwrap() {
        let v = variant(e["rows"].as_str().unwrap());
        e["variant"] = v.into();
    }
    let path = dir.path().join("rewritten.json");
    std::fs::write(&path, serde_json::to_string(&doc).unwrap()).unwrap();
    path
}

#[test]
fn every_variant_a_file_can_choose_stays_exact() {
    let _ = gpu_or_skip!();
    let (doc, dir) = (saved_tuning(), common::TempDir::new("tuning-variants"));
    let gpu = fresh(GpuOptions::default());
    let w = weight(33, 64, QuantScheme::default());
    let wg = int8_wgpu::GpuQuantizedTensor::from_host(&gpu, &w).unwrap();
    for name in ["rows", "rows16", "rows16/wide", "lanes/1", "lanes/2", "lanes/4", "generic", "gemm"] {
        let v = name.parse::<LinearKernel>().unwrap();
        // The GEMM only serves more than one pass; the GEMV classes keep a GEMV there.
        let path = rewritten(&doc, &dir, |rows| if name == "gemm" && rows != "9-32" { "generic" } else { name });
        gpu.clear_tuning();
        assert_eq!(gpu.load_tuning(&path).unwrap(), 3);
        for m in [1, 3, 12] {
            let expect = if name == "gemm" && m <= 8 { LinearKernel::GemvGeneric } else { v };
            assert_eq!(gpu.linear_kernel(&wg, DType::F32, None, m), expect, "{name} m={m}");
            check::<f32>(&gpu, &w, m, name);
        }
    }
}

#[test]
fn explicit_options_win_over_tuning() {
    let _ = gpu_or_skip!();
    let (doc, dir) = (saved_tuning(), common::TempDir::new("tuning-options"));
    let w = weight(33, 64, QuantScheme::default());
    let generic = rewritten(&doc, &dir, |_| "generic");
    let cases: [(GpuOptions, [LinearKernel; 2]); 4] = [
        (GpuOptions::default(), [LinearKernel::GemvGeneric; 2]),
        (GpuOptions { gemv_rows_per_thread: Some(true), ..Default::default() }, [LinearKernel::GemvRows; 2]),
        (
            GpuOptions { gemv_rows_per_thread: Some(false), gemv_rows_per_group: Some(2), ..Default::default() },
            [LinearKernel::GemvLanes { rows_per_group: 2 }; 2],
        ),
        // gemm_min_rows decides GEMM or passes; the tuned GEMV still serves one pass.
        (GpuOptions { gemm_min_rows: Some(9), ..Default::default() }, [LinearKernel::GemvGeneric, LinearKernel::Gemm]),
    ];
    for (options, [one, twelve]) in cases {
        let gpu = fresh(options.clone());
        gpu.load_tuning(&generic).unwrap();
        let wg = int8_wgpu::GpuQuantizedTensor::from_host(&gpu, &w).unwrap();
        assert_eq!(gpu.linear_kernel(&wg, DType::F32, None, 1), one, "{options:?}");
        assert_eq!(gpu.linear_kernel(&wg, DType::F32, None, 12), twelve, "{options:?}");
        check::<f32>(&gpu, &w, 12, &format!("{options:?}"));
    }
    // A tuned GEMM gives way to passes when the option puts the GEMM out of reach.
    let gemm = rewritten(&doc, &dir, |rows| if rows == "9-32" { "gemm" } else { "lanes/1" });
    let gpu = fresh(GpuOptions { gemm_min_rows: Some(usize::MAX), ..Default::default() });
    gpu.load_tuning(&gemm).unwrap();
    let wg = int8_wgpu::GpuQuantizedTensor::from_host(&gpu, &w).unwrap();
    assert_ne!(gpu.linear_kernel(&wg, DType::F32, None, 12), LinearKernel::Gemm);
}

#[test]
fn corrupt_and_foreign_files_are_refused_whole() {
    let _ = gpu_or_skip!();
    let (doc, dir) = (saved_tuning(), common::TempDir::new("tuning-bad"));
    let gpu = fresh(GpuOptions::default());
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let edited = |edit: &dyn Fn(&mut Value)| {
        let mut d = doc.clone();
        edit(&mut d);
        serde_json::to_string(&d).unwrap()
    };
    let corrupt = [
        write("truncated.json", serde_json::to_string(&doc).unwrap()[..40].to_string()),
        write("other.json", r#"{"format": "something else", "version": 1}"#.into()),
        write("variant.json", edited(&|d| d["entries"][2]["variant"] = "lanes/3".into())),
        write("class.json", edited(&|d| d["entries"][0]["in_class"] = 48.into())),
        write("gemm.json", edited(&|d| d["entries"][0]["variant"] = "gemm".into())),
        write("entries.json", edited(&|d| d["entries"] = "none".into())),
        // A variant of the other family.
        write("family.json", edited(&|d| d["entries"][0]["family"] = "linear_a8".into())),
        write("a8.json", edited(&|d| d["entries"][2]["variant"] = "a8/gemm".into())),
    ];
    for p in &corrupt {
        let e = gpu.load_tuning(p).unwrap_err();
        assert!(matches!(e, Error::TuningCorrupt { .. }), "{}: {e}", p.display());
        assert!(e.to_string().contains("tune again"), "{e}");
    }
    let foreign = [
        write("adapter.json", edited(&|d| d["adapter"]["name"] = "Some Other GPU".into())),
        write("driver.json", edited(&|d| d["adapter"]["driver_info"] = "Mesa 99.0".into())),
        write("version.json", edited(&|d| d["version"] = 2.into())),
    ];
    for p in &foreign {
        let e = gpu.load_tuning(p).unwrap_err();
        assert!(matches!(e, Error::TuningMismatch { .. }), "{}: {e}", p.display());
    }
    // Nothing of any refused file was loaded, not even its valid entries.
    assert!(gpu.tuning().is_empty());
    assert!(matches!(gpu.load_tuning(dir.path().join("missing.json")), Err(Error::Io { .. })));
    // Entries of a family a later version tunes are skipped; the rest load.
    let later = write("later.json", edited(&|d| d["entries"][0]["family"] = "linear_w4".into()));
    assert_eq!(gpu.load_tuning(&later).unwrap(), 2);
}

#[test]
fn tuning_refuses_bad_cases() {
    let gpu = gpu_or_skip!();
    let other = fresh(GpuOptions::default());
    let w = weight(4, 16, QuantScheme::default());
    let wg = int8_wgpu::GpuQuantizedTensor::from_host(&other, &w).unwrap();
    let case = |rows| int8_wgpu::gpu::TuneCase { weight: &wg, activation: DType::F32, rows, a8: false };
    assert!(matches!(gpu.tune(&[case(&[1])], &QUICK), Err(Error::Gpu(_))));
    assert!(matches!(other.tune(&[case(&[0])], &QUICK), Err(Error::Shape(_))));
    // Row counts past the kernels' 32-bit indexing (or usize) are refused before any allocation.
    for rows in [usize::MAX, 1 << 40, 1 << 29] {
        let rows = [1, rows];
        let big = int8_wgpu::gpu::TuneCase { weight: &wg, activation: DType::F32, rows: &rows, a8: false };
        match other.tune(&[big], &QUICK) {
            Err(Error::TooLarge { what, .. }) => assert!(what.contains("tuning activation"), "{what}"),
            r => panic!("{rows:?} rows: {r:?}"),
        }
    }
    // Options that cannot measure.
    for bad in [
        TuneOptions { rounds: 0, ..QUICK },
        TuneOptions { margin: f64::NAN, ..QUICK },
        TuneOptions { margin: -0.1, ..QUICK },
        TuneOptions { margin: f64::INFINITY, ..QUICK },
    ] {
        match other.tune(&[case(&[1])], &bad) {
            Err(Error::InvalidOption(m)) => assert!(m.contains("TuneOptions::"), "{m}"),
            r => panic!("{bad:?}: {r:?}"),
        }
    }
    assert!(other.tuning().is_empty());
    // Int8 activations need symmetric weights with one scale per row or tensor.
    let asym = weight(4, 16, QuantScheme::asymmetric(Granularity::PerChannel { axis: 0 }));
    let wa = int8_wgpu::GpuQuantizedTensor::from_host(&gpu, &asym).unwrap();
    let int8 = int8_wgpu::gpu::TuneCase { weight: &wa, activation: DType::F32, rows: &[1], a8: true };
    assert!(matches!(gpu.tune(&[int8], &QUICK), Err(Error::Scheme(_))));
    assert!(gpu.tuning().is_empty());
}

/// Runs `m` rows of activations with outlier columns through a new int8-activation layer of `w`
/// (LLM.int8(), threshold 2) and checks it against the oracle.
fn check_int8(gpu: &Gpu, w: &int8_wgpu::QuantizedTensor, m: usize, ctx: &str) {
    let (n, k) = (w.shape()[0], w.shape()[1]);
    let act = ActivationQuant::llm_int8(2.0).unwrap();
    let mut xf = common::rand_vec(m * k, 40 + m as u64);
    xf[k - 1] = -5.0;
    let x: Vec<bf16> = common::to_dtype(&xf);
    let b: Vec<bf16> = common::to_dtype(&common::rand_vec(n, 41));
    let layer =
        QuantizedLinear::from_quantized(gpu, w, Some(&b), DType::BF16).unwrap().with_activation_quant(act).unwrap();
    let y = layer.forward_host(&x, &[m, k]).unwrap();
    common::assert_a8_close(&y, &x, w, Some(&b), act, &format!("{ctx} m={m}"));
}

#[test]
fn int8_activation_layers_tune_their_own_kernels() {
    let _ = gpu_or_skip!();
    let (gpu, plain) = (fresh(GpuOptions::default()), fresh(GpuOptions::default()));
    // 16-byte units (64), words only (40), sixteen-row invocations with a tail of twelve (300).
    for (n, k) in [(33, 64), (20, 40), (300, 32)] {
        let w = weight(n, k, QuantScheme::default());
        let layer = QuantizedLinear::from_quantized::<f32>(&gpu, &w, None, DType::BF16)
            .unwrap()
            .with_activation_quant(ActivationQuant::per_token())
            .unwrap();
        let report = layer.tune(&[1, 5, 12], &QUICK).unwrap();
        for r in &report.results {
            let names: Vec<LinearKernel> = r.candidates.iter().map(|c| c.kernel).collect();
            let ctx = format!("[{n}, {k}] m={}: {names:?}", r.rows);
            assert!(names.iter().all(|v| v.is_a8()), "{ctx}");
            assert!(names.contains(&r.chosen) && names.contains(&r.heuristic), "{ctx}: chose {}", r.chosen);
            assert_eq!(names.contains(&LinearKernel::A8Gemm), r.rows > 8, "{ctx}");
            assert_eq!(names.contains(&LinearKernel::A8Rows16), k % 16 == 0, "{ctx}");
            assert_eq!(names.contains(&LinearKernel::A8Rows16Wide), k % 16 == 0 && r.rows > 1, "{ctx}");
            assert!(r.class.to_string().starts_with("linear_a8 "), "{ctx}");
            assert_eq!(
                gpu.linear_kernel(layer.weight(), DType::BF16, Some(ActivationQuant::per_token()), r.rows),
                r.chosen,
                "{ctx}"
            );
            // The weight-only class of the same shape is untouched.
            let wp = int8_wgpu::GpuQuantizedTensor::from_host(&plain, &w).unwrap();
            let weight_only = plain.linear_kernel(&wp, DType::BF16, None, r.rows);
            assert_eq!(gpu.linear_kernel(layer.weight(), DType::BF16, None, r.rows), weight_only, "{ctx}");
        }
        for m in [1, 5, 12] {
            check_int8(&gpu, &w, m, &format!("tuned [{n}, {k}]"));
        }
    }
    assert_eq!(gpu.tuning().len(), 3 * 3);

    // Every int8 variant a file can choose runs exactly, and survives a save and load.
    let dir = common::TempDir::new("tuning-int8");
    let path = dir.path().join("t.json");
    gpu.save_tuning(&path).unwrap();
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let w = weight(300, 32, QuantScheme::default());
    for name in ["a8/rows", "a8/rows16", "a8/rows16/wide", "a8/gemm"] {
        let v = name.parse::<LinearKernel>().unwrap();
        let file = rewritten(&doc, &dir, |rows| if name == "a8/gemm" && rows != "9-32" { "a8/rows" } else { name });
        let other = fresh(GpuOptions::default());
        assert_eq!(other.load_tuning(&file).unwrap(), 9);
        let wo = int8_wgpu::GpuQuantizedTensor::from_host(&other, &w).unwrap();
        for m in [1, 5, 12] {
            let expect = if name == "a8/gemm" && m <= 8 { LinearKernel::A8Rows } else { v };
            assert_eq!(
                other.linear_kernel(&wo, DType::BF16, Some(ActivationQuant::per_token()), m),
                expect,
                "{name} m={m}"
            );
            check_int8(&other, &w, m, name);
        }
    }
}

#[test]
fn first_use_tunes_each_class_once() {
    let _ = gpu_or_skip!();
    let gpu = fresh(GpuOptions { tune_on_first_use: Some(QUICK), ..Default::default() });
    let w = weight(33, 64, QuantScheme::default());
    check::<f32>(&gpu, &w, 3, "first use");
    let tuned = gpu.tuning();
    assert_eq!(tuned.len(), 1);
    assert!(tuned[0].0.to_string().contains(" rows 2-8"), "{}", tuned[0].0);
    // Another layer of the class ([40, 60] rounds up to [64, 64] too), at another row count of
    // the class, runs the recorded choice without timing again.
    check::<f32>(&gpu, &weight(40, 60, QuantScheme::default()), 5, "same class");
    assert_eq!(gpu.tuning(), tuned);
    check::<f32>(&gpu, &w, 1, "one row");
    assert_eq!(gpu.tuning().len(), 2);
}
