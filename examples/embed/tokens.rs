//! Tokenization for the model: the checkpoint's Hugging Face `tokenizer.json` (the `tokenizers`
//! crate), and batches of token ids padded to the longest sentence with their attention mask.

use std::path::Path;

use serde_json::Value;

use super::bert::Config;
use super::ops::Result;

/// Token ids of a batch of sentences, padded to the longest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Sentences.
    pub batch: usize,
    /// Tokens per sentence, padding included.
    pub seq: usize,
    /// `[batch, seq]` word-piece ids; padding is 0 (`[PAD]`).
    pub ids: Vec<u32>,
    /// `[batch, seq]` token type ids (0 for single sentences).
    pub types: Vec<u32>,
    /// `[batch, seq]`: 1 for tokens, 0 for padding.
    pub mask: Vec<u32>,
}

impl Batch {
    /// Pads lists of token ids (type 0) to the longest.
    pub fn from_ids(sentences: &[Vec<u32>]) -> Result<Self> {
        let seq = sentences.iter().map(Vec::len).max().unwrap_or(0);
        if seq == 0 {
            return Err("no tokens to embed".into());
        }
        let mut b = Batch { batch: sentences.len(), seq, ids: vec![], types: vec![], mask: vec![] };
        for s in sentences {
            for j in 0..seq {
                b.ids.push(s.get(j).copied().unwrap_or(0));
                b.types.push(0);
                b.mask.push(u32::from(j < s.len()));
            }
        }
        Ok(b)
    }

    /// Tokenizes sentences with `[CLS] … [SEP]`, as the model was trained.
    pub fn tokenize(tokenizer: &tokenizers::Tokenizer, sentences: &[&str]) -> Result<Self> {
        let ids =
            sentences.iter().map(|s| Ok(tokenizer.encode(*s, true)?.get_ids().to_vec())).collect::<Result<Vec<_>>>()?;
        Self::from_ids(&ids)
    }

    /// Checks sizes and values against the model: ids inside the vocabulary, a mask of 0 and 1.
    pub fn check(&self, c: &Config) -> Result<()> {
        let n = self.batch * self.seq;
        if [self.ids.len(), self.types.len(), self.mask.len()] != [n; 3] {
            return Err(format!("a {} x {} batch needs {n} ids, types and mask values", self.batch, self.seq).into());
        }
        if let Some(i) = self.ids.iter().position(|&id| id as usize >= c.vocab) {
            return Err(format!("token id {} at {i} is outside the vocabulary of {}", self.ids[i], c.vocab).into());
        }
        if let Some(i) = self.types.iter().position(|&t| t as usize >= c.type_vocab) {
            return Err(format!("token type {} at {i}; the model has {}", self.types[i], c.type_vocab).into());
        }
        if let Some(i) = self.mask.iter().position(|&v| v > 1) {
            return Err(format!("attention mask value {} at {i} (0 or 1)", self.mask[i]).into());
        }
        Ok(())
    }
}

/// The checkpoint's `tokenizer.json`, truncating at `max_len` tokens (sentence-transformers
/// uses 256 for all-MiniLM-L6-v2, its `max_seq_length`) and without its own padding (a
/// [`Batch`] pads to the longest sentence).
pub fn load_tokenizer(folder: &Path, max_len: usize) -> Result<tokenizers::Tokenizer> {
    let path = folder.join("tokenizer.json");
    let t = tokenizers::Tokenizer::from_file(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    configure(t, max_len)
}

/// [`load_tokenizer`] from the bytes of a `tokenizer.json` (a page fetches it).
pub fn tokenizer_from_bytes(json: &[u8], max_len: usize) -> Result<tokenizers::Tokenizer> {
    let t = tokenizers::Tokenizer::from_bytes(json).map_err(|e| format!("reading tokenizer.json: {e}"))?;
    configure(t, max_len)
}

fn configure(mut t: tokenizers::Tokenizer, max_len: usize) -> Result<tokenizers::Tokenizer> {
    t.with_padding(None);
    let params = tokenizers::TruncationParams { max_length: max_len, ..Default::default() };
    t.with_truncation(Some(params))?;
    Ok(t)
}

/// sentence-transformers' `max_seq_length` from `sentence_bert_config.json`, else 512.
pub fn max_seq_length(folder: &Path) -> usize {
    max_seq_length_in(std::fs::read_to_string(folder.join("sentence_bert_config.json")).ok().as_deref())
}

/// [`max_seq_length`] from the text of a `sentence_bert_config.json`, if any.
pub fn max_seq_length_in(sentence_bert_config: Option<&str>) -> usize {
    sentence_bert_config
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .and_then(|v| v.get("max_seq_length").and_then(Value::as_u64))
        .map_or(512, |n| n as usize)
}
