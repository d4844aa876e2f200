//! Which device a tensor, a buffer and an encoder belong to; buffer usages; outputs that would
//! overwrite a layer's parameters. Each misuse is an `Error`, never a panic or a wrong buffer.

mod common;

use int8_wgpu::{DType, Error, Gpu, GpuOptions, GpuTensor, QuantScheme, QuantizedLinear, reference};

fn storage_buffer(gpu: &Gpu, data: &[f32], usage: wgpu::BufferUsages) -> wgpu::Buffer {
    let buffer = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("app buffer"),
        size: (data.len() * 4) as u64,
        usage: usage | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    gpu.queue().write_buffer(&buffer, 0, bytemuck::cast_slice(data));
    buffer
}

/// A buffer made on a second `Gpu` is refused when wrapped for the first one; before, wgpu
/// looked its id up among the first device's buffers and the layer read an unrelated buffer
/// (or wgpu-core panicked when no buffer had that id).
#[test]
fn a_buffer_of_another_device_is_refused() {
    let gpu = gpu_or_skip!();
    // Buffers on this device so that ids of the other device's buffers are taken here too.
    let mine: Vec<_> = (0..8).map(|i| GpuTensor::from_host(&gpu, &[i as f32; 4], &[4]).unwrap()).collect();
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
    // Another device of the same backends, and one opened for every backend (another adapter
    // where there is one).
    let all = GpuOptions { backends: Some(wgpu::Backends::all()), ..Default::default() };
    for other in [Gpu::new().expect("a second device"), Gpu::with_options(all).expect("a third device")] {
        assert!(!gpu.same_device(&other));
        for i in 0..8 {
            let foreign = storage_buffer(&other, &[5.0; 4], usage);
            match GpuTensor::from_buffer(&gpu, foreign, &[4], DType::F32) {
                Err(Error::WrongDevice(m)) => assert!(m.contains("another device"), "{m}"),
                r => panic!("buffer {i} of {}: {r:?}", other.describe()),
            }
        }
        // The other device still works, and so does this one.
        let t = GpuTensor::from_buffer(&other, storage_buffer(&other, &[5.0; 4], usage), &[4], DType::F32).unwrap();
        assert_eq!(t.read::<f32>().unwrap(), [5.0; 4]);
        assert_eq!(mine[3].read::<f32>().unwrap(), [3.0; 4]);
    }
}

/// A layer recorded into a command encoder of another device: that device reports a GPU error
/// at its next wait, nothing panics, and this device's results are unaffected.
#[test]
fn recording_into_another_devices_encoder_is_an_error_not_a_panic() {
    let gpu = gpu_or_skip!();
    let other = Gpu::new().expect("a second device");
    let w = reference::quantize(&common::rand_vec(4 * 8, 1), &[4, 8], QuantScheme::default()).unwrap();
    let layer = QuantizedLinear::from_quantized::<f32>(&gpu, &w, None, DType::F32).unwrap();
    let x = GpuTensor::from_host(&gpu, &common::rand_vec(8, 2), &[1, 8]).unwrap();
    let y = GpuTensor::zeros(&gpu, &[1, 4], DType::F32).unwrap();
    let mut enc = other.device().create_command_encoder(&Default::default());
    layer.encode(&mut enc, &x, &y).unwrap();
    other.queue().submit([enc.finish()]);
    let e = other.synchronize().unwrap_err();
    assert!(matches!(&e, Error::Gpu(m) if m.to_lowercase().contains("device")), "{e}");
    eprintln!("the other device reports: {e}");
    other.synchronize().unwrap();
    // This device's forward is right afterwards.
    layer.forward_into(&x, &y).unwrap();
    assert_eq!(y.read::<f32>().unwrap(), layer.forward(&x).unwrap().read::<f32>().unwrap());
}

/// Reading back a tensor over an application buffer without `COPY_SRC` is an error naming the
/// usage; before, wgpu panicked (on an adopted device, whose error handler is the app's).
#[test]
fn reading_a_buffer_without_copy_src_is_a_usage_error() {
    let gpu = gpu_or_skip!();
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default())).expect("adapter");
    let (device, queue) = pollster::block_on(adapter.request_device(&Default::default())).expect("device");
    for g in [gpu, Gpu::from_device(device, queue)] {
        let t =
            GpuTensor::from_buffer(&g, storage_buffer(&g, &[1.0; 4], wgpu::BufferUsages::STORAGE), &[4], DType::F32)
                .unwrap();
        match t.read::<f32>() {
            Err(Error::BufferUsage(m)) => assert!(m.contains("COPY_SRC"), "{m}"),
            r => panic!("{r:?}"),
        }
        let e =
            GpuTensor::from_buffer(&g, storage_buffer(&g, &[1.0; 4], wgpu::BufferUsages::UNIFORM), &[4], DType::F32)
                .unwrap_err();
        assert!(matches!(&e, Error::BufferUsage(m) if m.contains("STORAGE")), "{e}");
    }
}

