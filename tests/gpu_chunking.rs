//! Weights larger than one storage binding are split into row blocks: forced here by opening
//! a device with a tiny `max_storage_buffer_binding_size`.

mod common;

use half::bf16;
use int8_wgpu::{DType, Gpu, GpuOptions, GpuQuantizedTensor, Granularity, QuantScheme, QuantizedLinear, reference};

const LIMIT: u64 = 4096;

fn small_gpu() -> Option<Gpu> {
    common::gpu()?; // fail under CI / skip elsewhere exactly like the other tests
    let g = Gpu::with_options(GpuOptions { max_storage_buffer_binding_size: Some(LIMIT), ..Default::default() })
        .expect("a device with smaller limits");
    assert_eq!(g.limits().max_storage_buffer_binding_size, LIMIT);
    Some(g)
}

#[test]
fn quantize_and_linear_across_row_blocks() {
    let Some(gpu) = small_gpu() else { return };
    let (n, k) = (70, 64); // f32 rows of 256 B: 16 rows per input block
    let w = common::rand_vec(n * k, 21);
    for g in [
        Granularity::PerChannel { axis: 0 },
        Granularity::PerChannel { axis: 1 },
        Granularity::PerTensor,
        Granularity::PerGroup { size: 32 },
    ] {
        for s in [QuantScheme::symmetric(g), QuantScheme::asymmetric(g)] {
            let gq = gpu.quantize(&w, &[n, k], s).unwrap();
            assert_eq!(gq.num_blocks(), n.div_ceil(16), "{s:?}: block count");
            let cpu = reference::quantize(&w, &[n, k], s).unwrap();
            common::assert_same_quantized(&gq.to_host().unwrap(), &cpu, &format!("blocks {s:?}"));
            let bias = common::rand_vec(n, 22);
            let layer = QuantizedLinear::from_gpu(gq, Some(&bias), DType::F32).unwrap();
            for m in [1, 8, 9] {
                let x = common::rand_vec(m * k, 23);
                let y = layer.forward_host(&x, &[m, k]).unwrap();
                common::assert_linear_close(&y, &x, &cpu, Some(&bias), &format!("blocks {s:?} m={m}"));
            }
        }
    }
}

#[test]
fn uploaded_int8_weights_are_split_too() {
    let Some(gpu) = small_gpu() else { return };
    let (n, k) = (100, 96); // packed rows of 96 B: 42 rows per block
    let w = common::rand_vec(n * k, 31);
    let cpu = reference::quantize(&w, &[n, k], QuantScheme::asymmetric(Granularity::PerGroup { size: 32 })).unwrap();
    let gq = GpuQuantizedTensor::from_host(&gpu, &cpu).unwrap();
    assert_eq!(gq.num_blocks(), 3);
    common::assert_same_quantized(&gq.to_host().unwrap(), &cpu, "upload");
    let d = gq.dequantize(DType::F32);
    assert!(d.is_err(), "a 38 KiB dequantized output exceeds the 4 KiB binding: an Error, not a panic");
    let layer = QuantizedLinear::from_gpu::<f32>(gq, None, DType::BF16).unwrap();
    let x: Vec<bf16> = common::rand_vec(3 * k, 32).iter().map(|&v| bf16::from_f32(v)).collect();
    let y = layer.forward_host(&x, &[3, k]).unwrap();
    common::assert_linear_close(&y, &x, &cpu, None, "upload bf16");
}

#[test]
fn a_row_too_large_for_one_binding_is_an_error() {
    let Some(gpu) = small_gpu() else { return };
    let w = common::rand_vec(2 * 2048, 41); // one f32 row is 8 KiB > 4 KiB
    let r = gpu.quantize(&w, &[2, 2048], QuantScheme::default());
    assert!(matches!(r, Err(int8_wgpu::Error::TooLarge { .. })), "{r:?}");
}
