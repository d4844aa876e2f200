//! ggml's tensor types: their ids, names and storage sizes (elements per block, bytes per block),
//! as llama.cpp's `ggml_type` and type traits define them.

use std::fmt;

/// A tensor's ggml type (the `type` of a GGUF tensor info), e.g. [`GgmlType::Q8_0`].
///
/// Every type ggml defines has its storage size here, so a file's layout is checked whatever
/// its tensors hold; [`Gguf`](super::Gguf) decodes F32, F16, BF16, Q8_0, Q4_0 and Q4_1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GgmlType(u32);

/// (id, name, elements per block, bytes per block) of every type ggml defines; ids left out
/// (4, 5, 31–33, 36–38) were removed from ggml and are unknown.
const TYPES: &[(u32, &str, u64, u64)] = &[
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 36),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2),
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    (39, "MXFP4", 32, 17),
];

impl GgmlType {
    /// 32-bit floats.
    pub const F32: GgmlType = GgmlType(0);
    /// IEEE half floats.
    pub const F16: GgmlType = GgmlType(1);
    /// Blocks of 32: an f16 scale `d` and 32 4-bit ints `q`; `x = d · (q − 8)`.
    pub const Q4_0: GgmlType = GgmlType(2);
    /// Blocks of 32: f16 `d` and `m`, 32 4-bit ints `q`; `x = d · q + m`.
    pub const Q4_1: GgmlType = GgmlType(3);
    /// Blocks of 32: an f16 scale `d` and 32 int8 `q`; `x = d · q`.
    pub const Q8_0: GgmlType = GgmlType(8);
    /// bfloat16.
    pub const BF16: GgmlType = GgmlType(30);

    /// The type with ggml id `id`, if ggml defines one.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        TYPES.iter().any(|t| t.0 == id).then_some(GgmlType(id))
    }

    fn traits(self) -> (u32, &'static str, u64, u64) {
        *TYPES.iter().find(|t| t.0 == self.0).expect("a GgmlType is always a known id")
    }

    /// ggml's id of the type (the number stored in the file).
    pub fn id(self) -> u32 {
        self.0
    }

    /// ggml's name of the type (`"Q8_0"`).
    pub fn name(self) -> &'static str {
        self.traits().1
    }

    /// Elements per block (1 for the float and integer types).
    pub fn block_size(self) -> u64 {
        self.traits().2
    }

    /// Bytes per block.
    pub fn type_size(self) -> u64 {
        self.traits().3
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
