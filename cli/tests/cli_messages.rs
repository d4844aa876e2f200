//! What `int8-wgpu` says about input it refuses or has little to say about: an outlier threshold
//! f32 cannot hold, a model without linear weights, and a folder `quantize` refuses as already
//! quantized, which `inspect` must call quantized too.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::path::Path;

use common::TempDir;
use safetensors::Dtype;
use safetensors::tensor::TensorView;

use common::cli_exe as exe;

/// Runs the CLI: exit code, stdout, stderr.
fn run(exe: &str, args: &[&OsStr]) -> (Option<i32>, String, String) {
    common::run_cli(exe, args, None)
}

/// `model.safetensors` with one F32 tensor `name` of `shape`.
fn write_tensor(dir: &Path, name: &str, shape: &[usize]) {
    let data: Vec<u8> = vec![0; shape.iter().product::<usize>() * 4];
    let views = [(name, TensorView::new(Dtype::F32, shape.to_vec(), &data).unwrap())];
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
}

#[test]
fn an_outlier_threshold_f32_cannot_hold_is_quoted_as_given() {
    let Some(exe) = exe() else { return };
    let (inp, out) = (TempDir::new("thr-in"), TempDir::new("thr-out"));
    write_tensor(inp.path(), "l.weight", &[4, 4]);
    let s = OsStr::new;
    for (t, why) in [
        ("1e39", "outlier threshold 1e39 is beyond f32's range (max 3.4028235e38)"),
        ("-1e39", "outlier threshold -1e39 is beyond f32's range (max 3.4028235e38)"),
        ("1e-50", "outlier threshold 1e-50 is below f32's smallest positive value (1e-45)"),
    ] {
        let dest = out.path().join("q");
        let args = [s("quantize"), inp.path().as_os_str(), dest.as_os_str(), s("--method"), s("llm-int8")];
        let (code, stdout, stderr) = run(exe, &[&args[..], &[s("--outlier-threshold"), s(t)]].concat());
        assert_eq!(code, Some(2), "{stdout}\n{stderr}");
        assert!(
            stderr.starts_with(&format!("error: invalid value '{t}' for '--outlier-threshold <X>': {why}\n")),
            "{stderr}"
        );
        assert!(!dest.exists());
    }
}

#[test]
fn inspect_agrees_with_quantize_and_has_words_for_no_weights() {
    let Some(exe) = exe() else { return };
    let s = OsStr::new;
    // No linear weight at all: nothing to compare, no "0.00x smaller".
    let d = TempDir::new("insp-none");
    write_tensor(d.path(), "model.norm.weight", &[16]);
    let (code, stdout, stderr) = run(exe, &[s("inspect"), d.path().as_os_str()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("linear weights (0)          0 B          0 B   no weights\n"), "{stdout}");
    assert!(!stdout.contains("0.00x"), "{stdout}");
    // Nothing quantizes, so the model keeps its size: not "1.00x smaller".
    assert!(stdout.contains("model                      64 B         64 B   same size\n"), "{stdout}");

    // A quantization_config in a layout this crate does not read (here GPTQ): quantize refuses it
    // as already quantized, and inspect says so, for the same reason.
    fs::write(d.path().join("config.json"), r#"{"quantization_config": {"quant_method": "gptq", "bits": 4}}"#).unwrap();
    let out = TempDir::new("insp-out");
    let dest = out.path().join("q");
    let (code, _, stderr) = run(exe, &[s("quantize"), d.path().as_os_str(), dest.as_os_str(), s("--cpu")]);
    assert_eq!(code, Some(1));
    let why = "already quantized (its config.json has a quantization_config)";
    assert!(stderr.contains(why), "{stderr}");
    let (code, stdout, stderr) = run(exe, &[s("inspect"), d.path().as_os_str()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(&format!(
            "\n{why}, but no layer is in a layout this crate reads (compressed-tensors 8-bit pack-quantized or \
             int-quantized, bitsandbytes 8-bit)\nmodel                      64 B"
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("not quantized"), "{stdout}");
}

/// One layer is "1 linear layer"; an output that holds the input says so (not "would be inside
/// the input"); a link that loops is not called dangling.
#[test]
fn singular_layers_an_output_holding_the_input_and_looping_links() {
    let Some(exe) = exe() else { return };
    let s = OsStr::new;
    let (inp, out) = (TempDir::new("msg-in"), TempDir::new("msg-out"));
    let data: Vec<u8> = bytemuck::cast_slice(&common::rand_vec(16 * 32, 5)).to_vec();
    let views = [("l.weight", TensorView::new(Dtype::F32, vec![16, 32], &data).unwrap())];
    safetensors::serialize_to_file(views, None, &inp.path().join("model.safetensors")).unwrap();
    let dest = out.path().join("q");
    let (code, stdout, stderr) = run(exe, &[s("quantize"), inp.path().as_os_str(), dest.as_os_str(), s("--cpu")]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("\nquantized 1 linear layer (w8a16"), "{stdout}");
    let (code, stdout, stderr) = run(exe, &[s("inspect"), dest.as_os_str()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("\n1 quantized linear layer ("), "{stdout}");

    let file = inp.path().join("model.safetensors");
    let (code, _, stderr) = run(exe, &[s("quantize"), file.as_os_str(), inp.path().as_os_str(), s("--cpu")]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "error: checkpoint error: the output `{}` holds the input `{}`; choose a separate output folder\n",
            inp.path().display(),
            file.display()
        )
    );

    let looping = out.path().join("loop");
    std::os::unix::fs::symlink(&looping, &looping).unwrap();
    let (code, _, stderr) = run(exe, &[s("quantize"), inp.path().as_os_str(), looping.as_os_str(), s("--cpu")]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "output `{}` already exists: a symbolic link that loops to `{}`;",
            looping.display(),
            looping.display()
        )),
        "{stderr}"
    );
}
