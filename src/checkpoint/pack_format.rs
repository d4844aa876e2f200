//! How a quantized layer's ints are stored: the formats a checkpoint may hold, and the offset
//! binary of packed words. Shared by the encoding (`encode.rs`) and the reading back
//! (`compressed_tensors.rs`), below both.

/// How a quantized layer's weight is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackFormat {
    /// compressed-tensors `pack-quantized`: `weight_packed` I32, bytes `q ^ 0x80`.
    PackQuantized,
    /// compressed-tensors `int-quantized`: `weight` I8 `[out, in]`.
    IntQuantized,
    /// bitsandbytes 8-bit (transformers' `load_in_8bit` checkpoints): `weight` I8 `[out, in]` and
    /// `SCB`, each row's absmax (the scale is `SCB / 127`); read only.
    BitsAndBytes,
}

/// What compressed-tensors stores in place of an int8 `q` in packed words: `q ^ 0x80` = `q + 128`
/// (offset binary).
pub(super) const OFFSET_BINARY: u8 = 0x80;
