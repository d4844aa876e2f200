//! [`LinearKernel`]: the one name of "which kernel" a linear layer runs, shared by the kernel
//! table, the choice, the tuning (and its files) and the errors.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// One way to run a fused linear layer: what [`Gpu::linear_kernel`](crate::Gpu::linear_kernel)
/// reports and [`Gpu::tune`](crate::Gpu::tune) times and records.
///
/// Float activations (W8A32, W8A16) run the first six; int8 activations (W8A8, LLM.int8()) the
/// `A8` ones. The GEMVs serve up to 8 activation rows per pass, the GEMMs all rows at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LinearKernel {
    /// The tiled GEMM (`gemm.wgsl`).
    Gemm,
    /// The GEMV with whole weight rows per invocation, a word per step (`gemv_rows_main`);
    /// needs `in % 4 == 0` and scale groups of a multiple of 4.
    GemvRows,
    /// The same in 16-byte units (`gemv_rows16_main`); needs `in % 16 == 0` and scale groups
    /// of a multiple of 16.
    GemvRows16,
    /// `GemvRows16` with sixteen weight rows per invocation for passes of 2-8 activation rows
    /// (`gemv_rows16_wide_main`); one activation row runs as `GemvRows16` does. The same needs.
    GemvRows16Wide,
    /// The vectorised GEMV, a group of 32 lanes per `rows_per_group` weight rows (1, 2 or 4);
    /// needs `in % 16 == 0` and scale groups of a multiple of 16.
    GemvLanes {
        /// Weight rows each lane group computes.
        rows_per_group: u8,
    },
    /// The generic GEMV (any shape and scale group).
    GemvGeneric,
    /// Int8 activations: the integer GEMV, a packed word per row per step (`a8_rows_main`).
    A8Rows,
    /// Int8 activations: the integer GEMV in 16-byte units (`a8_rows16_main`); needs
    /// `in % 16 == 0`.
    A8Rows16,
    /// Int8 activations: `A8Rows16` with sixteen weight rows per invocation for passes of 2-8
    /// rows (`a8_rows16_wide_main`); one activation row runs as `A8Rows16` does.
    A8Rows16Wide,
    /// Int8 activations: the tiled integer GEMM (`a8_gemm_main`).
    A8Gemm,
}

impl LinearKernel {
    /// The kernels of float activations, in the order candidates are timed and reported.
    pub(crate) const FLOAT: [LinearKernel; 8] = [
        LinearKernel::GemvRows,
        LinearKernel::GemvRows16,
        LinearKernel::GemvRows16Wide,
        LinearKernel::GemvLanes { rows_per_group: 1 },
        LinearKernel::GemvLanes { rows_per_group: 2 },
        LinearKernel::GemvLanes { rows_per_group: 4 },
        LinearKernel::GemvGeneric,
        LinearKernel::Gemm,
    ];

    /// The kernels of int8 activations, in the order candidates are timed and reported.
    pub(crate) const A8: [LinearKernel; 4] =
        [LinearKernel::A8Rows, LinearKernel::A8Rows16, LinearKernel::A8Rows16Wide, LinearKernel::A8Gemm];

    /// The kernels that serve layers with (`a8`) or without int8 activations.
    pub(crate) fn candidates(a8: bool) -> &'static [LinearKernel] {
        if a8 { &Self::A8 } else { &Self::FLOAT }
    }

    /// Whether the kernel runs layers with int8 activations (W8A8, LLM.int8()).
    pub fn is_a8(self) -> bool {
        Self::A8.contains(&self)
    }

    /// Whether the kernel runs all activation rows in one tiled pass.
    pub fn is_gemm(self) -> bool {
        matches!(self, LinearKernel::Gemm | LinearKernel::A8Gemm)
    }
}

impl fmt::Display for LinearKernel {
    /// The kernel's name in reports and tuning files: `gemm`, `rows`, `rows16`, `rows16/wide`,
    /// `lanes/1`, `lanes/2`, `lanes/4`, `generic`; `a8/rows`, `a8/rows16`, `a8/rows16/wide`,
    /// `a8/gemm`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinearKernel::Gemm => f.write_str("gemm"),
            LinearKernel::GemvRows => f.write_str("rows"),
            LinearKernel::GemvRows16 => f.write_str("rows16"),
            LinearKernel::GemvRows16Wide => f.write_str("rows16/wide"),
            LinearKernel::GemvLanes { rows_per_group } => write!(f, "lanes/{rows_per_group}"),
            LinearKernel::GemvGeneric => f.write_str("generic"),
            LinearKernel::A8Rows => f.write_str("a8/rows"),
            LinearKernel::A8Rows16 => f.write_str("a8/rows16"),
            LinearKernel::A8Rows16Wide => f.write_str("a8/rows16/wide"),
            LinearKernel::A8Gemm => f.write_str("a8/gemm"),
        }
    }
}

impl FromStr for LinearKernel {
    type Err = Error;

    /// Parses the name [`Display`](fmt::Display) writes; another name is an
    /// [`Error::InvalidOption`].
    fn from_str(name: &str) -> Result<Self, Error> {
        Self::FLOAT
            .into_iter()
            .chain(Self::A8)
            .find(|k| k.to_string() == name)
            .ok_or_else(|| Error::InvalidOption(format!("`{name}` names no linear kernel")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel's name (the tuning files' `variant`) parses back to it; others are refused.
    #[test]
    fn names_parse_back() {
        for k in LinearKernel::FLOAT.into_iter().chain(LinearKernel::A8) {
            assert_eq!(k.to_string().parse::<LinearKernel>().unwrap(), k);
            assert_eq!(k.is_a8(), k.to_string().starts_with("a8/"), "{k}");
        }
        assert!(matches!("lanes/3".parse::<LinearKernel>(), Err(Error::InvalidOption(_))));
        assert_eq!(LinearKernel::candidates(true), LinearKernel::A8);
    }
}
