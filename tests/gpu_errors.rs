//! Bad input gets a clear Error on the GPU path, never a panic or a silent NaN.

mod common;

use half::f16;
use int8_wgpu::{DType, Error, GpuQuantizedTensor, GpuTensor, Granularity, QuantScheme, QuantizedLinear, reference};

#[test]
fn non_finite_weights_name_their_position() {
    let gpu = gpu_or_skip!();
    for (i, bad) in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY].into_iter().enumerate() {
        let mut w = common::rand_vec(3 * 7, 1);
        w[12] = bad;
        w[19] = f32::NAN; // only the first is reported
        for g in [Granularity::PerTensor, Granularity::PerChannel { axis: 1 }, Granularity::PerGroup { size: 7 }] {
            let s = if i % 2 == 0 { QuantScheme::symmetric(g) } else { QuantScheme::asymmetric(g) };
            match gpu.quantize(&w, &[3, 7], s) {
                Err(Error::NonFinite { position, index, value, .. }) => {
                    assert_eq!((position, index), (vec![1, 5], 12), "{s:?}");
                    assert_eq!(value.to_bits(), bad.to_bits(), "{s:?}");
                }
                other => panic!("{s:?}: expected NonFinite, got {other:?}"),
            }
            let err = gpu.quantize(&w, &[3, 7], s).unwrap_err().to_string();
            assert!(err.contains("[1, 5]"), "message names the position: {err}");
        }
        // The same from a GPU-resident f16 tensor.
        let h: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
        let t = GpuTensor::from_host(&gpu, &h, &[3, 7]).unwrap();
        match gpu.quantize_tensor(&t, QuantScheme::default()) {
            Err(Error::NonFinite { position, value, .. }) => {
                assert_eq!(position, [1, 5]);
                assert!(!value.is_finite());
            }
            other => panic!("expected NonFinite, got {other:?}"),
        }
    }
}

#[test]
fn non_finite_activations_and_bias() {
    let gpu = gpu_or_skip!();
    let w = reference::quantize(&common::rand_vec(4 * 6, 2), &[4, 6], QuantScheme::default()).unwrap();
    let layer = QuantizedLinear::from_quantized::<f32>(&gpu, &w, None, DType::F32).unwrap();
    let mut x = common::rand_vec(2 * 6, 3);
    x[9] = f32::INFINITY;
    match layer.forward_host(&x, &[2, 6]) {
        Err(Error::NonFinite { position, .. }) => assert_eq!(position, [1, 3]),
        other => panic!("expected NonFinite, got {other:?}"),
    }
    let r = QuantizedLinear::from_quantized(&gpu, &w, Some(&[0.0, f32::NAN, 0.0, 0.0][..]), DType::F32);
    assert!(matches!(r, Err(Error::NonFinite { .. })), "{r:?}");
}

#[test]
fn range_overflow_is_an_error() {
    let gpu = gpu_or_skip!();
    let w = [-3e38f32, 3e38, 1.0, 2.0];
    let s = QuantScheme::asymmetric(Granularity::PerChannel { axis: 0 });
    assert!(matches!(gpu.quantize(&w, &[2, 2], s), Err(Error::RangeOverflow { param: 0, .. })));
    assert!(matches!(reference::quantize(&w, &[2, 2], s), Err(Error::RangeOverflow { param: 0, .. })));
    // Symmetric handles the same values.
    let q = gpu.quantize(&w, &[2, 2], QuantScheme::default()).unwrap().to_host().unwrap();
    assert_eq!(q.values()[..2], [-127, 127]);
}

