//! Recording layers into an application's encoder, and the hot path creating nothing per call.

mod common;

use half::bf16;
use int8_wgpu::{DType, Element, Gpu, GpuOptions, GpuTensor, Granularity, QuantScheme, QuantizedLinear, reference};

fn conv<T: Element>(v: &[f32]) -> Vec<T> {
    v.iter().map(|&x| T::from_f32(x)).collect()
}

/// After the first call with the same rows and tensors, `forward_into` creates no buffer and
/// no bind group, for every path (one GEMV pass, GEMV passes, GEMM) and 16-bit and f32
/// activations, and its results stay bit-identical.
#[test]
fn forward_into_creates_nothing_after_the_first_call() {
    gpu_or_skip!();
    // Devices of this test's own: the counts are per device, and other tests share the common one.
    let gpu = Gpu::new().unwrap();
    // Both paths above 8 rows: GEMV passes, and the GEMM from 9 rows.
    let gemm = Gpu::with_options(GpuOptions { gemm_min_rows: Some(9), ..Default::default() }).unwrap();
    for (g, rows) in [(&gpu, 3usize), (&gpu, 20), (&gemm, 20)] {
        let scheme = QuantScheme::asymmetric(Granularity::PerGroup { size: 16 });
        let q = reference::quantize(&common::rand_vec(24 * 32, 40), &[24, 32], scheme).unwrap();
        let bias = common::rand_vec(24, 41);
        let xf = common::rand_vec(rows * 32, 42);
        fn check<T: Element>(g: &Gpu, q: &int8_wgpu::QuantizedTensor, bias: &[f32], xf: &[f32], rows: usize) {
            let layer = QuantizedLinear::from_quantized(g, q, Some(bias), T::DTYPE).unwrap();
            let ctx = format!("{} rows, {}, {}", rows, T::DTYPE, g.linear_kernel(layer.weight(), T::DTYPE, None, rows));
            let x = GpuTensor::from_host(g, &conv::<T>(xf), &[rows, 32]).unwrap();
            let y = GpuTensor::zeros(g, &[rows, 24], T::DTYPE).unwrap();
            layer.forward_into(&x, &y).unwrap();
            let first: Vec<T> = y.read().unwrap();
            let before = g.resource_counts();
            for _ in 0..100 {
                layer.forward_into(&x, &y).unwrap();
            }
            g.synchronize().unwrap();
            assert_eq!(g.resource_counts(), before, "{ctx}: objects created by 100 forwards");
            let last: Vec<T> = y.read().unwrap();
            let bits = |v: &[T]| v.iter().map(|e| e.to_f32().to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&first), bits(&last), "{ctx}");
            let b: Vec<T> = conv(bias);
            common::assert_linear_close(&last, &conv::<T>(xf), q, Some(&b), &ctx);
        }
        check::<f32>(g, &q, &bias, &xf, rows);
        check::<bf16>(g, &q, &bias, &xf, rows);
    }
}

/// The application pattern: an app kernel writes a buffer, our layer reads it, a second layer
/// reads our output and an app kernel reads that, all recorded into one encoder and submitted
/// once; the result equals the layers run one by one.
#[test]
fn layers_record_into_one_application_submission() {
    let gpu = gpu_or_skip!();
    let device = gpu.device();
    let s = QuantScheme::default();
    let l1 = QuantizedLinear::from_quantized::<f32>(
        &gpu,
        &reference::quantize(&common::rand_vec(16 * 8, 43), &[16, 8], s).unwrap(),
        None,
        DType::F32,
    )
    .unwrap();
    let l2 = QuantizedLinear::from_quantized::<f32>(
        &gpu,
        &reference::quantize(&common::rand_vec(4 * 16, 44), &[4, 16], s).unwrap(),
        None,
        DType::F32,
    )
    .unwrap();
    // The app's own kernel: doubles a buffer of 2 x 8 f32 in place.
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("app kernel"),
        source: wgpu::ShaderSource::Wgsl(
            "@group(0) @binding(0) var<storage, read_write> v: array<f32>;
             @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) i: vec3<u32>) {
                 if i.x < arrayLength(&v) { v[i.x] = 2.0 * v[i.x]; }
             }"
            .into(),
        ),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("app kernel"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let double = |enc: &mut wgpu::CommandEncoder, t: &GpuTensor| {
        let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[wgpu::BindGroupEntry { binding: 0, resource: t.buffer().as_entire_binding() }],
        });
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    };
    let xv = common::rand_vec(2 * 8, 45);
    // The input is the app's own buffer, written by the app.
    let app_buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("app activations"),
        size: 2 * 8 * 4,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    gpu.queue().write_buffer(&app_buffer, 0, bytemuck::cast_slice(&xv));
    let x = GpuTensor::from_buffer(&gpu, app_buffer, &[2, 8], DType::F32).unwrap();
    let h = GpuTensor::zeros(&gpu, &[2, 16], DType::F32).unwrap();
    let y = GpuTensor::zeros(&gpu, &[2, 4], DType::F32).unwrap();
    let mut enc = device.create_command_encoder(&Default::default());
    double(&mut enc, &x);
    l1.encode(&mut enc, &x, &h).unwrap();
    l2.encode(&mut enc, &h, &y).unwrap();
    double(&mut enc, &y);
    gpu.queue().submit([enc.finish()]);
    let got: Vec<f32> = y.read().unwrap();

    let x2: Vec<f32> = xv.iter().map(|v| 2.0 * v).collect();
    let one_by_one = l2.forward(&l1.forward(&GpuTensor::from_host(&gpu, &x2, &[2, 8]).unwrap()).unwrap()).unwrap();
    let want: Vec<f32> = one_by_one.read::<f32>().unwrap().iter().map(|v| 2.0 * v).collect();
    assert_eq!(got, want);
    assert!(got.iter().any(|v| *v != 0.0), "{got:?}");
}

