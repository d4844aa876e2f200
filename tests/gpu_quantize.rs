//! GPU quantization and dequantization against the CPU reference: ints and scale bits equal.

mod common;

use half::{bf16, f16};
use int8_wgpu::{DType, Element, Granularity, QuantScheme, QuantizedTensor, reference};

const SIZES: [usize; 7] = [1, 3, 4, 5, 17, 64, 257];

/// Every scheme that fits a `[rows, cols]` tensor, group sizes from the grid.
fn schemes(cols: usize) -> Vec<QuantScheme> {
    let mut g = vec![Granularity::PerTensor, Granularity::PerChannel { axis: 0 }, Granularity::PerChannel { axis: 1 }];
    g.extend(
        [1, 2, 3, 32, 128].iter().filter(|&&s| cols.is_multiple_of(s)).map(|&size| Granularity::PerGroup { size }),
    );
    g.iter().flat_map(|&g| [QuantScheme::symmetric(g), QuantScheme::asymmetric(g)]).collect()
}

fn check<T: Element>(gpu: &int8_wgpu::Gpu, x: &[T], shape: &[usize], s: QuantScheme, ctx: &str) -> QuantizedTensor {
    let cpu = reference::quantize(x, shape, s).unwrap();
    let got = gpu.quantize(x, shape, s).unwrap().to_host().unwrap();
    common::assert_same_quantized(&got, &cpu, ctx);
    cpu
}

#[test]
fn quantize_grid_matches_cpu_bit_for_bit() {
    let gpu = gpu_or_skip!();
    let mut seed = 0;
    for rows in SIZES {
        for cols in SIZES {
            for s in schemes(cols) {
                seed += 1;
                let x: Vec<f32> = common::rand_vec(rows * cols, seed).iter().map(|v| v * 3.0).collect();
                let ctx = format!("f32 [{rows}, {cols}] {s:?}");
                // Rotate the input dtype so every dtype meets every shape and scheme family.
                match seed % 3 {
                    0 => drop(check(&gpu, &x, &[rows, cols], s, &ctx)),
                    1 => {
                        let h: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
                        check(&gpu, &h, &[rows, cols], s, &format!("f16 {ctx}"));
                    }
                    _ => {
                        let h: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
                        check(&gpu, &h, &[rows, cols], s, &format!("bf16 {ctx}"));
                    }
                }
            }
        }
    }
}

#[test]
fn every_dtype_on_one_shape() {
    let gpu = gpu_or_skip!();
    let x = common::rand_vec(17 * 64, 99);
    for s in schemes(64) {
        check(&gpu, &x, &[17, 64], s, "f32");
        let h: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
        check(&gpu, &h, &[17, 64], s, "f16");
        let b: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
        check(&gpu, &b, &[17, 64], s, "bf16");
    }
}

#[test]
fn higher_rank_tensors() {
    let gpu = gpu_or_skip!();
    let x = common::rand_vec(3 * 5 * 8, 7);
    for g in [
        Granularity::PerChannel { axis: 1 },
        Granularity::PerChannel { axis: 2 },
        Granularity::PerGroup { size: 4 },
        Granularity::PerTensor,
    ] {
        for s in [QuantScheme::symmetric(g), QuantScheme::asymmetric(g)] {
            check(&gpu, &x, &[3, 5, 8], s, &format!("rank 3 {s:?}"));
        }
    }
}

#[test]
fn exact_ties_round_half_to_even() {
    let gpu = gpu_or_skip!();
    // absmax 127 gives scale exactly 1, so k + 0.5 lands on a tie.
    let mut x: Vec<f32> = vec![127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 125.5, -126.5, 3.5, 4.5, -3.5];
    let q = check(&gpu, &x, &[1, 12], QuantScheme::symmetric(Granularity::PerTensor), "ties");
    assert_eq!(q.scales(), [1.0]);
    assert_eq!(q.values(), [127, 0, 2, 2, 0, -2, -2, 126, -126, 4, 4, -4]);
    // absmax 63.5 gives scale 0.5: k/2 + 0.25 divides to a tie.
    x = vec![63.5, 0.25, 0.75, 1.25, -0.25, -0.75, 62.75, -1.25];
    let q = check(&gpu, &x, &[2, 4], QuantScheme::symmetric(Granularity::PerTensor), "ties 0.5");
    assert_eq!(q.scales(), [0.5]);
    assert_eq!(q.values(), [127, 0, 2, 2, 0, -2, 126, -2]);
    // Asymmetric range [-128, 127] gives scale 1 and zero point 0.
    x = vec![-128.0, 127.0, 0.5, 1.5, -0.5, -1.5, 2.5, -2.5];
    let q = check(&gpu, &x, &[1, 8], QuantScheme::asymmetric(Granularity::PerTensor), "asym ties");
    assert_eq!((q.scales(), q.zero_points()), (&[1.0f32][..], Some(&[0i8][..])));
    assert_eq!(q.values(), [-128, 127, 0, 2, 0, -2, 2, -2]);
}

