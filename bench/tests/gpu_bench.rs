//! The benches' yardsticks: the dense f32 layer and the simple int8 GEMV compute
//! the product they are timed for, and every read-limit kernel reads every byte exactly once.

#[path = "../../tests/common/mod.rs"]
mod common;

use int8_wgpu::ForwardStage;
use int8_wgpu::{
    DType, Gpu, GpuOptions, GpuQuantizedTensor, GpuTensor, Granularity, QuantScheme, QuantizedTensor, reference,
};
use int8_wgpu_bench::{DenseLinear, ReadKernel, ReadLimit, SimpleGemv, SimpleGemvA8, SimpleQuantize, time_stage};

#[test]
fn dense_yardstick_computes_the_product() {
    let _ = gpu_or_skip!();
    for rpt in [1u8, 2, 4] {
        // gemm_min_rows 9: 20 rows take the dense GEMM, 2 rows its GEMV.
        let gpu = Gpu::with_options(GpuOptions { gemm_min_rows: Some(9), ..Default::default() }).unwrap();
        let wf = common::rand_vec(40 * 64, 77);
        let dense = DenseLinear::new(&gpu, &wf, [40, 64]).unwrap().with_rows_per_group(rpt).unwrap();
        for m in [2, 20] {
            let x = common::rand_vec(m * 64, 78);
            let y = dense.forward(&GpuTensor::from_host(&gpu, &x, &[m, 64]).unwrap()).unwrap().read::<f32>().unwrap();
            for (i, got) in y.iter().enumerate() {
                let (r, c) = (i / 40, i % 40);
                let want: f64 = (0..64).map(|j| f64::from(x[r * 64 + j]) * f64::from(wf[c * 64 + j])).sum();
                let mag: f64 = (0..64).map(|j| (f64::from(x[r * 64 + j]) * f64::from(wf[c * 64 + j])).abs()).sum();
                let tol = common::tolerance(64, mag, want, DType::F32);
                assert!((f64::from(*got) - want).abs() <= tol, "dense rpt={rpt} y[{i}]: {got} vs {want}");
            }
        }
        assert!(dense.time_forward(&GpuTensor::from_host(&gpu, &[0.5f32; 64], &[1, 64]).unwrap(), 2).is_ok());
    }
}

/// Every pattern XORs exactly the words of the buffer: a word skipped or read twice changes the
/// result. Sizes: one partial window; several windows and a partial one; and, on a device whose
/// storage bindings are 192 KiB, several bindings (three windows each) with a partial last one.
#[test]
fn read_kernels_read_every_byte_once() {
    let default = gpu_or_skip!();
    let small =
        Gpu::with_options(GpuOptions { max_storage_buffer_binding_size: Some(192 << 10), ..Default::default() })
            .unwrap();
    for (gpu, bytes) in [(&default, 48), (&default, (5 << 16) + 4096 + 16), (&small, (7 << 16) + 160)] {
        let limit = ReadLimit::new(gpu, bytes).unwrap();
        let kernels = limit.kernels();
        for storage in [ReadKernel::Vec4Strided, ReadKernel::Vec4Blocked, ReadKernel::Vec4BlockedX4] {
            assert!(kernels.contains(&storage), "{kernels:?}");
        }
        if gpu.limits().max_uniform_buffer_binding_size >= 1 << 16 {
            assert!(kernels.contains(&ReadKernel::UniformWindows), "{kernels:?}");
        }
        for kernel in kernels {
            assert_eq!(limit.xor(kernel).unwrap(), limit.expected_xor(), "{} over {bytes} bytes", kernel.name());
            let t = limit.time(kernel, 2).unwrap();
            assert!(t.per_iter > std::time::Duration::ZERO && t.iters == 2, "{} {t:?}", kernel.name());
        }
    }
}

