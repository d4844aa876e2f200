//! Tuning as JSON text (`Gpu::tuning_json`, `Gpu::load_tuning_json`, for browsers): the text is
//! what a tuning file holds, loads on a fresh device, and corrupt or foreign text is refused
//! whole with the errors a file gets, naming `tuning JSON text`.

mod common;

use std::time::Duration;

use int8_wgpu::gpu::TuneOptions;
use int8_wgpu::{DType, Error, Gpu, GpuOptions, QuantScheme, QuantizedLinear, reference};
use serde_json::Value;

/// Few, short rounds: these tests check the text, not speed.
const QUICK: TuneOptions = TuneOptions { rounds: 2, min_sample: Duration::from_micros(500), margin: 0.0 };

fn fresh() -> Gpu {
    Gpu::with_options(GpuOptions::default()).expect("a second device on the test adapter")
}

/// A device that tuned a [33, 64] layer at 1, 3 and 9 rows.
fn tuned() -> Gpu {
    let gpu = fresh();
    let w = reference::quantize(&common::rand_vec(33 * 64, 5), &[33, 64], QuantScheme::default()).unwrap();
    let layer = QuantizedLinear::from_quantized::<f32>(&gpu, &w, None, DType::F16).unwrap();
    layer.tune(&[1, 3, 9], &QUICK).unwrap();
    gpu
}

#[test]
fn tuning_json_is_the_file_and_loads_on_a_fresh_device() {
    let _ = gpu_or_skip!();
    let gpu = tuned();
    let text = gpu.tuning_json().unwrap();
    let dir = common::TempDir::new("tuning-json");
    let path = dir.path().join("tuning.json");
    gpu.save_tuning(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "the file holds the text");

    let other = fresh();
    assert_eq!(other.load_tuning_json(&text).unwrap(), 3);
    assert_eq!(other.tuning(), gpu.tuning());
    assert_eq!(other.tuning_json().unwrap(), text);
    // The file loads as the text does.
    let third = fresh();
    assert_eq!(third.load_tuning(&path).unwrap(), 3);
    assert_eq!(third.tuning(), gpu.tuning());
}

#[test]
fn corrupt_and_foreign_text_is_refused_whole() {
    let _ = gpu_or_skip!();
    let text = tuned().tuning_json().unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let edited = |edit: &dyn Fn(&mut Value)| {
        let mut d = doc.clone();
        edit(&mut d);
        serde_json::to_string(&d).unwrap()
    };
    let gpu = fresh();
    let corrupt = [
        text[..40].to_string(),
        edited(&|d| d["entries"][0]["variant"] = "gemm".into()),
        edited(&|d| d["entries"] = "none".into()),
        edited(&|d| d["format"] = "something else".into()),
    ];
    for t in &corrupt {
        let e = gpu.load_tuning_json(t).unwrap_err();
        assert!(matches!(&e, Error::TuningCorrupt { path, .. } if path.as_os_str().is_empty()), "{e:?}");
        assert!(e.to_string().starts_with("tuning JSON text is corrupt: "), "{e}");
        assert!(e.to_string().ends_with("; delete it and tune again"), "{e}");
    }
    let huge = format!("{text}{}", " ".repeat(5 << 20));
    let e = gpu.load_tuning_json(&huge).unwrap_err();
    assert!(matches!(e, Error::TuningCorrupt { .. }), "{e:?}");
    assert!(e.to_string().contains(&format!("it is {} bytes; tuning files are at most 4194304", huge.len())), "{e}");
    for t in [edited(&|d| d["adapter"]["name"] = "Some Other GPU".into()), edited(&|d| d["version"] = 2.into())] {
        let e = gpu.load_tuning_json(&t).unwrap_err();
        assert!(matches!(e, Error::TuningMismatch { .. }), "{e:?}");
        assert!(e.to_string().starts_with("tuning JSON text does not apply here: "), "{e}");
    }
    // Nothing of any refused text was loaded, not even its valid entries.
    assert!(gpu.tuning().is_empty());
    // Entries of a family a later version tunes are skipped; the rest load.
    assert_eq!(gpu.load_tuning_json(&edited(&|d| d["entries"][0]["family"] = "linear_w4".into())).unwrap(), 2);
}