#[test]
fn zero_and_constant_rows() {
    let gpu = gpu_or_skip!();
    let mut x = vec![0.0f32; 4 * 5];
    x[10..15].copy_from_slice(&[2.5; 5]);
    x[15..20].copy_from_slice(&[-1.0, 0.0, 1e-39, 3.0, -7.0]);
    for s in schemes(5) {
        let q = check(&gpu, &x, &[4, 5], s, &format!("zero/constant rows {s:?}"));
        let d = q.dequantize();
        assert!(d.iter().all(|v| v.is_finite()), "{s:?}: non-finite dequant");
        assert!(q.scales().iter().all(|s| s.is_finite() && *s > 0.0), "{s:?}: scale");
        if s.granularity == (Granularity::PerChannel { axis: 0 }) {
            assert_eq!(&d[..10], &[0.0; 10], "{s:?}: zero rows dequantize to exactly 0");
            for v in &d[10..15] {
                assert!((v - 2.5).abs() <= q.scales()[2] / 2.0, "{s:?}: constant row gives {v}");
            }
        }
    }
}

#[test]
fn dequantize_matches_cpu() {
    let gpu = gpu_or_skip!();
    let x = common::rand_vec(33 * 17, 5);
    for s in schemes(17) {
        let cpu = reference::quantize(&x, &[33, 17], s).unwrap();
        let gq = int8_wgpu::GpuQuantizedTensor::from_host(&gpu, &cpu).unwrap();
        let want = cpu.dequantize();
        let got = gq.dequantize(DType::F32).unwrap().read::<f32>().unwrap();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want), "{s:?}: f32 dequant bits");
        let got = gq.dequantize(DType::F16).unwrap().read::<f16>().unwrap();
        assert_eq!(got, want.iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>(), "{s:?}: f16");
        let got = gq.dequantize(DType::BF16).unwrap().read::<bf16>().unwrap();
        assert_eq!(got, want.iter().map(|&v| bf16::from_f32(v)).collect::<Vec<_>>(), "{s:?}: bf16");
    }
}

#[test]
fn gpu_resident_input_quantizes_the_same() {
    let gpu = gpu_or_skip!();
    let x: Vec<bf16> = common::rand_vec(9 * 32, 11).iter().map(|&v| bf16::from_f32(v)).collect();
    let t = int8_wgpu::GpuTensor::from_host(&gpu, &x, &[9, 32]).unwrap();
    for s in schemes(32) {
        let got = gpu.quantize_tensor(&t, s).unwrap().to_host().unwrap();
        common::assert_same_quantized(&got, &reference::quantize(&x, &[9, 32], s).unwrap(), "resident");
    }
}

#[test]
fn compressed_tensors_packing_is_read_without_repacking() {
    let gpu = gpu_or_skip!();
    for (n, k) in [(5, 17), (9, 64)] {
        let group = if k % 16 == 0 { 16 } else { k };
        for s in [QuantScheme::default(), QuantScheme::asymmetric(Granularity::PerGroup { size: group })] {
            let q = reference::quantize(&common::rand_vec(n * k, 3), &[n, k], s).unwrap();
            // compressed-tensors stores q + 128 in each byte: our words XOR 0x80808080.
            let words: Vec<u32> = q.packed_words().iter().map(|w| w ^ 0x8080_8080).collect();
            let gq =
                int8_wgpu::GpuQuantizedTensor::from_packed(&gpu, &[n, k], s, &words, true, q.scales(), q.zero_points())
                    .unwrap();
            common::assert_same_quantized(&gq.to_host().unwrap(), &q, "offset-binary");
            let d = gq.dequantize(DType::F32).unwrap().read::<f32>().unwrap();
            assert_eq!(d, q.dequantize(), "dequant of offset-binary words");
            let plain = int8_wgpu::QuantizedLinear::from_quantized::<f32>(&gpu, &q, None, DType::F32).unwrap();
            let packed = int8_wgpu::QuantizedLinear::from_gpu::<f32>(gq, None, DType::F32).unwrap();
            for m in [1, 9] {
                let x = common::rand_vec(m * k, 4);
                let a = plain.forward_host(&x, &[m, k]).unwrap();
                let b = packed.forward_host(&x, &[m, k]).unwrap();
                assert_eq!(a, b, "[{n}, {k}] m={m}: same outputs bit for bit");
            }
        }
    }
    let bad = int8_wgpu::GpuQuantizedTensor::from_packed(
        &gpu,
        &[2, 8],
        QuantScheme::default(),
        &[0; 3],
        true,
        &[1.0, 1.0],
        None,
    );
    assert!(matches!(bad, Err(int8_wgpu::Error::Shape(_))));
}