/// Two bf16 layers recorded into one application compute pass, writing into outputs full of
/// stale bits: every output half is replaced (no clear needed) and the results equal `forward`.
#[test]
fn layers_chain_in_one_pass_without_clearing_16bit_outputs() {
    let gpu = gpu_or_skip!();
    let s = QuantScheme::asymmetric(Granularity::PerChannel { axis: 0 });
    // Odd widths: 16-bit outputs of neighbouring rows, and of the next activation row, share words.
    let q1 = reference::quantize(&common::rand_vec(17 * 8, 46), &[17, 8], s).unwrap();
    let q2 = reference::quantize(&common::rand_vec(5 * 17, 47), &[5, 17], s).unwrap();
    let l1 = QuantizedLinear::from_quantized::<f32>(&gpu, &q1, None, DType::BF16).unwrap();
    let l2 = QuantizedLinear::from_quantized::<f32>(&gpu, &q2, None, DType::BF16).unwrap();
    let x = GpuTensor::from_host(&gpu, &conv::<bf16>(&common::rand_vec(3 * 8, 48)), &[3, 8]).unwrap();
    let stale = |n: usize| vec![bf16::from_bits(0xFFFF); n];
    let h = GpuTensor::from_host(&gpu, &stale(3 * 17), &[3, 17]).unwrap();
    let y = GpuTensor::from_host(&gpu, &stale(3 * 5), &[3, 5]).unwrap();
    let mut enc = gpu.device().create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        l1.record(&mut pass, &x, &h).unwrap();
        l2.record(&mut pass, &h, &y).unwrap();
    }
    gpu.queue().submit([enc.finish()]);
    let want = l2.forward(&l1.forward(&x).unwrap()).unwrap().read::<bf16>().unwrap();
    let got = y.read::<bf16>().unwrap();
    assert_eq!(
        got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    assert!(!got.iter().any(|v| v.to_bits() == 0xFFFF), "{got:?}");
}

/// An application buffer is checked before it is wrapped: storage usage and size.
#[test]
fn wrapping_an_application_buffer_checks_usage_and_size() {
    let gpu = gpu_or_skip!();
    let make = |size, usage| {
        gpu.device().create_buffer(&wgpu::BufferDescriptor { label: None, size, usage, mapped_at_creation: false })
    };
    let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
    let t = GpuTensor::from_buffer(&gpu, make(12, storage), &[3], DType::BF16).unwrap();
    assert_eq!((t.shape(), t.dtype()), (&[3usize][..], DType::BF16));
    let e = GpuTensor::from_buffer(&gpu, make(8, storage), &[3], DType::F32).unwrap_err();
    assert!(e.to_string().contains("holds 8 bytes") && e.to_string().contains("needs 12"), "{e}");
    let e = GpuTensor::from_buffer(&gpu, make(16, wgpu::BufferUsages::UNIFORM), &[3], DType::F32).unwrap_err();
    assert!(e.to_string().contains("lacks STORAGE"), "{e}");
    assert!(GpuTensor::from_buffer(&gpu, make(16, storage), &[0, 3], DType::F32).is_err());
}
