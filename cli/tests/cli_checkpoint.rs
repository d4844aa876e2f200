//! `int8-wgpu quantize` and `inspect` on the synthetic checkpoint of the library's checkpoint
//! tests: reports, warnings, errors with exit status 1, zero-size weights, files the checkpoint
//! does not read, and a FIFO as the input (an error, not a hang).

mod common;

use std::fs;
use std::path::Path;

use common::TempDir;
use common::model::*;
use int8_wgpu::DType;

#[test]
fn cli_quantize_inspect_and_errors() {
    let exe = env!("CARGO_BIN_EXE_int8-wgpu");
    use std::ffi::OsString;
    let run = |args: Vec<OsString>| {
        let o = std::process::Command::new(exe).args(args).env("XDG_RUNTIME_DIR", "/tmp").output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (o.status.code(), text(&o.stdout), text(&o.stderr))
    };
    let a = |s: &str| OsString::from(s);
    let p = |p: &Path| p.as_os_str().to_owned();
    let inp = TempDir::new("cli-in");
    write_model(inp.path(), DType::F32);
    let out = TempDir::new("cli-out");
    let dest = out.path().join("q");

    let args = vec![a("quantize"), p(inp.path()), p(&dest), a("--cpu"), a("--scheme"), a("asym")];
    let args = [args, vec![a("--group-size"), a("5"), a("--exclude"), a("*nothing*")]].concat();
    let (code, stdout, stderr) = run(args);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("quantized 4 linear layers (w8a16, asym group 5, on CPU reference)"), "{stdout}");
    assert!(stdout.contains("linear weights:") && stdout.contains("model.layers.0.mlp.down_proj"), "{stdout}");
    assert!(stdout.contains("warning: exclude pattern `*nothing*` matches no tensor"), "{stdout}");
    assert!(!stderr.contains("vLLM"), "group scales have a vLLM kernel: {stderr}");
    // Per-tensor scales load in transformers but vLLM has no int8 weight-only kernel for them.
    let args =
        vec![a("quantize"), p(inp.path()), p(&out.path().join("t")), a("--cpu"), a("--granularity"), a("tensor")];
    let (code, stdout, stderr) = run(args);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains("warning: --granularity tensor has no vLLM kernel"), "{stderr}");

    let (code, stdout, stderr) = run(vec![a("inspect"), p(&dest)]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("model.layers.0.attn.q_proj.weight_packed") && stdout.contains("asym group 5"), "{stdout}");
    assert!(stdout.contains("4 quantized linear layers (compressed-tensors, pack-quantized; method w8a16"), "{stdout}");
    let (code, stdout, _) = run(vec![a("inspect"), p(inp.path())]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("not quantized; int8 estimate"), "{stdout}");

    // Errors: a message on stderr, exit status 1, no panic.
    let bad = out.path().join("g");
    let cases = [
        (vec![a("quantize"), p(&inp.path().join("missing")), p(&bad), a("--cpu")], "missing"),
        (vec![a("quantize"), p(inp.path()), p(&bad), a("--granularity"), a("group")], "--group-size"),
        (vec![a("quantize"), p(inp.path()), p(&dest), a("--cpu")], "already exists"),
        (
            vec![a("quantize"), p(inp.path()), p(&bad), a("--cpu"), a("--eval-rows"), a("18446744073709551615")],
            "error: eval_rows (activation rows per layer for the output error) is too large: 18446744073709551615 \
             exceeds the limit 4096\n",
        ),
    ];
    for (args, needle) in cases {
        let (code, _, stderr) = run(args);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.starts_with("error: ") && stderr.contains(needle) && !stderr.contains("panicked"), "{stderr}");
    }
    fs::write(inp.path().join("model.safetensors"), b"\x10\0\0\0\0\0\0\0{}").unwrap();
    let (code, _, stderr) = run(vec![a("inspect"), p(inp.path())]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("truncated"), "{stderr}");
}
/// inspect's int8 estimate leaves zero-size weights out (2^62 rows x 4 bytes of scales would
/// overflow).
#[test]
fn inspect_leaves_zero_size_weights_out_of_the_estimate() {
    let exe = env!("CARGO_BIN_EXE_int8-wgpu");
    let inp = TempDir::new("cli-zero-in");
    write_zero_size_model(inp.path());
    let o = std::process::Command::new(exe).arg("inspect").arg(inp.path()).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("model.extra.huge.weight  ") && stdout.contains("linear weights (4) "), "{stdout}");
}

/// inspect warns of the safetensors files a sharded folder's index does not list.
#[test]
fn inspect_warns_of_files_the_checkpoint_does_not_read() {
    let exe = env!("CARGO_BIN_EXE_int8-wgpu");
    let inp = TempDir::new("cli-unlisted-in");
    write_sharded_with_unlisted_files(inp.path());
    let o = std::process::Command::new(exe).arg("inspect").arg(inp.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains(
            "\nwarning: `model-00003-of-00003.safetensors` is in the folder but not in \
             `model.safetensors.index.json`: it is not read, its tensors are not listed above\n"
        ),
        "{stdout}"
    );
}

/// `inspect` of a FIFO: an error and exit status 1, not a hang.
#[cfg(unix)]
#[test]
fn inspect_of_a_fifo_is_an_error_not_a_hang() {
    let dir = TempDir::new("cli-fifo");
    let fifo = dir.path().join("x.safetensors");
    mkfifo(&fifo);
    let exe = env!("CARGO_BIN_EXE_int8-wgpu");
    let mut child = std::process::Command::new(exe)
        .arg("inspect")
        .arg(&fifo)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(10) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("`int8-wgpu inspect FIFO` still running after 10 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr, format!("error: `{}` is a FIFO, not a regular file\n", fifo.display()));
}
