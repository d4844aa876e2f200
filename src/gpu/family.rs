//! The WGSL kernel families: one module (one file in `shaders/`) each, the key of everything the
//! host generates or compiles per family (prelude, bindings, pipelines).

/// One WGSL module (one file in `shaders/`, with `common.wgsl` prepended).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Family {
    Quantize,
    Dequantize,
    /// `subgroups`: the variant whose lane reductions use subgroup operations.
    Gemv {
        subgroups: bool,
    },
    /// The row-per-thread GEMVs (`gemv_rows.wgsl`: a word or a 16-byte unit per row per step).
    GemvRows,
    Gemm,
    /// Int8 activations: outlier columns and per-row quantization (`act_quant.wgsl`).
    ActQuant,
    /// Int8 activations times int8 weights (`linear_a8.wgsl`).
    LinearA8,
    /// Test probe of the exact division (`shaders/test/div_check.wgsl`).
    #[cfg(test)]
    DivCheck,
}

impl Family {
    #[cfg(test)]
    pub(crate) const ALL: [Family; 9] = [
        Family::Quantize,
        Family::Dequantize,
        Family::Gemv { subgroups: false },
        Family::Gemv { subgroups: true },
        Family::GemvRows,
        Family::Gemm,
        Family::ActQuant,
        Family::LinearA8,
        Family::DivCheck,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Family::Quantize => "quantize.wgsl",
            Family::Dequantize => "dequantize.wgsl",
            Family::Gemv { subgroups: false } => "gemv.wgsl",
            Family::Gemv { subgroups: true } => "gemv.wgsl (subgroups)",
            Family::GemvRows => "gemv_rows.wgsl",
            Family::Gemm => "gemm.wgsl",
            Family::ActQuant => "act_quant.wgsl",
            Family::LinearA8 => "linear_a8.wgsl",
            #[cfg(test)]
            Family::DivCheck => "test/div_check.wgsl",
        }
    }
}
