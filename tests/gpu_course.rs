//! The course's worked examples, reproduced on the GPU (ints exactly, outputs within tolerance).
#![allow(clippy::excessive_precision)] // the course prints these exact bf16 values

mod common;

use half::bf16;
use int8_wgpu::{DType, Granularity, QuantScheme, QuantizedLinear, reference};

const T: [f32; 9] = [191.6, -13.5, 728.6, 92.14, 295.5, -184.0, 0.0, 684.6, 245.5];

#[test]
fn asymmetric_per_tensor_parameters() {
    let gpu = gpu_or_skip!();
    let q = gpu.quantize(&T, &[3, 3], QuantScheme::asymmetric(Granularity::PerTensor)).unwrap().to_host().unwrap();
    assert_eq!(q.zero_points(), Some(&[-77i8][..]));
    assert_eq!(q.scales()[0].to_bits(), ((728.6f32 - -184.0f32) / 255.0).to_bits());
    assert!((q.scales()[0] - 3.578_823).abs() < 1e-6, "scale {}", q.scales()[0]);
}

#[test]
fn symmetric_per_channel_axis0() {
    let gpu = gpu_or_skip!();
    let q = gpu
        .quantize(&T, &[3, 3], QuantScheme::symmetric(Granularity::PerChannel { axis: 0 }))
        .unwrap()
        .to_host()
        .unwrap();
    assert_eq!(q.values(), [33, -2, 127, 40, 127, -79, 0, 127, 46]);
    for (got, want) in q.scales().iter().zip([5.7370, 2.3268, 5.3906]) {
        assert!((got - want).abs() < 1e-4, "scale {got} vs {want}");
    }
}

#[test]
fn w8a32_example() {
    let gpu = gpu_or_skip!();
    let w = [-2.0f32, -1.13, 0.42, -1.51, 0.25, 1.62, 0.23, 1.35, 2.15];
    let layer = QuantizedLinear::from_float::<f32, f32>(
        &gpu,
        &w,
        [3, 3],
        None,
        QuantScheme::symmetric(Granularity::PerTensor),
        DType::F32,
    )
    .unwrap();
    let q = layer.weight().to_host().unwrap();
    assert_eq!(q.values(), [-118, -67, 25, -89, 15, 96, 14, 80, 127]);
    assert_eq!(q.scales()[0].to_bits(), (2.15f32 / 127.0).to_bits());
    let y = layer.forward_host(&[1.0f32, 2.0, 3.0], &[1, 3]).unwrap();
    for (got, want) in y.iter().zip([-2.9965, 3.8768, 9.3957]) {
        assert!((got - want).abs() < 1e-4, "y {got} vs course {want}");
    }
}

#[test]
fn w8a16_bf16_per_channel_clamps_instead_of_wrapping() {
    let gpu = gpu_or_skip!();
    #[rustfmt::skip]
    let w: Vec<bf16> = [
        0.466_796_88, 0.375, -0.296875, 0.91796875, 1.2578125, 0.108_886_72, 0.0, 1.0703125,
        -0.98046875, 0.064_941_406, -0.6484375, -0.146_484_38, -1.421875, 0.061_523_438, 0.0, 0.0,
        -0.50390625, -1.921875, 0.071_289_06, 1.0625, 0.034_667_97, -1.3203125, -0.169_921_88, 1.4921875,
        0.040_283_203, -0.7890625, -0.5390625, 0.9140625, 1.453125, -1.0859375, -0.33984375, -0.43359375,
    ].iter().map(|&v: &f32| bf16::from_f32(v)).collect();
    let layer =
        QuantizedLinear::from_float::<bf16, bf16>(&gpu, &w, [4, 8], None, QuantScheme::default(), DType::BF16).unwrap();
    let q = layer.weight().to_host().unwrap();
    #[rustfmt::skip]
    assert_eq!(q.values(), [
        47, 38, -30, 93, 127, 11, 0, 108,
        -88, 6, -58, -13, -127, 5, 0, 0,
        -33, -127, 5, 70, 2, -87, -11, 99,
        4, -69, -47, 80, 127, -95, -30, -38,
    ]);
    // The course computed in bf16: 1.453125 / scale = 127.3 rounded to 128 in bf16, and the
    // int8 cast wrapped it to -128. In f32 with clamping it is 127.
    assert_eq!(q.values()[3 * 8 + 4], 127);
    let x: Vec<bf16> = common::rand_vec(2 * 8, 3).iter().map(|&v| bf16::from_f32(v)).collect();
    let y = layer.forward_host(&x, &[2, 8]).unwrap();
    common::assert_linear_close(
        &y,
        &x,
        &reference::quantize(&w, &[4, 8], QuantScheme::default()).unwrap(),
        None,
        "course bf16",
    );
}
