//! Quantization on WebGPU: every scheme × input dtype bit for bit against the CPU reference.

use half::{bf16, f16};
use int8_wgpu::{DType, Element, Error, Gpu, GpuOptions, GpuQuantizedTensor, Granularity, QuantScheme, reference};
use wasm_bindgen_test::wasm_bindgen_test;

use crate::common::{self, to_dtype};

/// Per tensor, per channel (both axes), groups of 32; each symmetric and asymmetric.
fn schemes(cols: usize) -> Vec<QuantScheme> {
    let mut g = vec![Granularity::PerTensor, Granularity::PerChannel { axis: 0 }, Granularity::PerChannel { axis: 1 }];
    if cols.is_multiple_of(32) {
        g.push(Granularity::PerGroup { size: 32 });
    }
    g.iter().flat_map(|&g| [QuantScheme::symmetric(g), QuantScheme::asymmetric(g)]).collect()
}

async fn check<T: Element>(gpu: &Gpu, xf: &[f32], shape: &[usize], s: QuantScheme) {
    let x: Vec<T> = to_dtype(xf);
    let ctx = format!("{} {shape:?} {s:?}", T::DTYPE);
    let cpu = reference::quantize(&x, shape, s).unwrap();
    let got = gpu.quantize_async(&x, shape, s).await.unwrap().to_host_async().await.unwrap();
    common::assert_same_quantized(&got, &cpu, &ctx);
}

#[wasm_bindgen_test]
async fn every_scheme_and_dtype_matches_the_cpu_bit_for_bit() {
    grid(&common::gpu().await).await;
}

/// The three-pass form (statistics, scales, packing) that GPUs take; CPU adapters, SwiftShader
/// among them, take one dispatch per run where runs are rows or groups.
#[wasm_bindgen_test]
async fn the_three_pass_quantizer_matches_the_cpu_bit_for_bit() {
    grid(&common::open(GpuOptions { quantize_runs: Some(false), ..Default::default() }).await).await;
}

async fn grid(gpu: &Gpu) {
    let mut seed = 0;
    for shape in [[1usize, 32], [5, 33], [17, 64], [3, 96]] {
        for s in schemes(shape[1]) {
            seed += 1;
            let x: Vec<f32> = common::rand_vec(shape[0] * shape[1], seed).iter().map(|v| v * 3.0).collect();
            check::<f32>(gpu, &x, &shape, s).await;
            check::<f16>(gpu, &x, &shape, s).await;
            check::<bf16>(gpu, &x, &shape, s).await;
        }
    }
}

/// Dequantization on the GPU: f32 bits equal the host's, 16-bit outputs its values rounded.
#[wasm_bindgen_test]
async fn dequantize_matches_the_cpu() {
    let gpu = common::gpu().await;
    let x = common::rand_vec(33 * 64, 5);
    for s in schemes(64) {
        let cpu = reference::quantize(&x, &[33, 64], s).unwrap();
        let gq = GpuQuantizedTensor::from_host(&gpu, &cpu).unwrap();
        let want = cpu.dequantize();
        let got: Vec<f32> = gq.dequantize_async(DType::F32).await.unwrap().read_async().await.unwrap();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want), "{s:?}: f32 dequant bits");
        let got: Vec<f16> = gq.dequantize_async(DType::F16).await.unwrap().read_async().await.unwrap();
        assert_eq!(got, to_dtype::<f16>(&want), "{s:?}: f16");
        let got: Vec<bf16> = gq.dequantize_async(DType::BF16).await.unwrap().read_async().await.unwrap();
        assert_eq!(got, to_dtype::<bf16>(&want), "{s:?}: bf16");
    }
}

/// Ties, zeros, a constant row and subnormals: where an inexact division or a flushed
/// denormal would change an int.
#[wasm_bindgen_test]
async fn hard_values_match_the_cpu_bit_for_bit() {
    let gpu = common::gpu().await;
    let mut x = vec![0.0f32; 4 * 32];
    for (i, v) in x.iter_mut().enumerate().take(32) {
        *v = (i as f32 - 16.0) * 0.5; // row 0: exact .5 ties at scale 1/8
    }
    x[32..64].fill(0.25); // row 1: constant
    // row 2: all zero; row 3: subnormals and one normal
    for (i, v) in x[96..128].iter_mut().enumerate() {
        *v = f32::from_bits(i as u32 * 3 + 1);
    }
    x[127] = 1e-3;
    for s in schemes(32) {
        check::<f32>(&gpu, &x, &[4, 32], s).await;
        check::<bf16>(&gpu, &x, &[4, 32], s).await;
    }
}

/// In a browser nothing may block: the blocking calls answer `Error::Unsupported`, naming the
/// async form, instead of hanging the page.
#[wasm_bindgen_test]
async fn blocking_calls_are_refused_not_hung() {
    let gpu = common::gpu().await;
    assert!(matches!(Gpu::new(), Err(Error::Unsupported(_))));
    let e = gpu.quantize(&[1.0f32, 2.0], &[1, 2], QuantScheme::default()).unwrap_err();
    assert!(matches!(&e, Error::Unsupported(m) if m.contains("_async")), "{e}");
    let q = gpu.quantize_async(&[1.0f32, 2.0], &[1, 2], QuantScheme::default()).await.unwrap();
    assert!(matches!(q.to_host(), Err(Error::Unsupported(_))));
    assert!(matches!(gpu.synchronize(), Err(Error::Unsupported(_))));
    // The async form still works after the refusals.
    let cpu = reference::quantize(&[1.0f32, 2.0], &[1, 2], QuantScheme::default()).unwrap();
    common::assert_same_quantized(&q.to_host_async().await.unwrap(), &cpu, "after the refusals");
}
