//! The WGSL kernel families: their sources, entry points and bindings.

use wgpu::BufferBindingType as B;

const COMMON: &str = include_str!("../../shaders/common.wgsl");
const LINEAR_COMMON: &str = include_str!("../../shaders/linear_common.wgsl");
const QUANTIZE: &str = include_str!("../../shaders/quantize.wgsl");
const DEQUANTIZE: &str = include_str!("../../shaders/dequantize.wgsl");
const GEMV: &str = include_str!("../../shaders/gemv.wgsl");
const GEMM: &str = include_str!("../../shaders/gemm.wgsl");

/// One WGSL module (one file in `shaders/`, with `common.wgsl` prepended).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Family {
    Quantize,
    Dequantize,
    Gemv,
    Gemm,
}

/// One entry point; dtypes are chosen by override constants at pipeline creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kernel {
    Stats,
    Finalize,
    Quantize,
    Dequantize,
    Gemv,
    Gemm,
}

const RO: B = B::Storage { read_only: true };
const RW: B = B::Storage { read_only: false };

impl Family {
    #[cfg(test)]
    pub(crate) const ALL: [Family; 4] = [Family::Quantize, Family::Dequantize, Family::Gemv, Family::Gemm];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Family::Quantize => "quantize.wgsl",
            Family::Dequantize => "dequantize.wgsl",
            Family::Gemv => "gemv.wgsl",
            Family::Gemm => "gemm.wgsl",
        }
    }

    pub(crate) fn source(self) -> String {
        match self {
            Family::Quantize => [COMMON, QUANTIZE].concat(),
            Family::Dequantize => [COMMON, DEQUANTIZE].concat(),
            Family::Gemv => [COMMON, LINEAR_COMMON, GEMV].concat(),
            Family::Gemm => [COMMON, LINEAR_COMMON, GEMM].concat(),
        }
    }

    /// Binding 0 is the uniform parameter block and binding 1 the output in every family.
    pub(crate) fn bindings(self) -> &'static [(u32, B)] {
        match self {
            Family::Quantize => &[(0, B::Uniform), (1, RW), (2, RO), (3, RW), (4, RW), (5, RW), (6, RW)],
            Family::Dequantize => &[(0, B::Uniform), (1, RW), (2, RO), (3, RO), (4, RO)],
            Family::Gemv | Family::Gemm => &[(0, B::Uniform), (1, RW), (2, RO), (3, RO), (4, RO), (5, RO), (6, RO)],
        }
    }
}

impl Kernel {
    pub(crate) fn family(self) -> Family {
        match self {
            Kernel::Stats | Kernel::Finalize | Kernel::Quantize => Family::Quantize,
            Kernel::Dequantize => Family::Dequantize,
            Kernel::Gemv => Family::Gemv,
            Kernel::Gemm => Family::Gemm,
        }
    }

    pub(crate) fn entry(self) -> &'static str {
        match self {
            Kernel::Stats => "stats_main",
            Kernel::Finalize => "finalize_main",
            Kernel::Quantize => "quantize_main",
            Kernel::Dequantize => "dequantize_main",
            Kernel::Gemv => "gemv_main",
            Kernel::Gemm => "gemm_main",
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
