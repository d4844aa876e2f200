//! Decoding a tensor's bytes: floats widened to f32, Q4_0 / Q4_1 / Q8_0 dequantized as
//! llama.cpp's reference `dequantize_row_*` does, and Q8_0 kept as int8 without requantizing.

use half::f16;

use super::header::TensorInfo;
use super::types::GgmlType;
use crate::{Error, Granularity, QuantScheme, QuantizedTensor, Result};

/// Elements per block of Q4_0, Q4_1 and Q8_0.
const QK: usize = 32;

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// The tensor's values as f32: F32 as stored, F16 and BF16 widened (exactly), quantized types
/// dequantized with llama.cpp's reference formulas, in f32 with one rounding per operation.
pub(super) fn to_f32(t: &TensorInfo, data: &[u8]) -> Result<Vec<f32>> {
    let blocks = |size: usize| data.chunks_exact(size);
    Ok(match t.ggml_type() {
        GgmlType::F32 => blocks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
        GgmlType::F16 => blocks(2).map(|b| f16_at(b, 0)).collect(),
        GgmlType::BF16 => {
            blocks(2).map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)).collect()
        }
        // dequantize_row_q8_0: y = qs[j] * d.
        GgmlType::Q8_0 => {
            blocks(2 + QK).flat_map(|b| b[2..].iter().map(move |&q| f32::from(q as i8) * f16_at(b, 0))).collect()
        }
        // dequantize_row_q4_0: the low nibbles are elements 0..16, the high ones 16..32; y = (q - 8) * d.
        GgmlType::Q4_0 => {
            let mut out = Vec::with_capacity(t.numel());
            for b in blocks(2 + QK / 2) {
                let (d, qs) = (f16_at(b, 0), &b[2..]);
                out.extend(qs.iter().map(|&q| ((q & 0x0f) as i32 - 8) as f32 * d));
                out.extend(qs.iter().map(|&q| ((q >> 4) as i32 - 8) as f32 * d));
            }
            out
        }
        // dequantize_row_q4_1: y = q * d + m (a product, then a sum: no fused multiply-add).
        GgmlType::Q4_1 => {
            let mut out = Vec::with_capacity(t.numel());
            for b in blocks(4 + QK / 2) {
                let (d, m, qs) = (f16_at(b, 0), f16_at(b, 2), &b[4..]);
                out.extend(qs.iter().map(|&q| f32::from(q & 0x0f) * d + m));
                out.extend(qs.iter().map(|&q| f32::from(q >> 4) * d + m));
            }
            out
        }
        other => return Err(unsupported(t, other, "F32, F16, BF16, Q8_0, Q4_0 or Q4_1")),
    })
}

fn unsupported(t: &TensorInfo, ty: GgmlType, wanted: &str) -> Error {
    Error::Unsupported(format!("GGUF tensor `{}` is {ty}; this library reads {wanted}", t.name()))
}

/// A Q8_0 tensor as this library's symmetric groups of 32 along the input axis, without
/// requantizing: each block's f16 `d` widened to f32 is its scale, its ints are the values.
///
/// Every element dequantizes to the value llama.cpp's `dequantize_row_q8_0` gives (`q · d` in
/// f32). Where the stored block is outside this library's scale contract (positive normal f32),
/// it is written another way that dequantizes to the same values:
/// - `d = ±0`: scale 1, ints 0 (every value is zero; llama.cpp's are ±0 by the sign of `q · d`,
///   ours +0);
/// - `d < 0`: scale `-d`, ints `-q` (the same products, the sign moved; exact), unless an int is
///   −128, whose negation does not fit int8: an [`Error::Unsupported`] naming the block;
/// - a subnormal f16 `d` is a normal f32 and is kept; an infinite or NaN `d` is
///   [`Error::Corrupt`].
pub(super) fn q8_0(t: &TensorInfo, data: &[u8]) -> Result<QuantizedTensor> {
    if t.ggml_type() != GgmlType::Q8_0 {
        return Err(unsupported(t, t.ggml_type(), "Q8_0 as int8 (others as floats)"));
    }
    let n_blocks = data.len() / (2 + QK);
    let mut values = Vec::with_capacity(t.numel());
    let mut scales = Vec::with_capacity(n_blocks);
    for (i, b) in data.chunks_exact(2 + QK).enumerate() {
        let d = f16_at(b, 0);
        let qs = b[2..].iter().map(|&q| q as i8);
        if !d.is_finite() {
            return Err(Error::Corrupt(format!("GGUF tensor `{}`: block {i} has scale d = {d}", t.name())));
        } else if d == 0.0 {
            scales.push(1.0);
            values.extend(std::iter::repeat_n(0i8, QK));
        } else if d < 0.0 {
            if b[2..].iter().any(|&q| q as i8 == i8::MIN) {
                return Err(Error::Unsupported(format!(
                    "GGUF tensor `{}`: block {i} has a negative scale d = {d} and an int -128; this \
                     library's scales are positive, and -(-128) does not fit int8",
                    t.name()
                )));
            }
            scales.push(-d);
            values.extend(qs.map(|q| -q));
        } else {
            scales.push(d);
            values.extend(qs);
        }
    }
    let scheme = QuantScheme::symmetric(Granularity::PerGroup { size: QK });
    QuantizedTensor::new(t.shape(), scheme, values, scales, None)
}
