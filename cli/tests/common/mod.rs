//! The CLI tests' helpers: the library tests' (`tests/common`), and running the binary.
#![allow(dead_code)]

#[path = "../../../tests/common/mod.rs"]
mod shared;

pub use shared::*;

/// The `int8-wgpu` binary cargo built for these tests.
pub fn cli_exe() -> Option<&'static str> {
    Some(env!("CARGO_BIN_EXE_int8-wgpu"))
}

/// Runs the CLI with `args` (and `WGPU_BACKEND=backend` where given): exit code, stdout, stderr.
pub fn run_cli(exe: &str, args: &[&std::ffi::OsStr], backend: Option<&str>) -> (Option<i32>, String, String) {
    let mut c = std::process::Command::new(exe);
    c.args(args).env("XDG_RUNTIME_DIR", "/tmp");
    if let Some(b) = backend {
        c.env("WGPU_BACKEND", b);
    }
    let o = c.output().unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}
