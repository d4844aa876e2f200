//! Device out-of-memory is an `Error::OutOfMemory` from the call that allocated, never a panic,
//! and it does not resurface at later, unrelated calls.
//!
//! Memory is exhausted for real: the process's address-space limit is lowered (`prlimit` on our
//! own pid) just above what it uses, so the software drivers' allocations fail. This is the only
//! test in this binary: the limit applies to the whole process, and no other test may run
//! beside it.

mod common;

use int8_wgpu::{
    DType, Error, GpuQuantizedTensor, GpuTensor, QuantScheme, QuantizedLinear, QuantizedTensor, reference,
};

/// Virtual memory in use by this process, in bytes (`VmSize` of /proc/self/status).
fn vm_size() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmSize in /proc/self/status");
    kb * 1024
}

/// Sets this process's soft address-space limit (`None`: back to the hard limit).
fn limit_address_space(bytes: Option<u64>) {
    let soft = bytes.map_or("unlimited".to_string(), |b| b.to_string());
    let status = std::process::Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--as={soft}:"))
        .status()
        .expect("running prlimit (util-linux)");
    assert!(status.success(), "prlimit failed: {status}");
}

fn expect_oom<T: std::fmt::Debug>(what: &str, r: Result<T, Error>, min_bytes: u64) {
    match r {
        Err(e @ Error::OutOfMemory { .. }) => {
            let Error::OutOfMemory { bytes, what: ref w } = e else { unreachable!() };
            assert!(bytes >= min_bytes, "{what}: reported {bytes} bytes for {w}");
            let msg = e.to_string();
            assert!(msg.contains("out of GPU memory") && msg.contains(&bytes.to_string()), "{what}: {msg}");
        }
        other => panic!("{what}: expected Error::OutOfMemory, got {other:?}"),
    }
}

#[test]
fn allocation_failure_is_an_error_from_the_allocating_call() {
    if !cfg!(target_os = "linux") {
        eprintln!("SKIPPED: needs Linux's prlimit");
        return;
    }
    let gpu = gpu_or_skip!();
    let cpu_adapter = gpu.adapter_info().is_some_and(|i| i.device_type == wgpu::DeviceType::Cpu);
    if !cpu_adapter {
        // A real GPU's memory is not bounded by the process's address space.
        eprintln!("SKIPPED: not a CPU adapter ({})", gpu.describe());
        return;
    }
    // 96 MiB: under lavapipe's 128 MiB binding limit, far over the headroom left below.
    let big = 96 << 20;
    let (rows, cols) = (big / 4 / 4096, 4096);
    let w: Vec<f32> = (0..rows * cols).map(|i| ((i % 255) as f32 - 127.0) / 127.0).collect();
    let scheme = QuantScheme::default();
    let ints: Vec<i8> = (0..big).map(|i| (i % 255) as u8 as i8).collect();
    let q = QuantizedTensor::new(&[rows * 4, cols], scheme, ints, vec![1.0 / 127.0; rows * 4], None).unwrap();
    let words = vec![0x8080_8080u32; rows * 4 * cols / 4];
    let scales = vec![1.0f32; rows * 4];
    // Compile every pipeline the calls below would use while memory is plentiful: the
    // point is the buffers, not the shader compiler.
    let small = reference::quantize(&w[..8 * 64], &[8, 64], scheme).unwrap();
    let layer = QuantizedLinear::from_quantized::<f32>(&gpu, &small, None, DType::F32).unwrap();
    let x = GpuTensor::from_host(&gpu, &w[..2 * 64], &[2, 64]).unwrap();
    let before = layer.forward(&x).unwrap().read::<f32>().unwrap();
    gpu.quantize(&w[..8 * 64], &[8, 64], scheme).unwrap();

    // Each call runs with `headroom` bytes of address space to spare: room for its host-side
    // work (`from_quantized` packs the ints on the host first), not for the device buffer.
    fn limited<T>(headroom: u64, f: impl FnOnce() -> T) -> T {
        limit_address_space(Some(vm_size() + headroom));
        let r = f();
        limit_address_space(None);
        r
    }
    let mib = 1u64 << 20;
    let results = (
        limited(32 * mib, || GpuTensor::from_host(&gpu, &w, &[rows, cols])),
        limited(32 * mib, || GpuTensor::zeros(&gpu, &[rows, cols], DType::F32)),
        limited(32 * mib, || gpu.quantize(&w, &[rows, cols], scheme)),
        limited(128 * mib, || QuantizedLinear::from_quantized::<f32>(&gpu, &q, None, DType::F32)),
        limited(32 * mib, || {
            GpuQuantizedTensor::from_packed(&gpu, &[rows * 4, cols], scheme, &words, true, &scales, None)
        }),
    );

    expect_oom("GpuTensor::from_host", results.0, big as u64);
    // wgpu's GL backend does not check `glBufferStorage` for errors (wgpu-hal 30,
    // gles/device.rs), so there an allocation fails only at the host staging copy of a filled
    // buffer: still an OutOfMemory from the call, but wgpu-core 30 then marks the device lost
    // (`handle_hal_error` on any staging failure), so later calls fail too, with errors.
    let gl = gpu.adapter_info().is_some_and(|i| i.backend == wgpu::Backend::Gl);
    if !gl {
        expect_oom("GpuTensor::zeros", results.1, big as u64);
    }
    expect_oom("Gpu::quantize", results.2, big as u64);
    expect_oom("QuantizedLinear::from_quantized", results.3, big as u64);
    expect_oom("GpuQuantizedTensor::from_packed", results.4, big as u64);
    if gl {
        // Errors, not panics.
        let _ = gpu.synchronize();
        let _ = layer.forward(&x).and_then(|y| y.read::<f32>());
        return;
    }
    // Nothing is left behind to fail the next, unrelated call.
    gpu.synchronize().unwrap();
    let after = layer.forward(&x).unwrap().read::<f32>().unwrap();
    assert_eq!(before, after);
    let t = GpuTensor::from_host(&gpu, &w[..1024], &[1024]).unwrap();
    assert_eq!(t.read::<f32>().unwrap(), w[..1024]);
}
