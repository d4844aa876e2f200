//! GGUF Q8_0 weights on the GPU as they load, not requantized: the GPU's dequantization equals
//! the host's (llama.cpp's values), and a `QuantizedLinear` built from them matches the f64
//! oracle; on the real SmolLM2 file, its Q8_0 token embedding as the tied output projection.

mod common;
mod gguf_support;

use std::path::PathBuf;

use gguf_support::*;
use half::f16;
use int8_wgpu::gguf::Gguf;
use int8_wgpu::{DType, GpuQuantizedTensor, QuantizedLinear};

/// Rows with an ordinary block, a zero-`d` block, a subnormal f16 `d` and a negative `d`.
fn weight() -> Gguf {
    let ramp: [i8; 32] = std::array::from_fn(|j| (j as i8 - 16) * 8 + 1);
    let blocks = [
        q8_0_block(f16::from_f32(0.0123), &ramp),
        q8_0_block(f16::ZERO, &ramp),
        q8_0_block(f16::from_bits(0x0003), &ramp),
        q8_0_block(f16::from_f32(-0.75), &ramp),
    ];
    Gguf::from_bytes(Writer::new().tensor("w", &[64, 2], Q8_0, blocks.concat()).bytes()).unwrap()
}

#[test]
fn q8_0_weights_run_as_stored() {
    let gpu = gpu_or_skip!();
    let q = weight().tensor_q8_0("w").unwrap();
    let on_gpu = GpuQuantizedTensor::from_host(&gpu, &q).unwrap();
    let deq = on_gpu.dequantize(DType::F32).unwrap().read::<f32>().unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&deq), bits(&q.dequantize()));
    let layer = QuantizedLinear::from_quantized(&gpu, &q, None::<&[f32]>, DType::F32).unwrap();
    let x = common::rand_vec(3 * 64, 7);
    let y = layer.forward_host(&x, &[3, 64]).unwrap();
    common::assert_linear_close(&y, &x, &q, None, "GGUF Q8_0 layer");
}

/// The tied output projection of SmolLM2 (the Q8_0 embedding, 49152 x 576) on one hidden state.
#[test]
fn smollm2_output_projection() {
    let cache = std::env::var_os("INT8_WGPU_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/int8-wgpu"));
    let path = cache.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    if !path.exists() {
        assert!(std::env::var("CI").is_err(), "CI=true and no {}: run scripts/fetch-smollm2.sh", path.display());
        eprintln!("skipped: no {}", path.display());
        return;
    }
    let gpu = gpu_or_skip!();
    let q = Gguf::open(&path).unwrap().tensor_q8_0("token_embd.weight").unwrap();
    let layer = QuantizedLinear::from_quantized(&gpu, &q, None::<&[f32]>, DType::F32).unwrap();
    let x = common::rand_vec(576, 11);
    let y = layer.forward_host(&x, &[1, 576]).unwrap();
    common::assert_linear_close(&y, &x, &q, None, "SmolLM2 output projection");
}