/// The limit is the fastest round of any pattern, with that pattern's median and slowest round,
/// whatever the order of patterns and rounds; measured, it covers every pattern and its spread
/// is ordered.
#[test]
fn read_limit_is_the_fastest_round_of_any_pattern() {
    let gpu = gpu_or_skip!();
    let limit = ReadLimit::new(&gpu, 1 << 20).unwrap();
    let ms = std::time::Duration::from_millis;
    // Vec4Blocked has the fastest single round (2 ms) though Vec4Strided's median is better.
    let timings = vec![
        (ReadKernel::Vec4Strided, vec![ms(4), ms(3), ms(3)]),
        (ReadKernel::Vec4Blocked, vec![ms(9), ms(2), ms(8)]),
        (ReadKernel::U32Strided, vec![]),
    ];
    let e = limit.estimate(&timings).unwrap();
    let gbs = |d: std::time::Duration| (1u64 << 20) as f64 / d.as_secs_f64() / 1e9;
    assert_eq!(e.kernel, ReadKernel::Vec4Blocked);
    assert_eq!((e.gb_per_s, e.median, e.slowest, e.rounds), (gbs(ms(2)), gbs(ms(8)), gbs(ms(9)), 3));
    assert!(limit.estimate(&[(ReadKernel::Vec4Strided, vec![])]).is_none());
    let measured = limit.measure(2, 3).unwrap();
    assert!(limit.kernels().contains(&measured.kernel) && measured.rounds == 3, "{measured:?}");
    assert!(measured.gb_per_s >= measured.median && measured.median >= measured.slowest, "{measured:?}");
    assert!(measured.slowest > 0.0 && measured.gb_per_s.is_finite(), "{measured:?}");
}

/// Activations `[m, k]` in `dtype` (rounded from f32).
fn activations(gpu: &Gpu, x: &[f32], shape: &[usize], dtype: DType) -> GpuTensor {
    match dtype {
        DType::F32 => GpuTensor::from_host(gpu, x, shape),
        DType::F16 => GpuTensor::from_host(gpu, &x.iter().map(|&v| half::f16::from_f32(v)).collect::<Vec<_>>(), shape),
        DType::BF16 => {
            GpuTensor::from_host(gpu, &x.iter().map(|&v| half::bf16::from_f32(v)).collect::<Vec<_>>(), shape)
        }
    }
    .unwrap()
}

