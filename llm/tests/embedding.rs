//! The embedding lookup against the GGUF's f32 dequantization, bit for bit, over the whole
//! vocabulary: the int8 modes read SmolLM2's Q8_0 `token_embd` as int8 and scales, the dense f32
//! mode its f32 table (shared with the tied output projection).

mod common;

use int8_wgpu_llm::{Model, WeightMode};

#[test]
fn embedding_rows_equal_the_f32_table() {
    let Some((gpu, gguf, _)) = common::setup() else { return };
    let table = gguf.tensor_f32("token_embd.weight").unwrap();
    for mode in [WeightMode::W8A16, WeightMode::F32] {
        let model = Model::load(&gpu, &gguf, mode).unwrap();
        let (vocab, h) = (model.vocab(), model.config().params.embedding_length);
        assert_eq!(table.len(), vocab * h);
        // Every id, in passes of 4096 tokens (9.4 MB of rows each); the last id twice, ids out
        // of order, so a lookup that ignored the id or misplaced a row would show.
        let mut ids: Vec<u32> = (0..vocab as u32).rev().collect();
        ids.push(vocab as u32 - 1);
        for chunk in ids.chunks(4096) {
            let rows = model.embeddings(chunk).unwrap();
            assert_eq!(rows.len(), chunk.len() * h);
            for (r, &id) in chunk.iter().enumerate() {
                let (got, want) = (&rows[r * h..(r + 1) * h], &table[id as usize * h..(id as usize + 1) * h]);
                if let Some(c) = (0..h).find(|&c| got[c].to_bits() != want[c].to_bits()) {
                    panic!("{mode}: token {id}, column {c}: {} on the GPU, {} in the table", got[c], want[c]);
                }
            }
        }
    }
    // Bad ids are refused, not read out of bounds.
    let model = Model::load(&gpu, &gguf, WeightMode::W8A16).unwrap();
    assert!(model.embeddings(&[model.vocab() as u32]).unwrap_err().to_string().contains("vocabulary"));
    assert!(model.embeddings(&[]).unwrap().is_empty());
}
