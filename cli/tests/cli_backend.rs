//! Which backend `int8-wgpu quantize` runs by default: the GPU, unless its only adapter is a CPU
//! adapter (lavapipe, llvmpipe), where the CPU reference is faster and gives the same bytes;
//! `--gpu` runs on the adapter anyway. The report says which ran and why.

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

/// A model folder with two F32 linear layers.
fn write_model(dir: &Path) {
    let data: Vec<Vec<u8>> =
        (0..2).map(|i| bytemuck::cast_slice(&common::rand_vec(16 * 32, 3 + i as u64)).to_vec()).collect();
    let views: Vec<(String, TensorView<'_>)> = data
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("l{i}.weight"), TensorView::new(Dtype::F32, vec![16, 32], d).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    fs::write(dir.join("config.json"), r#"{"model_type": "toy"}"#).unwrap();
}

/// The report's "quantized N linear layers (…, on BACKEND)" line.
fn backend_line(stdout: &str) -> &str {
    stdout.lines().find(|l| l.starts_with("quantized 2 linear layers")).unwrap_or_else(|| panic!("{stdout}"))
}

#[test]
fn the_default_backend_is_the_faster_one_and_writes_the_same_bytes() {
    let Some(exe) = exe() else { return };
    let Some(gpu) = common::gpu() else { return };
    let (inp, out) = (TempDir::new("backend-in"), TempDir::new("backend-out"));
    write_model(inp.path());
    let (cpu, default, forced) = (out.path().join("cpu"), out.path().join("default"), out.path().join("gpu"));
    let i = inp.path().as_os_str();
    let s = OsStr::new;

    let (code, stdout, stderr) = run(exe, &[s("quantize"), i, cpu.as_os_str(), s("--cpu")]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(backend_line(&stdout).ends_with("on CPU reference)"), "{stdout}");

    let (code, stdout, stderr) = run(exe, &[s("quantize"), i, default.as_os_str()]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let want = if gpu.capabilities().cpu_adapter {
        let which = if std::env::var_os("WGPU_ADAPTER_NAME").is_some() { "chosen" } else { "only" };
        format!(
            "on the CPU reference: the {which} GPU adapter, {}, is a CPU adapter, slower than the reference; --gpu \
             uses it)",
            gpu.describe()
        )
    } else {
        format!("on {})", gpu.describe())
    };
    assert!(backend_line(&stdout).ends_with(&want), "{stdout}\nwant: {want}");

    let (code, stdout, stderr) = run(exe, &[s("quantize"), i, forced.as_os_str(), s("--gpu")]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(backend_line(&stdout).ends_with(&format!("on {})", gpu.describe())), "{stdout}");

    for d in [&default, &forced] {
        assert_eq!(fs::read(d.join("model.safetensors")).unwrap(), fs::read(cpu.join("model.safetensors")).unwrap());
        assert_eq!(fs::read(d.join("config.json")).unwrap(), fs::read(cpu.join("config.json")).unwrap());
    }

    let (code, _, stderr) = run(exe, &[s("quantize"), i, out.path().join("x").as_os_str(), s("--cpu"), s("--gpu")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("the argument '--cpu' cannot be used with '--gpu'"), "{stderr}");
}

/// Without an adapter (DX12 on Linux has none), the default quantizes on the CPU reference and
/// says why; `--gpu` is an error that names `--cpu`.
#[cfg(target_os = "linux")]
#[test]
fn no_adapter_means_the_cpu_reference_unless_gpu_is_asked_for() {
    let Some(exe) = exe() else { return };
    let (inp, out) = (TempDir::new("noadapter-in"), TempDir::new("noadapter-out"));
    write_model(inp.path());
    let (i, s) = (inp.path().as_os_str(), OsStr::new);
    let (dflt, cpu) = (out.path().join("default"), out.path().join("cpu"));
    let (code, stdout, stderr) = common::run_cli(exe, &[s("quantize"), i, dflt.as_os_str()], Some("dx12"));
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let line = backend_line(&stdout);
    assert!(line.contains("on the CPU reference: no GPU adapter for backends dx12 ("), "{stdout}");
    let (code, stdout, stderr) = common::run_cli(exe, &[s("quantize"), i, cpu.as_os_str(), s("--cpu")], Some("dx12"));
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(fs::read(dflt.join("model.safetensors")).unwrap(), fs::read(cpu.join("model.safetensors")).unwrap());

    let forced = out.path().join("gpu");
    let (code, _, stderr) = common::run_cli(exe, &[s("quantize"), i, forced.as_os_str(), s("--gpu")], Some("dx12"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.starts_with("error: no GPU adapter found for backends "), "{stderr}");
    assert!(stderr.contains("or quantize on the CPU reference with --cpu"), "{stderr}");
    assert!(!forced.exists());
}

/// A `WGPU_BACKEND` that names no backend is an error saying so, not a silent fall back to the
/// CPU reference as if there were no adapter.
#[test]
fn an_unknown_wgpu_backend_is_an_error() {
    let Some(exe) = exe() else { return };
    let (inp, out) = (TempDir::new("bogus-in"), TempDir::new("bogus-out"));
    write_model(inp.path());
    let dest = out.path().join("q");
    let (code, _, stderr) =
        common::run_cli(exe, &[OsStr::new("quantize"), inp.path().as_os_str(), dest.as_os_str()], Some("bogus"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("WGPU_BACKEND=\"bogus\" names no backend wgpu knows"), "{stderr}");
    assert!(!dest.exists());
}
