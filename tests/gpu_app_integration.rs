//! What an application building on the crate asked for: its own device with options and
//! without the poll thread, a bias already on the GPU, one quantized weight shared by layers
//! of several activation dtypes, and the MLP example that uses them all.

mod common;

#[path = "../examples/mlp.rs"]
#[allow(dead_code)]
mod mlp;

use std::future::Future;
use std::task::{Context, Poll, Waker};

use half::bf16;
use int8_wgpu::{DType, Error, Gpu, GpuOptions, GpuTensor, Polling, QuantScheme, QuantizedLinear, reference};

fn app_device() -> (wgpu::Device, wgpu::Queue) {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default())).expect("adapter");
    pollster::block_on(adapter.request_device(&Default::default())).expect("device")
}

fn app_gpu(options: GpuOptions) -> Gpu {
    let (device, queue) = app_device();
    Gpu::from_device_with_options(device, queue, options).expect("adopting the device")
}

fn app_polls() -> GpuOptions {
    GpuOptions { polling: Polling::Application, ..Default::default() }
}

/// The example's MLP (own device, no poll thread, arena ranges, its GELU between our layers,
/// one submission, f32 and bf16 over one set of weights) is within its f64 tolerances, at
/// GEMV and GEMM row counts.
#[test]
fn the_mlp_example_is_within_its_f64_tolerances() {
    let _ = gpu_or_skip!();
    let gpu = mlp::open_app_device().expect("the example's device");
    for rows in [1, 3, 17] {
        for (dtype, worst) in mlp::run(&gpu, rows).unwrap_or_else(|e| panic!("{rows} rows: {e}")) {
            assert!(worst <= 1.0, "{rows} rows, {dtype}: {worst}");
        }
    }
}

/// Without the poll thread, the blocking calls poll the device themselves, and an async
/// readback completes once the application polls the device.
#[test]
fn without_the_poll_thread_the_app_polls() {
    let _ = gpu_or_skip!();
    let gpu = app_gpu(app_polls());
    let w = reference::quantize(&common::rand_vec(6 * 16, 1), &[6, 16], QuantScheme::default()).unwrap();
    let layer = QuantizedLinear::from_quantized::<f32>(&gpu, &w, None, DType::F32).unwrap();
    let x = common::rand_vec(2 * 16, 2);
    // Blocking calls: a readback, a GPU quantization (which reads flags back), a wait.
    common::assert_linear_close(&layer.forward_host(&x, &[2, 16]).unwrap(), &x, &w, None, "forward_host");
    let q = gpu.quantize(&common::rand_vec(6 * 16, 1), &[6, 16], QuantScheme::default()).unwrap();
    common::assert_same_quantized(&q.to_host().unwrap(), &w, "quantize");
    gpu.synchronize().unwrap();

    // Async: pending until the device is polled, then the values.
    let t = GpuTensor::from_host(&gpu, &[1.0f32, 2.0, 3.0], &[3]).unwrap();
    let mut read = std::pin::pin!(t.read_async::<f32>());
    let mut cx = Context::from_waker(Waker::noop());
    let mut polls = 0;
    let got = loop {
        if let Poll::Ready(r) = read.as_mut().poll(&mut cx) {
            break r.unwrap();
        }
        assert!(polls < 4, "the readback did not complete after {polls} polls of the device");
        gpu.device().poll(wgpu::PollType::wait_indefinitely()).unwrap();
        polls += 1;
    };
    assert_eq!(got, [1.0, 2.0, 3.0]);
    assert!(polls >= 1, "completed before the application polled");
}

/// `Gpu::with_options` takes `Polling::Application` too.
#[test]
fn a_headless_device_without_the_poll_thread_reads_back() {
    let _ = gpu_or_skip!();
    let gpu = Gpu::with_options(app_polls()).unwrap();
    let t = GpuTensor::from_host(&gpu, &[bf16::from_f32(1.5), bf16::from_f32(-2.0)], &[2]).unwrap();
    assert_eq!(t.read_f32().unwrap(), [1.5, -2.0]);
}

/// Options on an adopted device: overrides apply, adapter choices are refused, the binding cap
/// splits weights into row blocks.
#[test]
fn an_adopted_device_takes_options() {
    let _ = gpu_or_skip!();
    for bad in [
        GpuOptions { backends: Some(wgpu::Backends::all()), ..Default::default() },
        GpuOptions { adapter_name: Some("llvmpipe".into()), ..Default::default() },
        GpuOptions { gemv_rows_per_group: Some(3), ..Default::default() },
    ] {
        let (device, queue) = app_device();
        let e = Gpu::from_device_with_options(device, queue, bad.clone()).unwrap_err();
        assert!(matches!(e, Error::InvalidOption(_)), "{bad:?}: {e}");
    }
    let cap = 512;
    let gpu = app_gpu(GpuOptions { max_storage_buffer_binding_size: Some(cap), ..Default::default() });
    assert_eq!(gpu.max_binding_size(), cap);
    let w = reference::quantize(&common::rand_vec(40 * 32, 3), &[40, 32], QuantScheme::default()).unwrap();
    let layer = QuantizedLinear::from_quantized::<f32>(&gpu, &w, None, DType::F32).unwrap();
    assert!(layer.weight().num_blocks() > 1, "{}", layer.weight().num_blocks());
    let x = common::rand_vec(3 * 32, 4);
    common::assert_linear_close(&layer.forward_host(&x, &[3, 32]).unwrap(), &x, &w, None, "capped");
}

