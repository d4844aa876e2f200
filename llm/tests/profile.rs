//! A token's profile names every dispatch of the step once: 12 per block (7 int8 layers and 5
//! app kernels), the embedding, the first norm and the output projection.

mod common;

use int8_wgpu_llm::{Model, WeightMode};

#[test]
fn a_tokens_profile_covers_every_dispatch_of_the_step() {
    let Some((gpu, gguf, _)) = common::setup() else { return };
    let model = Model::load(&gpu, &gguf, WeightMode::W8A16).unwrap();
    let mut session = model.session(8).unwrap();
    session.prefill(&common::prompt_ids(&gguf)[..4]).unwrap();
    let p = session.profile_step(1).unwrap();
    let count = |name: &str| p.kernels.iter().find(|k| k.kernel == name).map(|k| k.dispatches);
    let blocks = model.config().params.block_count;
    assert_eq!(p.kernels.iter().map(|k| k.dispatches).sum::<usize>(), 12 * blocks + 3);
    assert_eq!(count("embedding"), Some(1));
    assert_eq!(count("rms_norm"), Some(2 * blocks + 1));
    for kernel in ["rope_kv", "attention", "swiglu", "int8 [576, 1536]"] {
        assert_eq!(count(kernel), Some(blocks), "{kernel}");
    }
    // q and o are [576, 576], k and v [192, 576], gate and up [1536, 576].
    for kernel in ["int8 [576, 576]", "int8 [192, 576]", "int8 [1536, 576]"] {
        assert_eq!(count(kernel), Some(2 * blocks), "{kernel}");
    }
    assert_eq!(count("int8 [49152, 576] (output projection)"), Some(1));
    assert!(p.kernels.iter().all(|k| !k.time.is_zero()) && !p.whole.is_zero());
}
