//! Which tokens are special, as llama.cpp decides from a GGUF (`llama-vocab.cpp`): by their
//! type, by metadata keys, and by well-known texts (`<|im_end|>`, `<reponame>`, ...).

use std::collections::BTreeSet;

use int8_wgpu::gguf::Gguf;

use crate::Result;

/// llama.cpp's token types matched whole in the text before BPE: unknown (2), control (3),
/// user-defined (4).
const SPECIAL_TYPES: [i64; 3] = [2, 3, 4];

/// Texts llama.cpp takes for the end-of-turn token when the file names none.
const EOT: [&str; 8] = [
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<EOT>",
    "_<EOT>",
    "<｜end▁of▁sentence｜>",
];
/// Texts of the end-of-message token.
const EOM: [&str; 1] = ["<|eom_id|>"];
/// Texts of the fill-in-the-middle tokens that end generation: pad, repository, file separator.
const FIM_END: [&str; 10] = [
    "<|fim_pad|>",
    "<fim-pad>",
    "<fim_pad>",
    "<PAD>",
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
    "<|file_sep|>",
];
/// Texts of the other fill-in-the-middle tokens (prefix, suffix, middle).
const FIM_OTHER: [&str; 18] = [
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
];
/// Texts that end generation wherever they are in the vocabulary.
const END: [&str; 8] =
    ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>"];

/// Whether llama.cpp matches `token` (of type `token_type`) whole in text that may contain
/// special tokens: its type says so, or its text is one llama.cpp turns into a control token.
pub(crate) fn is_special(token: &str, token_type: i64) -> bool {
    SPECIAL_TYPES.contains(&token_type)
        || [&EOT[..], &EOM, &FIM_END, &FIM_OTHER, &END].iter().any(|texts| texts.contains(&token))
}

/// The ids at which llama.cpp ends generation: eos, the end texts, and the end-of-turn,
/// end-of-message and fill-in-the-middle pad/repository/separator tokens, each named by its
/// metadata key or else found by text. (Where several tokens carry texts of one kind,
/// llama.cpp keeps whichever its hash map yields first; this keeps them all.)
pub(crate) fn end_ids(gguf: &Gguf, tokens: &[&str], eos: u32) -> Result<BTreeSet<u32>> {
    let by_text = |texts: &[&str]| -> Vec<u32> {
        tokens.iter().enumerate().filter(|(_, t)| texts.contains(t)).map(|(id, _)| id as u32).collect()
    };
    let mut end: BTreeSet<u32> = by_text(&END).into_iter().collect();
    end.insert(eos);
    let kinds: [(&str, &[&str]); 5] = [
        ("eot", &EOT),
        ("eom", &EOM),
        ("fim_pad", &FIM_END[..4]),
        ("fim_rep", &FIM_END[4..9]),
        ("fim_sep", &FIM_END[9..]),
    ];
    for (kind, texts) in kinds {
        let key = format!("tokenizer.ggml.{kind}_token_id");
        if gguf.value(&key).is_some() {
            let id = gguf.u32(&key)?;
            if id as usize >= tokens.len() {
                return Err(format!("{key} is token {id}; the vocabulary has {} tokens", tokens.len()).into());
            }
            end.insert(id);
        } else {
            end.extend(by_text(texts));
        }
    }
    Ok(end)
}