/// Quantization in one dispatch per block (`quantize_runs_main`, what CPU adapters take for
/// scale groups that are runs within rows) and in three passes give the same ints and scale
/// bits, the same first non-finite element and the same overflowing group, on every dtype,
/// with row blocks, asymmetric schemes and groups; both are forced here, whatever the adapter
/// would pick.
#[test]
fn one_dispatch_and_three_passes_agree() {
    let _ = gpu_or_skip!();
    let open = |runs, binding: Option<u64>| {
        int8_wgpu::Gpu::with_options(int8_wgpu::GpuOptions {
            quantize_runs: Some(runs),
            max_storage_buffer_binding_size: binding,
            ..Default::default()
        })
        .unwrap()
    };
    // 4 KiB bindings: 33 rows of 40 f32 take two blocks, 9 rows of 256 three.
    for binding in [None, Some(4096)] {
        let (runs, passes) = (open(true, binding), open(false, binding));
        for (rows, cols) in [(33, 40), (5, 3), (9, 256)] {
            let schemes = [
                QuantScheme::default(),
                QuantScheme::asymmetric(Granularity::PerChannel { axis: 0 }),
                QuantScheme::symmetric(Granularity::PerGroup { size: if cols % 8 == 0 { 8 } else { cols } }),
                QuantScheme::asymmetric(Granularity::PerGroup {
                    size: if cols % 32 == 0 {
                        32
                    } else if cols % 4 == 0 {
                        4
                    } else {
                        cols
                    },
                }),
            ];
            for s in schemes {
                let mut x: Vec<f32> =
                    common::rand_vec(rows * cols, (rows * cols) as u64).iter().map(|v| v * 3.0).collect();
                x[0] = 0.5;
                let ctx = format!("[{rows}, {cols}] {s:?} binding {binding:?}");
                let a = runs.quantize(&x, &[rows, cols], s).unwrap().to_host().unwrap();
                let b = passes.quantize(&x, &[rows, cols], s).unwrap().to_host().unwrap();
                common::assert_same_quantized(&a, &b, &ctx);
                common::assert_same_quantized(&a, &reference::quantize(&x, &[rows, cols], s).unwrap(), &ctx);
                let h: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
                let a = runs.quantize(&h, &[rows, cols], s).unwrap().to_host().unwrap();
                common::assert_same_quantized(&a, &reference::quantize(&h, &[rows, cols], s).unwrap(), &ctx);
                // The first non-finite element, however many follow.
                let mut bad = x.clone();
                for i in [rows * cols - 1, rows * cols / 2, 2.min(rows * cols - 1)] {
                    bad[i] = f32::NAN;
                }
                let index = |r: int8_wgpu::Result<int8_wgpu::GpuQuantizedTensor>| match r {
                    Err(int8_wgpu::Error::NonFinite { index, .. }) => index,
                    other => panic!("{ctx}: expected NonFinite, got {other:?}"),
                };
                let first = index(runs.quantize(&bad, &[rows, cols], s));
                assert_eq!(first, index(passes.quantize(&bad, &[rows, cols], s)), "{ctx}");
                assert_eq!(first, 2.min(rows * cols - 1), "{ctx}");
            }
        }
        // A group whose range overflows the scale: the same group is named.
        let mut w = vec![1.0f32; 4 * 8];
        w[13] = f32::MAX;
        w[14] = -f32::MAX;
        let s = QuantScheme::asymmetric(Granularity::PerChannel { axis: 0 });
        for g in [&runs, &passes] {
            assert!(matches!(g.quantize(&w, &[4, 8], s), Err(int8_wgpu::Error::RangeOverflow { param: 1, .. })));
        }
    }
}