/// A layer's output may not be its own input or bias, nor another layer's bias: those are
/// aliasing errors and the bias keeps its values.
#[test]
fn an_output_over_a_layers_bias_or_input_is_refused() {
    let gpu = gpu_or_skip!();
    let w = reference::quantize(&common::rand_vec(4 * 4, 3), &[4, 4], QuantScheme::default()).unwrap();
    let bias = [1.0f32, 2.0, 3.0, 4.0];
    let a = QuantizedLinear::from_quantized(&gpu, &w, Some(&bias[..]), DType::F32).unwrap();
    let b = QuantizedLinear::from_quantized(&gpu, &w, Some(&bias[..]), DType::F32).unwrap();
    let x = GpuTensor::from_host(&gpu, &common::rand_vec(4, 4), &[4]).unwrap();
    for (layer, what) in [(&a, "its own"), (&b, "another layer's")] {
        let target = a.bias().unwrap();
        match layer.forward_into(&x, target) {
            Err(Error::Aliasing(m)) => assert!(m.contains("bias"), "{what}: {m}"),
            r => panic!("{what} bias as output: {r:?}"),
        }
        // Through a reshaped view, too.
        let view = target.reshape(&[1, 4]).unwrap();
        let x2 = x.reshape(&[1, 4]).unwrap();
        assert!(matches!(layer.forward_into(&x2, &view), Err(Error::Aliasing(_))), "{what}");
    }
    assert_eq!(a.bias().unwrap().read::<f32>().unwrap(), bias);
    let xy = GpuTensor::from_host(&gpu, &[0.5f32; 4], &[4]).unwrap();
    assert!(matches!(a.forward_into(&xy, &xy), Err(Error::Aliasing(_))));
}

/// Another layer's bias wrapped anew by `GpuTensor::from_buffer` is still a parameter: refused
/// as an output, its values kept.
#[test]
fn a_bias_wrapped_anew_is_still_refused_as_an_output() {
    let gpu = gpu_or_skip!();
    let w = reference::quantize(&common::rand_vec(4 * 4, 5), &[4, 4], QuantScheme::default()).unwrap();
    let bias = [1.0f32, 2.0, 3.0, 4.0];
    let a = QuantizedLinear::from_quantized(&gpu, &w, Some(&bias[..]), DType::F32).unwrap();
    let b = QuantizedLinear::from_quantized(&gpu, &w, Some(&bias[..]), DType::F32).unwrap();
    let x = GpuTensor::from_host(&gpu, &common::rand_vec(4, 6), &[4]).unwrap();
    let wrapped = GpuTensor::from_buffer(&gpu, b.bias().unwrap().buffer().clone(), &[4], DType::F32).unwrap();
    match a.forward_into(&x, &wrapped) {
        Err(Error::Aliasing(m)) => assert!(m.contains("bias"), "{m}"),
        r => panic!("another layer's bias, wrapped anew, as output: {r:?}"),
    }
    assert_eq!(b.bias().unwrap().read::<f32>().unwrap(), bias);
}

/// A destroyed application buffer on an adopted device (whose error handler is the app's, by
/// default a panic): wrapping, reading and running are errors of this crate's calls.
#[test]
fn a_destroyed_buffer_on_an_adopted_device_is_an_error() {
    let _ = gpu_or_skip!();
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default())).expect("adapter");
    let (device, queue) = pollster::block_on(adapter.request_device(&Default::default())).expect("device");
    let app = Gpu::from_device(device, queue);
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
    let w = reference::quantize(&common::rand_vec(4 * 4, 7), &[4, 4], QuantScheme::default()).unwrap();
    let layer = QuantizedLinear::from_quantized::<f32>(&app, &w, None, DType::F32).unwrap();
    let buffer = storage_buffer(&app, &[1.0; 4], usage);
    let x = GpuTensor::from_buffer(&app, buffer.clone(), &[1, 4], DType::F32).unwrap();
    buffer.destroy();
    assert!(matches!(x.read::<f32>(), Err(Error::Gpu(_))), "read");
    assert!(matches!(layer.forward(&x), Err(Error::Gpu(_))), "forward");
    let gone = storage_buffer(&app, &[1.0; 4], usage);
    gone.destroy();
    let e = GpuTensor::from_buffer(&app, gone, &[4], DType::F32).unwrap_err();
    assert!(matches!(&e, Error::Gpu(m) if m.contains("destroyed")), "{e}");
    // The device is still usable.
    let y = GpuTensor::from_host(&app, &[2.0f32; 4], &[1, 4]).unwrap();
    assert_eq!(layer.forward(&y).unwrap().read::<f32>().unwrap().len(), 4);
}
