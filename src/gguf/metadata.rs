//! Typed access to a GGUF file's metadata, and the tokenizer it carries.

use super::Gguf;
use super::value::Value;
use crate::{Error, Result};

impl Gguf {
    /// The value of metadata key `key`, if the file has it.
    pub fn value(&self, key: &str) -> Option<&Value> {
        self.header.keys.get(key).map(|&i| &self.header.metadata[i].1)
    }

    /// Every metadata entry, in file order.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.header.metadata.iter().map(|(k, v)| (k.as_str(), v))
    }

    fn required(&self, key: &str) -> Result<&Value> {
        self.value(key).ok_or_else(|| Error::NotFound(format!("GGUF metadata has no key `{key}`")))
    }

    fn wrong_type(key: &str, v: &Value, expected: &str) -> Error {
        Error::Corrupt(format!("GGUF metadata key `{key}` is {}, expected {expected}", v.brief()))
    }

    /// An integer key (of any integer type) as a `u32`; missing is [`Error::NotFound`],
    /// another type or a value out of range [`Error::Corrupt`].
    pub fn u32(&self, key: &str) -> Result<u32> {
        let v = self.required(key)?;
        v.as_i128().and_then(|i| u32::try_from(i).ok()).ok_or_else(|| Self::wrong_type(key, v, "a u32"))
    }

    /// An integer key (of any integer type) as a `u64`, like [`u32`](Self::u32).
    pub fn u64(&self, key: &str) -> Result<u64> {
        let v = self.required(key)?;
        v.as_i128().and_then(|i| u64::try_from(i).ok()).ok_or_else(|| Self::wrong_type(key, v, "a u64"))
    }

    /// An `f32` key; missing is [`Error::NotFound`], another type [`Error::Corrupt`].
    pub fn f32(&self, key: &str) -> Result<f32> {
        match self.required(key)? {
            Value::F32(x) => Ok(*x),
            v => Err(Self::wrong_type(key, v, "an f32")),
        }
    }

    /// A `bool` key; missing is [`Error::NotFound`], another type [`Error::Corrupt`].
    pub fn bool(&self, key: &str) -> Result<bool> {
        match self.required(key)? {
            Value::Bool(b) => Ok(*b),
            v => Err(Self::wrong_type(key, v, "a bool")),
        }
    }

    /// A string key; missing is [`Error::NotFound`], another type [`Error::Corrupt`].
    pub fn string(&self, key: &str) -> Result<&str> {
        let v = self.required(key)?;
        v.as_str().ok_or_else(|| Self::wrong_type(key, v, "a string"))
    }

    /// An array key's elements; missing is [`Error::NotFound`], another type [`Error::Corrupt`].
    pub fn array(&self, key: &str) -> Result<&[Value]> {
        let v = self.required(key)?;
        v.as_array().ok_or_else(|| Self::wrong_type(key, v, "an array"))
    }

    /// An array of strings (`tokenizer.ggml.tokens`, `tokenizer.ggml.merges`).
    pub fn strings(&self, key: &str) -> Result<Vec<&str>> {
        let a = self.array(key)?;
        a.iter().map(|v| v.as_str().ok_or_else(|| Self::wrong_type(key, v, "an array of strings"))).collect()
    }

    /// An array of integers (of any integer type) as `i64`s (`tokenizer.ggml.token_type`).
    pub fn integers(&self, key: &str) -> Result<Vec<i64>> {
        let a = self.array(key)?;
        a.iter()
            .map(|v| {
                v.as_i128()
                    .and_then(|i| i64::try_from(i).ok())
                    .ok_or_else(|| Self::wrong_type(key, v, "an array of integers"))
            })
            .collect()
    }

    /// A key that may be absent: `None` when it is, else what `get` makes of it.
    fn optional<'a, T>(&'a self, key: &str, get: impl FnOnce(&'a Self, &str) -> Result<T>) -> Result<Option<T>> {
        if self.value(key).is_none() { Ok(None) } else { get(self, key).map(Some) }
    }

    /// The tokenizer the file carries (`tokenizer.ggml.*` and `tokenizer.chat_template`).
    ///
    /// `tokenizer.ggml.model` and `tokenizer.ggml.tokens` are required; special token ids,
    /// where given, must name a token.
    pub fn tokenizer(&self) -> Result<Tokenizer<'_>> {
        let tokens = self.strings("tokenizer.ggml.tokens")?;
        let special = |key: &str| -> Result<Option<u32>> {
            let id = self.optional(key, Self::u32)?;
            match id {
                Some(id) if id as usize >= tokens.len() => Err(Error::Corrupt(format!(
                    "GGUF metadata key `{key}` is token {id}; the vocabulary has {} tokens",
                    tokens.len()
                ))),
                _ => Ok(id),
            }
        };
        Ok(Tokenizer {
            model: self.string("tokenizer.ggml.model")?,
            pre: self.optional("tokenizer.ggml.pre", Self::string)?,
            merges: self.optional("tokenizer.ggml.merges", Self::strings)?.unwrap_or_default(),
            token_types: self.optional("tokenizer.ggml.token_type", Self::integers)?,
            bos: special("tokenizer.ggml.bos_token_id")?,
            eos: special("tokenizer.ggml.eos_token_id")?,
            unknown: special("tokenizer.ggml.unknown_token_id")?,
            padding: special("tokenizer.ggml.padding_token_id")?,
            add_bos: self.optional("tokenizer.ggml.add_bos_token", Self::bool)?,
            chat_template: self.optional("tokenizer.chat_template", Self::string)?,
            tokens,
        })
    }
}

/// A tokenizer as a GGUF file stores it (llama.cpp's `tokenizer.ggml.*` keys), borrowed from
/// the file's metadata.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Tokenizer<'a> {
    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE), `llama` (SentencePiece), ...
    pub model: &'a str,
    /// `tokenizer.ggml.pre`: the pre-tokenizer's name (`smollm`, `llama-bpe`, ...).
    pub pre: Option<&'a str>,
    /// `tokenizer.ggml.tokens`: the vocabulary; a token's id is its index.
    pub tokens: Vec<&'a str>,
    /// `tokenizer.ggml.merges`: BPE merges (`"a b"`), highest priority first; empty if absent.
    pub merges: Vec<&'a str>,
    /// `tokenizer.ggml.token_type`: llama.cpp's token types (1 normal, 3 control, ...).
    pub token_types: Option<Vec<i64>>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unknown: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub padding: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: Option<bool>,
    /// `tokenizer.chat_template`: the Jinja chat template.
    pub chat_template: Option<&'a str>,
}