#[test]
fn shape_dtype_and_scheme_errors() {
    let gpu = gpu_or_skip!();
    let w = common::rand_vec(4 * 6, 4);
    let s = QuantScheme::default();
    assert!(matches!(gpu.quantize(&w, &[4, 5], s), Err(Error::Shape(_))));
    assert!(matches!(
        gpu.quantize(&w, &[4, 6], QuantScheme::symmetric(Granularity::PerGroup { size: 4 })),
        Err(Error::Scheme(_))
    ));
    assert!(matches!(
        gpu.quantize(&w, &[4, 6], QuantScheme::symmetric(Granularity::PerChannel { axis: 2 })),
        Err(Error::Scheme(_))
    ));
    assert!(matches!(gpu.quantize::<f32>(&[], &[0, 6], s), Err(Error::Empty(_))));
    assert!(matches!(gpu.quantize::<f32>(&[], &[], s), Err(Error::Shape(_))));
    assert!(matches!(GpuTensor::from_host::<f32>(&gpu, &[], &[3, 0]), Err(Error::Empty(_))));

    let q = reference::quantize(&w, &[4, 6], s).unwrap();
    let layer = QuantizedLinear::from_quantized::<f32>(&gpu, &q, None, DType::F16).unwrap();
    let x: Vec<f16> = vec![f16::ZERO; 12];
    assert!(matches!(layer.forward_host(&x, &[2, 5]), Err(Error::Shape(_))), "shape/len mismatch");
    assert!(matches!(layer.forward_host(&x, &[3, 4]), Err(Error::Shape(_))), "last dim != in");
    assert!(matches!(layer.forward_host(&[0f32; 12], &[2, 6]), Err(Error::DType { .. })));
    let xt = GpuTensor::from_host(&gpu, &[0f32; 12], &[2, 6]).unwrap();
    assert!(matches!(layer.forward(&xt), Err(Error::DType { .. })));
    let xt = GpuTensor::from_host(&gpu, &x, &[2, 6]).unwrap();
    let wrong = GpuTensor::zeros(&gpu, &[2, 3], DType::F16).unwrap();
    assert!(matches!(layer.forward_into(&xt, &wrong), Err(Error::Shape(_))));
    assert!(matches!(
        QuantizedLinear::from_quantized(&gpu, &q, Some(&[0f32; 3][..]), DType::F32),
        Err(Error::Shape(_))
    ));
    let q3 = reference::quantize(&common::rand_vec(24, 5), &[2, 3, 4], s).unwrap();
    assert!(matches!(QuantizedLinear::from_quantized::<f32>(&gpu, &q3, None, DType::F32), Err(Error::Shape(_))));
    assert!(matches!(xt.read::<f32>(), Err(Error::DType { .. })));
    assert!(matches!(xt.reshape(&[5]), Err(Error::Shape(_))));
    let _ = GpuQuantizedTensor::from_host(&gpu, &q).unwrap();
}

#[test]
fn output_aliasing_input_is_an_error() {
    let gpu = gpu_or_skip!();
    let q = reference::quantize(&common::rand_vec(6 * 6, 8), &[6, 6], QuantScheme::default()).unwrap();
    let layer = QuantizedLinear::from_quantized::<f32>(&gpu, &q, None, DType::F32).unwrap();
    let x = GpuTensor::from_host(&gpu, &common::rand_vec(12, 9), &[2, 6]).unwrap();
    assert!(matches!(layer.forward_into(&x, &x.reshape(&[2, 6]).unwrap()), Err(Error::Aliasing(_))));
}

/// Every scheme the linear layer runs, on both modes.
fn linear_schemes() -> Vec<QuantScheme> {
    let grans = [
        Granularity::PerTensor,
        Granularity::PerChannel { axis: 0 },
        Granularity::PerChannel { axis: 1 },
        Granularity::PerGroup { size: 4 },
    ];
    grans.into_iter().flat_map(|g| [QuantScheme::symmetric(g), QuantScheme::asymmetric(g)]).collect()
}

/// Activations at the dtype's largest finite value overflow the output: an `Error::Overflow`
/// on the CPU reference and the GPU, never an `Ok` holding inf or NaN (8 schemes x 3 dtypes x
/// bias or not).
#[test]
fn activations_at_the_dtype_maximum_are_an_overflow_error() {
    let gpu = gpu_or_skip!();
    // Positive weights, so no row sum cancels back into range.
    let w: Vec<f32> = common::rand_vec(4 * 8, 11).iter().map(|v| 0.5 + 0.5 * v.abs()).collect();
    fn check<T: int8_wgpu::Element>(gpu: &int8_wgpu::Gpu, q: &int8_wgpu::QuantizedTensor, bias: bool, max: f32) {
        let x = vec![T::from_f32(max); 2 * 8];
        let b = bias.then(|| vec![T::from_f32(0.25); 4]);
        let ctx = format!("{:?} {} bias {bias}", q.scheme(), T::DTYPE);
        match reference::linear(&x, q, b.as_deref()) {
            Err(Error::Overflow { position, .. }) => assert_eq!(position, [0, 0], "{ctx}: cpu"),
            other => panic!("{ctx}: cpu: expected Overflow, got {other:?}"),
        }
        let layer = QuantizedLinear::from_quantized(gpu, q, b.as_deref(), T::DTYPE).unwrap();
        match layer.forward_host(&x, &[2, 8]) {
            Err(e @ Error::Overflow { .. }) => {
                let Error::Overflow { ref position, value, .. } = e else { unreachable!() };
                assert_eq!(position, &[0, 0], "{ctx}: gpu");
                assert!(!value.is_finite(), "{ctx}: gpu: {value}");
                assert!(e.to_string().contains(&format!("linear output ({})", T::DTYPE)), "{ctx}: {e}");
            }
            other => panic!("{ctx}: gpu: expected Overflow, got {other:?}"),
        }
    }
    let mut cases = 0;
    for s in linear_schemes() {
        let q = reference::quantize(&w, &[4, 8], s).unwrap();
        for bias in [false, true] {
            check::<f32>(&gpu, &q, bias, f32::MAX);
            check::<f16>(&gpu, &q, bias, f16::MAX.to_f32());
            check::<half::bf16>(&gpu, &q, bias, half::bf16::MAX.to_f32());
            cases += 3;
        }
    }
    assert_eq!(cases, 48);
}

