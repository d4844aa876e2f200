//! The benches' yardsticks (feature `bench`): the dense f32 layer computes the product it is
//! timed for, and every read-limit kernel reads every byte exactly once.

mod common;

use int8_wgpu::gpu::bench::{DenseLinear, ReadKernel, ReadLimit};
use int8_wgpu::{DType, Gpu, GpuOptions, GpuTensor};

#[test]
fn dense_yardstick_computes_the_product() {
    let _ = gpu_or_skip!();
    for rpt in [1u8, 2, 4] {
        // gemm_min_rows 9: 20 rows take the dense GEMM, 2 rows its GEMV.
        let options = GpuOptions { gemv_rows_per_group: Some(rpt), gemm_min_rows: Some(9), ..Default::default() };
        let gpu = Gpu::with_options(options).unwrap();
        let wf = common::rand_vec(40 * 64, 77);
        let dense = DenseLinear::new(&gpu, &wf, [40, 64]).unwrap();
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
        assert!(kernels.contains(&ReadKernel::Vec4Strided), "{kernels:?}");
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
