//! A bounds-checked little-endian reader over a GGUF file's bytes: every read says what it
//! reads, and one past the end is an [`Error::Corrupt`] naming it and the offset.

use crate::{Error, Result};

pub(super) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }

    /// Bytes read so far.
    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left to read.
    pub(super) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// The next `n` bytes.
    pub(super) fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        let left = self.remaining();
        match usize::try_from(n) {
            Ok(n) if n <= left => {
                let out = &self.bytes[self.pos..self.pos + n];
                self.pos += n;
                Ok(out)
            }
            _ => Err(Error::Corrupt(format!(
                "GGUF file truncated: {} at byte {} needs {n} bytes, {left} left",
                what(),
                self.pos
            ))),
        }
    }

    pub(super) fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        let b = self.take(N as u64, what)?;
        Ok(b.try_into().expect("take returns N bytes"))
    }

    pub(super) fn u8(&mut self, what: &dyn Fn() -> String) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(super) fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(super) fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A GGUF string: a u64 length, then that many bytes of UTF-8.
    pub(super) fn string(&mut self, what: &dyn Fn() -> String) -> Result<&'a str> {
        let len = self.u64(&|| format!("the length of {}", what()))?;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes).map_err(|e| Error::Corrupt(format!("GGUF: {} is not UTF-8 ({e})", what())))
    }

    /// A count of items that take at least `min_item` bytes each, for sizing a `Vec`: at most
    /// what the remaining bytes can hold, so no count in a file drives a larger allocation.
    pub(super) fn capacity_for(&self, count: u64, min_item: usize) -> usize {
        usize::try_from(count).map_or(usize::MAX, |c| c).min(self.remaining() / min_item.max(1))
    }
}
