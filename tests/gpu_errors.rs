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
    assert!(matches!(gpu.quantize(&w, &[2, 2], s), Err(Error::RangeOverflow { param: 0 })));
    assert!(matches!(reference::quantize(&w, &[2, 2], s), Err(Error::RangeOverflow { param: 0 })));
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
    assert!(matches!(layer.forward_into(&x, &x.reshape(&[2, 6]).unwrap()), Err(Error::Shape(_))));
}
