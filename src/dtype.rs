//! Floating-point element types for weights and activations.

use std::fmt;

/// The float formats this crate reads and writes.
///
/// On the GPU, 16-bit values are stored two per `u32` (element `2i` in the low half), so every
/// backend can read them without the `SHADER_F16` feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16 (the top 16 bits of an f32).
    BF16,
}

impl DType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// The code the shaders use for this dtype (`DT_F32`, `DT_F16`, `DT_BF16` in `common.wgsl`).
    pub(crate) const fn shader_code(self) -> u32 {
        match self {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::BF16 => 2,
        }
    }

    /// Rounds an f32 to this dtype (round to nearest, ties to even) and back.
    pub fn round(self, x: f32) -> f32 {
        match self {
            DType::F32 => x,
            DType::F16 => half::f16::from_f32(x).to_f32(),
            DType::BF16 => half::bf16::from_f32(x).to_f32(),
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        })
    }
}

/// A host element type that maps to a [`DType`]: `f32`, [`half::f16`] or [`half::bf16`].
pub trait Element: bytemuck::Pod + Copy + Send + Sync + PartialEq + fmt::Debug + 'static {
    /// The matching dtype.
    const DTYPE: DType;
    /// Widens to f32 (exact).
    fn to_f32(self) -> f32;
    /// Narrows from f32 with round to nearest, ties to even.
    fn from_f32(x: f32) -> Self;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(x: f32) -> Self {
        x
    }
}

impl Element for half::f16 {
    const DTYPE: DType = DType::F16;
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
    fn from_f32(x: f32) -> Self {
        half::f16::from_f32(x)
    }
}

impl Element for half::bf16 {
    const DTYPE: DType = DType::BF16;
    fn to_f32(self) -> f32 {
        half::bf16::to_f32(self)
    }
    fn from_f32(x: f32) -> Self {
        half::bf16::from_f32(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CPU paths' 16-bit rounding at exact ties (the GPU's is in `tests/gpu_exact_ties.rs`):
    /// to even, whichever way that is; never away from zero, never towards it.
    #[test]
    fn narrowing_rounds_exact_ties_to_even() {
        let bf = |bits: u32| <half::bf16 as Element>::from_f32(f32::from_bits(bits)).to_bits();
        // 1 + 2^-8: the dropped 16 bits are exactly 0x8000; the even neighbour is below.
        assert_eq!(bf(0x3F80_8000), 0x3F80);
        assert_eq!(bf(0xBF80_8000), 0xBF80);
        assert_eq!(bf(0x4000_8000), 0x4000);
        // 1 + 2^-7 + 2^-8: the even neighbour is above.
        assert_eq!(bf(0x3F81_8000), 0x3F82);
        assert_eq!(bf(0xBF81_8000), 0xBF82);
        // Just off the tie: to nearest.
        assert_eq!((bf(0x3F80_8001), bf(0x3F80_7FFF)), (0x3F81, 0x3F80));

        let h = |bits: u32| <half::f16 as Element>::from_f32(f32::from_bits(bits)).to_bits();
        // 1 + 2^-11: the dropped 13 bits are exactly 0x1000.
        assert_eq!(h(0x3F80_1000), 0x3C00);
        assert_eq!(h(0xBF80_1000), 0xBC00);
        assert_eq!(h(0x3F80_3000), 0x3C02);
        assert_eq!((h(0x3F80_1001), h(0x3F80_0FFF)), (0x3C01, 0x3C00));
        // A tie in the subnormal range: 1.5 · 2^-24 lies between 2^-24 (odd) and 2^-23 (even).
        assert_eq!(h(0x33C0_0000), 0x0002);
        assert_eq!(h(0x3300_0000), 0x0000, "2^-25, half the smallest subnormal, ties to 0");
    }
}