/// Device-resident activations are not checked (documented on `forward`): an infinite input
/// gives non-finite outputs and `Ok`.
#[test]
fn device_resident_activations_are_not_checked() {
    let gpu = gpu_or_skip!();
    let q = reference::quantize(&common::rand_vec(4 * 8, 12), &[4, 8], QuantScheme::default()).unwrap();
    let layer = QuantizedLinear::from_quantized::<f32>(&gpu, &q, None, DType::F32).unwrap();
    let mut x = common::rand_vec(8, 13);
    x[3] = f32::INFINITY;
    let y = layer.forward(&GpuTensor::from_host(&gpu, &x, &[1, 8]).unwrap()).unwrap().read::<f32>().unwrap();
    assert!(y.iter().all(|v| !v.is_finite()), "{y:?}");
}

/// Weights whose scale would make a dequantized value overflow are a `RangeOverflow` on both
/// paths; just inside the bound they quantize and dequantize to finite values.
#[test]
fn weights_at_f32_max_are_a_range_overflow() {
    let gpu = gpu_or_skip!();
    let sym = |g| QuantScheme::symmetric(g);
    let asym = |g| QuantScheme::asymmetric(g);
    let cases: [(Vec<f32>, QuantScheme, Option<usize>); 7] = [
        // Not an overflow: a range of a few subnormal steps takes the symmetric scale on both.
        (vec![0.0, 2e-36, 1.0, 2.0], asym(Granularity::PerChannel { axis: 0 }), None),
        (vec![1.0, 2.0, f32::MAX, -f32::MAX], sym(Granularity::PerChannel { axis: 0 }), Some(1)),
        (vec![1.0, 2.0, 3.0, -f32::MAX], sym(Granularity::PerTensor), Some(0)),
        (vec![1.0, 2.0, 3.3e38, -3.3e38], sym(Granularity::PerChannel { axis: 0 }), None),
        // Range 3.4e38 is finite, but its scale 3.4e38 / 255 exceeds f32::MAX / 256.
        (vec![1.7e38, -1.7e38, 1.0, 2.0], asym(Granularity::PerChannel { axis: 0 }), Some(0)),
        (vec![1.5e38, -1.5e38, 1.0, 2.0], asym(Granularity::PerChannel { axis: 0 }), None),
        (vec![1.0, 2.0, 1.5e38, -1.5e38], asym(Granularity::PerGroup { size: 2 }), None),
    ];
    for (w, s, overflow) in cases {
        let (cpu, on_gpu) = (reference::quantize(&w, &[2, 2], s), gpu.quantize(&w, &[2, 2], s));
        match overflow {
            Some(param) => {
                // Only an asymmetric scheme is advised to switch to the symmetric one.
                let sym = s.mode == int8_wgpu::Mode::Symmetric;
                for r in [cpu.map(|_| ()), on_gpu.map(|_| ())] {
                    let e = r.unwrap_err();
                    assert!(
                        matches!(e, Error::RangeOverflow { param: p, symmetric } if p == param && symmetric == sym),
                        "{w:?} {s:?}: {e:?}"
                    );
                    assert_eq!(e.to_string().contains("use the symmetric scheme"), !sym, "{s:?}: {e}");
                    assert!(e.to_string().contains("rescale the weights"), "{e}");
                }
            }
            None => {
                let cpu = cpu.unwrap();
                assert!(cpu.dequantize().iter().all(|v| v.is_finite()), "{w:?} {s:?}: {:?}", cpu.dequantize());
                common::assert_same_quantized(&on_gpu.unwrap().to_host().unwrap(), &cpu, &format!("{s:?}"));
            }
        }
    }
}