/// The simple kernel matches `reference::linear` within its stated tolerance (`SimpleGemv::check`)
/// for every activation dtype, 1-9 activation rows, a row count that is not a multiple of 4, and
/// a weight split into row blocks of 11 rows (odd first rows: 16-bit outputs share words across
/// blocks); the check fails against a weight with one int changed, and the kernel refuses what
/// it does not do.
#[test]
fn simple_gemv_computes_the_product() {
    let default = gpu_or_skip!();
    // 11 rows of 64 int8 per 704-byte binding; 2 f32 activation rows of 64 fit.
    let small =
        Gpu::with_options(GpuOptions { max_storage_buffer_binding_size: Some(704), ..Default::default() }).unwrap();
    let (n, k) = (42, 64);
    let q = reference::quantize(&common::rand_vec(n * k, 91), &[n, k], QuantScheme::default()).unwrap();
    let mut values = q.values().to_vec();
    let v = &mut values[5 * k + 7];
    *v = if *v > 0 { *v - 64 } else { *v + 64 };
    let wrong = QuantizedTensor::new(&[n, k], q.scheme(), values, q.scales().to_vec(), None).unwrap();
    for (gpu, rows, blocks) in [(&default, &[1usize, 3, 9][..], 1), (&small, &[1, 2][..], 4)] {
        let simple = SimpleGemv::new(gpu, &q).unwrap();
        assert_eq!(GpuQuantizedTensor::from_host(gpu, &q).unwrap().num_blocks(), blocks);
        for &m in rows {
            let xf = common::rand_vec(m * k, 92 + m as u64);
            for dtype in [DType::F32, DType::F16, DType::BF16] {
                let x = activations(gpu, &xf, &[m, k], dtype);
                let ctx = format!("{blocks} block(s), m={m}, {dtype}");
                let worst = simple.check(&x, &q).unwrap();
                assert!(worst <= 1.0, "{ctx}: error {worst} x the tolerance");
                assert!(simple.check(&x, &wrong).unwrap() > 1.0, "{ctx}: the check missed a changed weight");
                assert_eq!(simple.forward(&x).unwrap().dtype(), dtype, "{ctx}");
                let t = simple.time(&x, 2).unwrap();
                assert!(t.per_iter > std::time::Duration::ZERO && t.iters == 2, "{ctx}: {t:?}");
            }
        }
    }
    // 72 rows of 8192 inputs: one invocation looping over all rows would run 9 x 2048 x 9
    // loop iterations, past llvmpipe's 65535, and skip the last rows' sums.
    let (n, k) = (8, 8192);
    let long = reference::quantize(&common::rand_vec(n * k, 99), &[n, k], QuantScheme::default()).unwrap();
    let simple = SimpleGemv::new(&default, &long).unwrap();
    let x = activations(&default, &common::rand_vec(72 * k, 100), &[72, k], DType::F32);
    assert!(simple.check(&x, &long).unwrap() <= 1.0, "72 rows of 8192 inputs");
    let asym = QuantScheme::asymmetric(Granularity::PerChannel { axis: 0 });
    let aq = reference::quantize(&common::rand_vec(8 * 16, 93), &[8, 16], asym).unwrap();
    let odd = reference::quantize(&common::rand_vec(8 * 18, 94), &[8, 18], QuantScheme::default()).unwrap();
    for (what, w) in [("asymmetric", aq), ("in % 4 != 0", odd)] {
        let err = SimpleGemv::new(&default, &w).unwrap_err();
        assert!(matches!(err, int8_wgpu::Error::Unsupported(_)), "{what}: {err}");
    }
}

/// The simple int8-activation kernel gives `reference::linear_a8`'s bits (per-token int8
/// activations, no bias) for 1-9 activation rows, a row count that is not a multiple of 4 and
/// row blocks; the check counts a changed weight's outputs; the library's matmul alone times as
/// its whole forward does, and only for int8-activation layers.
#[test]
fn simple_int8_gemv_computes_the_product() {
    let default = gpu_or_skip!();
    let small =
        Gpu::with_options(GpuOptions { max_storage_buffer_binding_size: Some(704), ..Default::default() }).unwrap();
    let (n, k) = (42, 64);
    let q = reference::quantize(&common::rand_vec(n * k, 95), &[n, k], QuantScheme::default()).unwrap();
    let mut values = q.values().to_vec();
    values[5 * k + 7] = values[5 * k + 7].wrapping_add(3);
    let wrong = QuantizedTensor::new(&[n, k], q.scheme(), values, q.scales().to_vec(), None).unwrap();
    for (gpu, rows) in [(&default, &[1usize, 3, 9][..]), (&small, &[1, 2][..])] {
        let simple = SimpleGemvA8::new(gpu, &q).unwrap();
        for &m in rows {
            let x = common::rand_vec(m * k, 96 + m as u64);
            assert_eq!(simple.check(&x, &q).unwrap(), 0, "m={m}: outputs differ from linear_a8");
            assert!(simple.check(&x, &wrong).unwrap() >= m, "m={m}: the check missed a changed weight");
            let t = simple.time(&simple.upload(&x).unwrap(), 2).unwrap();
            assert!(t.per_iter > std::time::Duration::ZERO && t.iters == 2, "m={m}: {t:?}");
        }
    }
    // Past llvmpipe's loop limit if one invocation looped over all 72 rows (see above).
    let long = reference::quantize(&common::rand_vec(8 * 8192, 99), &[8, 8192], QuantScheme::default()).unwrap();
    let simple = SimpleGemvA8::new(&default, &long).unwrap();
    assert_eq!(simple.check(&common::rand_vec(72 * 8192, 100), &long).unwrap(), 0, "72 rows of 8192 inputs");
    let layer = int8_wgpu::QuantizedLinear::from_quantized::<f32>(&default, &q, None, DType::F32).unwrap();
    let x = GpuTensor::from_host(&default, &common::rand_vec(3 * k, 97), &[3, k]).unwrap();
    assert!(matches!(time_stage(&layer, &x, ForwardStage::Matmul, 1), Err(int8_wgpu::Error::Unsupported(_))));
    let a8 = layer.with_activation_quant(int8_wgpu::ActivationQuant::per_token()).unwrap();
    assert_eq!(time_stage(&a8, &x, ForwardStage::Matmul, 2).unwrap().iters, 2);
    let asym = QuantScheme::asymmetric(Granularity::PerChannel { axis: 0 });
    let aq = reference::quantize(&common::rand_vec(8 * 16, 98), &[8, 16], asym).unwrap();
    let err = SimpleGemvA8::new(&default, &aq).unwrap_err();
    assert!(matches!(err, int8_wgpu::Error::Unsupported(_)), "{err}");
}

