//! `int8-wgpu quantize --method w8a8 | llm-int8` and `inspect` of their outputs, and the CLI's
//! refusals of what int8 activations cannot run.

mod common;

use common::TempDir;
use common::a8_model::write_model;
use int8_wgpu::DType;

#[test]
fn cli_quantize_w8a8_and_llm_int8_and_inspect() {
    let exe = env!("CARGO_BIN_EXE_int8-wgpu");
    let run = |args: &[&std::ffi::OsStr]| {
        let o = std::process::Command::new(exe).args(args).env("XDG_RUNTIME_DIR", "/tmp").output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (inp, out) = (TempDir::new("a8-cli-in"), TempDir::new("a8-cli-out"));
    write_model(inp.path(), DType::F32);
    let (i, a8, l8) = (inp.path().as_os_str(), out.path().join("a8"), out.path().join("l8"));
    let s = |s: &'static str| std::ffi::OsStr::new(s);

    let (code, stdout, stderr) = run(&[s("quantize"), i, a8.as_os_str(), s("--cpu"), s("--method"), s("w8a8")]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("quantized 2 linear layers (w8a8, sym channel"), "{stdout}");
    let (code, stdout, _) = run(&[s("inspect"), a8.as_os_str()]);
    assert_eq!(code, Some(0));
    assert!(
        stdout
            .contains("compressed-tensors, int-quantized; method w8a8, activations bf16 quantized to int8 per token)"),
        "{stdout}"
    );

    let args =
        [s("quantize"), i, l8.as_os_str(), s("--cpu"), s("--method"), s("llm-int8"), s("--outlier-threshold"), s("5")];
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let (_, stdout, _) = run(&[s("inspect"), l8.as_os_str()]);
    assert!(
        stdout.contains("method llm-int8, activations bf16 quantized to int8 per token, columns with |x| >= 5 kept)"),
        "{stdout}"
    );

    let bad = out.path().join("bad");
    for (args, needle) in [
        (vec![s("--method"), s("w8a8"), s("--scheme"), s("asym")], "w8a8 quantizes activations per token"),
        (vec![s("--method"), s("llm-int8"), s("--group-size"), s("8")], "not sym group 8"),
        (vec![s("--outlier-threshold"), s("5")], "applies to the llm-int8 method only"),
        (vec![s("--method"), s("llm-int8"), s("--outlier-threshold"), s("-1")], "outlier threshold is -1"),
    ] {
        let args = [vec![s("quantize"), i, bad.as_os_str(), s("--cpu")], args].concat();
        let (code, _, stderr) = run(&args);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains(needle) && !stderr.contains("panicked"), "{stderr}");
    }
    assert!(!bad.exists());
}
