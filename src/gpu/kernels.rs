//! The WGSL kernel families: their sources, entry points and bindings.

use wgpu::BufferBindingType as B;

use crate::DType;

const COMMON: &str = include_str!("../../shaders/common.wgsl");
const LINEAR_COMMON: &str = include_str!("../../shaders/linear_common.wgsl");
const QUANTIZE: &str = include_str!("../../shaders/quantize.wgsl");
const DEQUANTIZE: &str = include_str!("../../shaders/dequantize.wgsl");
const GEMV: &str = include_str!("../../shaders/gemv.wgsl");
const GEMM: &str = include_str!("../../shaders/gemm.wgsl");
const ROOFLINE: &str = include_str!("../../shaders/roofline.wgsl");

/// One WGSL module (one file in `shaders/`, with `common.wgsl` prepended).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Family {
    Quantize,
    Dequantize,
    /// `subgroups`: the variant whose lane reductions use subgroup operations.
    Gemv {
        subgroups: bool,
    },
    Gemm,
    Roofline,
}

/// One entry point; dtypes are chosen by override constants at pipeline creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kernel {
    Stats,
    Finalize,
    Quantize,
    Dequantize,
    Gemv,
    GemvFast,
    GemvDense,
    Gemm,
    GemmDense,
    Roofline,
    /// Test probe of the exact division and of quantize_value (`div_check_main`).
    #[cfg(test)]
    DivCheck,
}

/// Pipeline-creation choices of a kernel: override constants and the source variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Variant {
    pub(crate) in_dt: DType,
    pub(crate) out_dt: DType,
    /// gemv: scale segments shorter than a row.
    pub(crate) grouped: bool,
    /// gemv: lane reductions with subgroup operations.
    pub(crate) subgroups: bool,
    /// gemv: the scheme has zero points.
    pub(crate) asym: bool,
    /// fast gemv: weight rows per lane group (1, 2 or 4).
    pub(crate) rpt: u8,
}

impl Variant {
    pub(crate) fn new(in_dt: DType, out_dt: DType) -> Self {
        Self { in_dt, out_dt, grouped: false, subgroups: false, asym: false, rpt: 1 }
    }
}

const RO: B = B::Storage { read_only: true };
const RW: B = B::Storage { read_only: false };

impl Family {
    #[cfg(test)]
    pub(crate) const ALL: [Family; 6] = [
        Family::Quantize,
        Family::Dequantize,
        Family::Gemv { subgroups: false },
        Family::Gemv { subgroups: true },
        Family::Gemm,
        Family::Roofline,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Family::Quantize => "quantize.wgsl",
            Family::Dequantize => "dequantize.wgsl",
            Family::Gemv { subgroups: false } => "gemv.wgsl",
            Family::Gemv { subgroups: true } => "gemv.wgsl (subgroups)",
            Family::Gemm => "gemm.wgsl",
            Family::Roofline => "roofline.wgsl",
        }
    }

    pub(crate) fn source(self) -> String {
        match self {
            Family::Quantize => [COMMON, QUANTIZE].concat(),
            Family::Dequantize => [COMMON, DEQUANTIZE].concat(),
            Family::Gemv { subgroups } => {
                let src = [COMMON, LINEAR_COMMON, GEMV].concat();
                if subgroups { subgroup_variant(&src) } else { src }
            }
            Family::Gemm => [COMMON, LINEAR_COMMON, GEMM].concat(),
            Family::Roofline => [COMMON, ROOFLINE].concat(),
        }
    }

    /// Families whose every index is below a bound the host derives from the bound buffers'
    /// sizes, and whose loops all terminate: they run without wgpu's injected bounds checks
    /// and loop bounding. The roofline reads `data[i]` only for `i < units = size / 16`.
    pub(crate) fn indexing_proven(self) -> bool {
        matches!(self, Family::Roofline)
    }

    /// Binding 0 is the uniform parameter block and binding 1 the output in every family.
    pub(crate) fn bindings(self) -> &'static [(u32, B)] {
        match self {
            Family::Quantize => &[(0, B::Uniform), (1, RW), (2, RO), (3, RW), (4, RW), (5, RW), (6, RW)],
            Family::Dequantize => &[(0, B::Uniform), (1, RW), (2, RO), (3, RO), (4, RO)],
            Family::Gemv { .. } | Family::Gemm => {
                &[(0, B::Uniform), (1, RW), (2, RO), (3, RO), (4, RO), (5, RO), (6, RO)]
            }
            Family::Roofline => &[(0, B::Uniform), (1, RW), (2, RO)],
        }
    }
}

/// The one generator step: a family's subgroup variant enables the lines marked `//+sg` and
/// drops those marked `// -sg` (naga rejects subgroup operations on devices without them, so
/// the variant must be a separate source).
fn subgroup_variant(src: &str) -> String {
    src.lines()
        .filter(|l| !l.trim_end().ends_with("// -sg"))
        .map(|l| l.strip_prefix("//+sg").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Kernel {
    pub(crate) fn family(self, v: Variant) -> Family {
        match self {
            Kernel::Stats | Kernel::Finalize | Kernel::Quantize => Family::Quantize,
            #[cfg(test)]
            Kernel::DivCheck => Family::Quantize,
            Kernel::Dequantize => Family::Dequantize,
            Kernel::Gemv | Kernel::GemvFast | Kernel::GemvDense => Family::Gemv { subgroups: v.subgroups },
            Kernel::Gemm | Kernel::GemmDense => Family::Gemm,
            Kernel::Roofline => Family::Roofline,
        }
    }

    /// Override constants the kernel's module declares, besides IN_DT and OUT_DT.
    pub(crate) fn extra_constants(self, v: Variant) -> Vec<(&'static str, f64)> {
        match self.family(v) {
            Family::Gemv { .. } => vec![
                ("GROUPED", f64::from(u8::from(v.grouped))),
                ("ASYM", f64::from(u8::from(v.asym))),
                ("RPT", f64::from(v.rpt)),
                ("DENSE", f64::from(u8::from(self == Kernel::GemvDense))),
            ],
            Family::Gemm => vec![("DENSE", f64::from(u8::from(self == Kernel::GemmDense)))],
            _ => vec![],
        }
    }

    pub(crate) fn entry(self) -> &'static str {
        match self {
            Kernel::Stats => "stats_main",
            Kernel::Finalize => "finalize_main",
            Kernel::Quantize => "quantize_main",
            Kernel::Dequantize => "dequantize_main",
            Kernel::Gemv => "gemv_main",
            Kernel::GemvFast | Kernel::GemvDense => "gemv_fast_main",
            Kernel::Gemm | Kernel::GemmDense => "gemm_main",
            Kernel::Roofline => "roofline_main",
            #[cfg(test)]
            Kernel::DivCheck => "div_check_main",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every family parses and validates with naga, on any machine (no device needed).
    #[test]
    fn shaders_validate_with_naga() {
        for family in Family::ALL {
            let module = naga::front::wgsl::parse_str(&family.source())
                .unwrap_or_else(|e| panic!("{}: {}", family.name(), e.emit_to_string(&family.source())));
            naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
                .validate(&module)
                .unwrap_or_else(|e| panic!("{}: {e:?}", family.name()));
        }
    }
}