/// The simple quantizer gives the reference's ints and scale bits for every dtype (rows not a
/// multiple of its workgroup, columns not a multiple of 4, an all-zero row, a subnormal, exact
/// ties), which are also per-token int8 activations' (`reference::quantize_activations`), so it
/// is the yardstick of both jobs; W8A8's activation quantizer times alone, and only on
/// int8-activation layers.
#[test]
fn simple_quantizer_gives_the_reference_bits() {
    let gpu = gpu_or_skip!();
    let simple = SimpleQuantize::new(&gpu).unwrap();
    for (rows, cols) in [(1, 4), (70, 18), (65, 1027)] {
        let mut xf = common::rand_vec(rows * cols, (rows * cols) as u64);
        if rows > 1 {
            xf[cols..2 * cols].fill(0.0);
        }
        // Row 0: absmax 127 (scale 1) with ties 0.5 and -2.5, and a subnormal.
        xf[..4].copy_from_slice(&[127.0, 0.5, -2.5, 1e-40]);
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let x = activations(&gpu, &xf, &[rows, cols], dtype);
            let ctx = format!("[{rows}, {cols}] {dtype}");
            assert_eq!(simple.check(&x).unwrap(), 0, "{ctx}");
            let xs = x.read_f32().unwrap();
            let w = reference::quantize(&xs, &[rows, cols], QuantScheme::default()).unwrap();
            let a = reference::quantize_activations(&xs, cols, int8_wgpu::ActivationQuant::per_token()).unwrap();
            assert_eq!((w.values(), w.scales()), (&a.values[..], &a.scales[..]), "{ctx}: the two jobs' rules");
            assert!(simple.time(&x, 2).unwrap() > std::time::Duration::ZERO);
            assert_eq!(simple.time_kernel(&x, 2).unwrap().iters, 2);
        }
    }
    let q = reference::quantize(&common::rand_vec(8 * 32, 5), &[8, 32], QuantScheme::default()).unwrap();
    let layer = int8_wgpu::QuantizedLinear::from_quantized::<f32>(&gpu, &q, None, DType::F32).unwrap();
    let x = GpuTensor::from_host(&gpu, &common::rand_vec(3 * 32, 6), &[3, 32]).unwrap();
    let stage = ForwardStage::QuantizeActivations;
    assert!(matches!(time_stage(&layer, &x, stage, 1), Err(int8_wgpu::Error::Unsupported(_))));
    let a8 = layer.with_activation_quant(int8_wgpu::ActivationQuant::per_token()).unwrap();
    assert_eq!(time_stage(&a8, &x, stage, 2).unwrap().iters, 2);
}
