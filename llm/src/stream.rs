//! Streaming decode: byte-level BPE tokens carry bytes, and one character may span several
//! tokens, so text is released only once its UTF-8 is complete.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::Result;
use crate::tokenizer::Tokenizer;

/// Turns token ids into text one id at a time, for printing while generating.
///
/// The concatenation of everything [`push`](Self::push) and [`finish`](Self::finish) return
/// equals [`Tokenizer::decode`] of all the ids pushed.
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    /// Bytes of an incomplete UTF-8 character at the end of the text so far.
    pending: Vec<u8>,
}

impl<'a> StreamDecoder<'a> {
    pub(crate) fn new(tokenizer: &'a Tokenizer) -> Self {
        StreamDecoder { tokenizer, pending: Vec::new() }
    }

    /// Adds `id`; returns the text completed by it, or `None` while a character is still
    /// incomplete. Bytes that can never form UTF-8 come out as U+FFFD, as in `decode`.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        let token = self.tokenizer.token(id)?;
        push_token_bytes(&mut self.pending, &token);
        let mut text = String::new();
        let mut rest = &self.pending[..];
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    text.push_str(valid);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    text.push_str(std::str::from_utf8(valid).expect("valid up to here"));
                    match e.error_len() {
                        Some(bad) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[bad..];
                        }
                        // The end is the start of a character the next token may complete.
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        Ok((!text.is_empty()).then_some(text))
    }

    /// The end of the stream: the bytes of a character left incomplete, as U+FFFD.
    pub fn finish(self) -> Option<String> {
        (!self.pending.is_empty()).then(|| String::from_utf8_lossy(&self.pending).into_owned())
    }
}

/// Appends the bytes of a vocabulary string, as the byte-level decoder reads it: every
/// character through GPT-2's byte table, or the string's own UTF-8 when one is outside it
/// (control tokens such as `<|im_start|>` map to themselves either way).
fn push_token_bytes(out: &mut Vec<u8>, token: &str) {
    let table = char_bytes();
    let start = out.len();
    for c in token.chars() {
        match table.get(&c) {
            Some(&b) => out.push(b),
            None => {
                out.truncate(start);
                out.extend_from_slice(token.as_bytes());
                return;
            }
        }
    }
}

/// GPT-2's byte-to-character table, inverted: printable bytes stand for themselves, the 68
/// others for U+0100 onwards in byte order.
fn char_bytes() -> &'static HashMap<char, u8> {
    static TABLE: OnceLock<HashMap<char, u8>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let mut next = 0x100;
        (0..=255u8)
            .map(|b| {
                if printable(b) {
                    (char::from(b), b)
                } else {
                    next += 1;
                    (char::from_u32(next - 1).expect("below U+0200"), b)
                }
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::{char_bytes, push_token_bytes};

    #[test]
    fn the_byte_table_is_gpt2s() {
        let table = char_bytes();
        assert_eq!(table.len(), 256);
        assert_eq!(table[&'Ġ'], b' ');
        assert_eq!(table[&'Ċ'], b'\n');
        assert_eq!(table[&'ĉ'], b'\t');
        assert_eq!(table[&'Ā'], 0);
        assert_eq!(table[&'a'], b'a');
        assert_eq!(table[&'Ã'], 0xC3);
    }

    #[test]
    fn token_bytes_fall_back_to_utf8() {
        let mut out = vec![1];
        push_token_bytes(&mut out, "ĠhiĊ");
        assert_eq!(out, [1, b' ', b'h', b'i', b'\n']);
        push_token_bytes(&mut out, "日x");
        assert_eq!(out, [1, b' ', b'h', b'i', b'\n', 0xE6, 0x97, 0xA5, b'x']);
    }
}
