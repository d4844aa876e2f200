//! The f32 path's logits against an independent implementation: candle-transformers'
//! quantized Llama on the CPU, its weights dequantized to f32 (`CANDLE_DEQUANTIZE_ALL`), on the
//! same token ids.

mod common;

use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use int8_wgpu_llm::{Model, WeightMode};

/// candle's logits of every position, one token at a time over its KV cache (its forward
/// returns the last position's only).
fn candle_logits(path: &std::path::Path, ids: &[u32]) -> Vec<Vec<f32>> {
    // Safety: set before candle reads it, in this test binary's only test.
    unsafe { std::env::set_var("CANDLE_DEQUANTIZE_ALL", "1") };
    let mut file = std::fs::File::open(path).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
    let mut model = ModelWeights::from_gguf(content, &mut file, &Device::Cpu).unwrap();
    ids.iter()
        .enumerate()
        .map(|(pos, &id)| {
            let x = Tensor::new(&[id], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
            model.forward(&x, pos).unwrap().squeeze(0).unwrap().to_vec1::<f32>().unwrap()
        })
        .collect()
}

#[test]
fn f32_logits_match_candle() {
    let Some((gpu, gguf, path)) = common::setup() else { return };
    let ids = common::prompt_ids(&gguf);
    let model = Model::load(&gpu, &gguf, WeightMode::F32).unwrap();
    let ours = model.logits(&ids).unwrap();
    let theirs = candle_logits(&path, &ids);
    let diff = common::max_abs_diff(&ours, &theirs);
    let scale = theirs.iter().flatten().fold(0.0f32, |m, x| m.max(x.abs()));
    let top1 = ours.iter().zip(&theirs).filter(|(a, b)| common::argmax(a) == common::argmax(b)).count();
    // Both sides compute in f32 and differ only in summation order. A reassociated f32 sum of
    // K terms is off by about sqrt(K)·u relative (u = 2^-24, random rounding); the logits sit
    // at the end of a chain of (7 per block x blocks + 1) such reductions, K <= the FFN size,
    // each error carried forward at most at its size: so |dlogit| <= max|logit| · u · sqrt(K)
    // · reductions, 1.5e-2 here. A wrong kernel (RoPE layout, mask, norm) is off by whole units.
    let p = model.config().params;
    let chain = (7 * p.block_count + 1) as f32;
    let bound = scale * f32::EPSILON / 2.0 * (p.feed_forward_length as f32).sqrt() * chain;
    eprintln!(
        "f32 vs candle: {} positions, max |dlogit| {diff:e} (bound {bound:e}, max |logit| {scale}), top-1 {top1}",
        ids.len()
    );
    assert!(diff <= bound, "max |dlogit| {diff} > {bound}");
    assert_eq!(top1, ids.len(), "top-1 disagrees at some position");
}