/// A bias already on the GPU gives the same bits as the same bias uploaded from the host, in
/// each dtype, and is within the f64 oracle's tolerance.
#[test]
fn a_bias_on_the_gpu_equals_an_uploaded_one() {
    let gpu = gpu_or_skip!();
    let w = reference::quantize(&common::rand_vec(9 * 24, 5), &[9, 24], QuantScheme::default()).unwrap();
    let bias = common::rand_vec(9, 6);
    let x = common::rand_vec(4 * 24, 7);
    let host = QuantizedLinear::from_quantized(&gpu, &w, Some(&bias[..]), DType::F32).unwrap();
    let on_gpu = QuantizedLinear::from_quantized::<f32>(&gpu, &w, None, DType::F32).unwrap();
    // First without bias (its plans made), then with: the plans follow.
    let no_bias = on_gpu.forward_host(&x, &[4, 24]).unwrap();
    common::assert_linear_close(&no_bias, &x, &w, None, "before with_bias");
    let on_gpu = on_gpu.with_bias(GpuTensor::from_host(&gpu, &bias, &[9]).unwrap()).unwrap();
    let got = on_gpu.forward_host(&x, &[4, 24]).unwrap();
    assert_eq!(got, host.forward_host(&x, &[4, 24]).unwrap());
    common::assert_linear_close(&got, &x, &w, Some(&bias), "GPU bias");

    let b16: Vec<bf16> = common::to_dtype(&bias);
    let x16: Vec<bf16> = common::to_dtype(&x);
    let layer = QuantizedLinear::from_quantized::<f32>(&gpu, &w, None, DType::BF16)
        .unwrap()
        .with_bias(GpuTensor::from_host(&gpu, &b16, &[9]).unwrap())
        .unwrap();
    let got = layer.forward_host(&x16, &[4, 24]).unwrap();
    common::assert_linear_close(&got, &x16, &w, Some(&b16), "GPU bf16 bias");
    // A GPU bias is a parameter: refused as an output, values kept.
    let x_t = GpuTensor::from_host(&gpu, &x16[..24], &[1, 24]).unwrap();
    let e = layer.forward_into(&x_t, &layer.bias().unwrap().reshape(&[1, 9]).unwrap()).unwrap_err();
    assert!(matches!(&e, Error::Aliasing(m) if m.contains("bias")), "{e}");
    assert_eq!(layer.bias().unwrap().read::<bf16>().unwrap(), b16);
}

/// A GPU bias of the wrong shape, dtype or device is an error naming what is wrong.
#[test]
fn a_wrong_gpu_bias_is_refused() {
    let gpu = gpu_or_skip!();
    let w = reference::quantize(&common::rand_vec(4 * 8, 8), &[4, 8], QuantScheme::default()).unwrap();
    let layer = || QuantizedLinear::from_quantized::<f32>(&gpu, &w, None, DType::F32).unwrap();
    let e = layer().with_bias(GpuTensor::from_host(&gpu, &[0.0f32; 5], &[5]).unwrap()).unwrap_err();
    assert!(matches!(&e, Error::Shape(m) if m.contains("[4]")), "{e}");
    let e = layer().with_bias(GpuTensor::from_host(&gpu, &[0.0f32; 4], &[1, 4]).unwrap()).unwrap_err();
    assert!(matches!(e, Error::Shape(_)), "{e}");
    let e = layer().with_bias(GpuTensor::from_host(&gpu, &[bf16::ZERO; 4], &[4]).unwrap()).unwrap_err();
    assert!(matches!(e, Error::DType { expected: DType::F32, found: DType::BF16, .. }), "{e}");
    let other = Gpu::new().unwrap();
    let e = layer().with_bias(GpuTensor::from_host(&other, &[0.0f32; 4], &[4]).unwrap()).unwrap_err();
    assert!(matches!(e, Error::WrongDevice(_)), "{e}");
}

/// One quantized weight serves an f32 and a bf16 layer: no buffer of it is made twice, and
/// both layers are within the f64 oracle's tolerance of the same ints.
#[test]
fn one_quantized_weight_serves_layers_of_two_dtypes() {
    let _ = gpu_or_skip!();
    // A device of its own: other tests' buffers would show in the shared one's counts.
    let gpu = Gpu::new().unwrap();
    let wf = common::rand_vec(12 * 32, 9);
    let w = gpu.quantize(&wf, &[12, 32], QuantScheme::default()).unwrap();
    let before = gpu.resource_counts();
    let l32 = QuantizedLinear::from_gpu(w.clone(), None::<&[f32]>, DType::F32).unwrap();
    let l16 = QuantizedLinear::from_gpu(w.clone(), None::<&[f32]>, DType::BF16).unwrap();
    let made = gpu.resource_counts().buffers - before.buffers;
    // Each layer makes at most its no-bias placeholder; the weight's three buffers are shared.
    assert!(made <= 2, "{made} buffers made for two layers over one weight");
    let q = w.to_host().unwrap();
    assert_eq!(l16.weight().to_host().unwrap().values(), q.values());
    common::assert_same_quantized(&q, &reference::quantize(&wf, &[12, 32], QuantScheme::default()).unwrap(), "w");
    let x = common::rand_vec(5 * 32, 10);
    common::assert_linear_close(&l32.forward_host(&x, &[5, 32]).unwrap(), &x, &q, None, "f32 view");
    let x16: Vec<bf16> = common::to_dtype(&x);
    common::assert_linear_close(&l16.forward_host(&x16, &[5, 32]).unwrap(), &x16, &q, None, "bf16 view");
    drop(w);
    // The layers keep the shared weight alive.
    assert_eq!(l32.weight().to_host().unwrap().values(), q.values());
}