/// Scales that are zero, negative, subnormal, or so large that a dequantized value overflows
/// are refused wherever scales come in: `QuantizedTensor::new` (checkpoints go through it) and
/// `GpuQuantizedTensor::from_packed`.
#[test]
fn scales_outside_the_safe_range_are_refused() {
    let gpu = gpu_or_skip!();
    let ints: Vec<i8> = (0..2 * 4).map(|i| i as i8 - 4).collect();
    let words = [0x8382_8180u32, 0x8786_8584];
    let sym = QuantScheme::default();
    let asym = QuantScheme::asymmetric(Granularity::PerChannel { axis: 0 });
    for (s, scheme, bad) in [
        (0.0, sym, true),
        (-0.5, sym, true),
        (1e-40, sym, true),
        (3e38, sym, true),
        (f32::MAX / 128.0, sym, false),
        (f32::MAX / 128.0, asym, true),
        (f32::MAX / 256.0, asym, false),
        (f32::MIN_POSITIVE, sym, false),
    ] {
        let scales = vec![0.1, s];
        let zps = scheme.has_zero_point().then(|| vec![0i8, 3]);
        let host = int8_wgpu::QuantizedTensor::new(&[2, 4], scheme, ints.clone(), scales.clone(), zps.clone());
        let dev = GpuQuantizedTensor::from_packed(&gpu, &[2, 4], scheme, &words, true, &scales, zps.as_deref());
        if bad {
            for (path, r) in [("host", host.map(|_| ())), ("gpu", dev.map(|_| ()))] {
                match r {
                    Err(e @ Error::BadScale { index: 1, .. }) => {
                        assert!(e.to_string().contains("scale 1 is"), "{e}")
                    }
                    other => panic!("{path}: scale {s:e} {scheme:?}: expected BadScale, got {other:?}"),
                }
            }
        } else {
            let host = host.unwrap();
            assert!(host.dequantize().iter().all(|v| v.is_finite()), "scale {s:e}");
            dev.unwrap();
        }
    }
    let nan = int8_wgpu::QuantizedTensor::new(&[2, 4], sym, ints, vec![0.1, f32::NAN], None);
    assert!(matches!(nan, Err(Error::NonFinite { index: 1, .. })), "{nan:?}");
}

/// An f32 bias that does not fit the f16 activations is an error, not an infinite bias.
#[test]
fn bias_that_overflows_the_activation_dtype_is_an_error() {
    let gpu = gpu_or_skip!();
    let q = reference::quantize(&common::rand_vec(4 * 8, 14), &[4, 8], QuantScheme::default()).unwrap();
    let bias = [0.0f32, 1e30, 0.0, 0.0];
    match QuantizedLinear::from_quantized(&gpu, &q, Some(&bias[..]), DType::F16) {
        Err(e @ Error::Overflow { .. }) => {
            assert!(matches!(e, Error::Overflow { index: 1, .. }), "{e:?}");
            assert!(e.to_string().contains("bias value 1e30 converted to f16"), "{e}");
        }
        other => panic!("expected Overflow, got {other:?}"),
    }
    // bf16 has f32's range.
    QuantizedLinear::from_quantized(&gpu, &q, Some(&bias[..]), DType::BF16).unwrap();
}

/// The CPU reference and the GPU give the same error kind for the same bad shape.
#[test]
fn cpu_and_gpu_agree_on_error_kinds() {
    let gpu = gpu_or_skip!();
    let w = common::rand_vec(6, 15);
    let s = QuantScheme::default();
    let kind = |r: Result<(), Error>| match r {
        Err(Error::Shape(_)) => "Shape",
        Err(Error::TooLarge { .. }) => "TooLarge",
        Err(Error::Empty(_)) => "Empty",
        other => panic!("unexpected {other:?}"),
    };
    for shape in [vec![1usize << 32, 2], vec![usize::MAX, 2], vec![3, 0], vec![], vec![4, 2]] {
        let cpu = kind(reference::quantize(&w, &shape, s).map(|_| ()));
        let on_gpu = kind(gpu.quantize(&w, &shape, s).map(|_| ()));
        let tensor = kind(GpuTensor::from_host(&gpu, &w, &shape).map(|_| ()));
        assert_eq!((cpu, cpu), (on_gpu, tensor), "shape {shape:?}");
    }
}

/// Dequantizing to a 16-bit dtype that cannot hold the weights is an overflow, not infinities.
#[test]
fn dequantizing_beyond_f16_is_an_overflow() {
    let gpu = gpu_or_skip!();
    let q = reference::quantize(&[1e5f32, -1e5, 3.0, 0.5], &[2, 2], QuantScheme::default()).unwrap();
    let w = int8_wgpu::GpuQuantizedTensor::from_host(&gpu, &q).unwrap();
    match w.dequantize(DType::F16) {
        Err(Error::Overflow { index: 0, value, .. }) => assert!(value.is_infinite(), "{value}"),
        r => panic!("{:?}", r.map(|t| t.read_f32())),
    }
    let bf = w.dequantize(DType::BF16).unwrap().read_f32().unwrap();
    assert!(bf.iter().all(|v| v.is_finite()) && (bf[0] - 1e5).abs() < 1e3, "{bf:?}");
    let small = reference::quantize(&[1.0f32, -2.0, 3.0, 0.5], &[2, 2], QuantScheme::default()).unwrap();
    let small = int8_wgpu::GpuQuantizedTensor::from_host(&gpu, &small).unwrap();
    assert!(small.dequantize(DType::F16).unwrap().read_f32().unwrap().iter().all(|v| v.is_finite()));
}
