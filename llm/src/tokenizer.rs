//! The GGUF's tokenizer: a byte-level BPE (`tokenizer.ggml.model = gpt2`) built with the
//! `tokenizers` crate from the file's vocabulary and merges, matching llama.cpp's tokenization
//! for the pre-tokenizers it knows (`smollm`).

use std::collections::BTreeSet;

use int8_wgpu::gguf::Gguf;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper};

use crate::Result;
use crate::special;
use crate::stream::StreamDecoder;

/// Text to token ids and back, as llama.cpp tokenizes for the same GGUF.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    vocab_size: u32,
    /// Prepended by [`encode`](Self::encode): the BOS token when the GGUF asks for it.
    bos: Option<u32>,
    eos: u32,
    /// Every end-of-generation id, `eos` included.
    end: BTreeSet<u32>,
}

impl Tokenizer {
    /// The tokenizer of a GGUF file (`tokenizer.ggml.*`): model `gpt2` with the `smollm`
    /// pre-tokenizer; any other is refused with an error naming it.
    pub fn from_gguf(gguf: &Gguf) -> Result<Tokenizer> {
        let meta = gguf.tokenizer()?;
        if meta.model != "gpt2" {
            return Err(
                format!("tokenizer model `{}` is not supported (only byte-level BPE, `gpt2`)", meta.model).into()
            );
        }
        let pre = meta.pre.unwrap_or("default");
        if pre != "smollm" {
            return Err(format!("pre-tokenizer `{pre}` is not supported (only `smollm`)").into());
        }
        let vocab_size = u32::try_from(meta.tokens.len()).map_err(|_| "the vocabulary has over 2^32 tokens")?;
        let types = match meta.token_types {
            Some(types) if types.len() != meta.tokens.len() => {
                return Err(format!(
                    "tokenizer.ggml.token_type has {} entries for {} tokens",
                    types.len(),
                    meta.tokens.len()
                )
                .into());
            }
            Some(types) => types,
            None => vec![1; meta.tokens.len()],
        };
        let eos = meta.eos.ok_or("the GGUF names no eos token (tokenizer.ggml.eos_token_id)")?;

        let mut vocab = Vocab::default();
        for (id, &token) in (0..vocab_size).zip(&meta.tokens) {
            if vocab.insert(token.to_string(), id).is_some() {
                return Err(format!("token `{token}` appears twice in the vocabulary").into());
            }
        }
        let merges = meta.merges.iter().map(|m| split_merge(m)).collect::<Result<Vec<_>>>()?;
        if merges.is_empty() {
            return Err("the GGUF has no BPE merges (tokenizer.ggml.merges)".into());
        }
        let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(|e| format!("BPE merges: {e}"))?;

        let mut inner = tokenizers::Tokenizer::new(bpe);
        // llama.cpp's `smollm` pre-tokenizer: every digit alone, then GPT-2's byte-level regex.
        inner.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, false, true).into(),
        ]))));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let added: Vec<AddedToken> = meta
            .tokens
            .iter()
            .zip(&types)
            .filter(|&(&token, &token_type)| special::is_special(token, token_type))
            .map(|(&token, _)| AddedToken::from(token, true))
            .collect();
        inner.add_special_tokens(added)?;

        let end = special::end_ids(gguf, &meta.tokens, eos)?;
        // llama.cpp's default for a `gpt2` model with this pre-tokenizer is no BOS.
        let bos = if meta.add_bos == Some(true) {
            Some(meta.bos.ok_or("the GGUF asks for a BOS token but names none (tokenizer.ggml.bos_token_id)")?)
        } else {
            None
        };
        Ok(Tokenizer { inner, vocab_size, bos, eos, end })
    }

    /// The token ids of `text`; control tokens written in it (`<|im_start|>`) become their ids,
    /// as llama.cpp does when it parses special tokens. BOS comes first when the GGUF asks.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self.inner.encode(text, false)?;
        let mut ids = Vec::with_capacity(encoding.len() + 1);
        ids.extend(self.bos);
        ids.extend_from_slice(encoding.get_ids());
        Ok(ids)
    }

    /// The text of `ids`, control tokens written out; bytes that do not form UTF-8 become
    /// U+FFFD. An id outside the vocabulary is an error.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        for &id in ids {
            self.check(id)?;
        }
        self.inner.decode(ids, false)
    }

    /// A decoder that turns ids into text one id at a time (see [`StreamDecoder`]).
    pub fn stream(&self) -> StreamDecoder<'_> {
        StreamDecoder::new(self)
    }

    /// The end-of-sequence id (`tokenizer.ggml.eos_token_id`).
    pub fn eos(&self) -> u32 {
        self.eos
    }

    /// Whether generation ends at `id`: the set llama.cpp stops at, i.e. eos and the end
    /// tokens it knows by text (`<|im_end|>`, `<|endoftext|>`, and for SmolLM2 also
    /// `<reponame>`, a fill-in-the-middle token).
    pub fn is_end(&self, id: u32) -> bool {
        self.end.contains(&id)
    }

    /// The number of tokens in the vocabulary; ids run from 0 to this, exclusive.
    pub fn vocab_size(&self) -> u32 {
        self.vocab_size
    }

    /// The vocabulary's string for `id` (byte-level characters, or a control token's text).
    pub(crate) fn token(&self, id: u32) -> Result<String> {
        self.check(id)?;
        Ok(self.inner.id_to_token(id).ok_or_else(|| format!("token id {id} has no string"))?)
    }

    fn check(&self, id: u32) -> Result<()> {
        if id < self.vocab_size {
            Ok(())
        } else {
            Err(format!("token id {id} is outside the vocabulary ({} tokens)", self.vocab_size).into())
        }
    }
}

/// A merge `"a b"` as its pair; like llama.cpp, the separator is the first space after the
/// first character.
fn split_merge(merge: &str) -> Result<(String, String)> {
    let first = merge.chars().next().map_or(0, char::len_utf8);
    match merge[first..].find(' ') {
        Some(at) => Ok((merge[..first + at].to_string(), merge[first + at + 1..].to_string())),
        None => Err(format!("BPE merge `{merge}` has no space between its two parts").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::split_merge;

    #[test]
    fn merges_split_at_the_first_space_after_the_first_character() {
        assert_eq!(split_merge("Ġ t").unwrap(), ("Ġ".into(), "t".into()));
        assert_eq!(split_merge("i n").unwrap(), ("i".into(), "n".into()));
        assert_eq!(split_merge("  x").unwrap(), (" ".into(), "x".into()));
        assert!(split_merge("abc").is_err());
        assert!(split_merge("").is_err());
    }
}
