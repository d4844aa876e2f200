//! The WGSL kernel families: their sources (the generated prelude, `common.wgsl`, the family's
//! files), entry points and override constants.

#[cfg(test)]
use std::collections::HashMap;

use crate::DType;
use crate::gpu::family::Family;
use crate::gpu::params;

pub(crate) const COMMON: &str = include_str!("../../shaders/common.wgsl");
const LINEAR_COMMON: &str = include_str!("../../shaders/linear_common.wgsl");
const QUANTIZE: &str = include_str!("../../shaders/quantize.wgsl");
const DEQUANTIZE: &str = include_str!("../../shaders/dequantize.wgsl");
const GEMV: &str = include_str!("../../shaders/gemv.wgsl");
const GEMV_REDUCE_SG: &str = include_str!("../../shaders/gemv_reduce_sg.wgsl");
const GEMV_REDUCE_WG: &str = include_str!("../../shaders/gemv_reduce_wg.wgsl");
const GEMV_ROWS: &str = include_str!("../../shaders/gemv_rows.wgsl");
const GEMV_UNITS: &str = include_str!("../../shaders/gemv_units.wgsl");
const GEMM: &str = include_str!("../../shaders/gemm.wgsl");
const ACT_META: &str = include_str!("../../shaders/act_meta.wgsl");
const ACT_QUANT: &str = include_str!("../../shaders/act_quant.wgsl");
const LINEAR_A8: &str = include_str!("../../shaders/linear_a8.wgsl");
#[cfg(test)]
const DIV_CHECK: &str = include_str!("../../shaders/test/div_check.wgsl");

/// One WGSL entry point (part of the generated contract); dtypes are chosen by override constants
/// at pipeline creation. Which kernel a linear layer runs is a `LinearKernel` (`linear/kernel.rs`),
/// whose table (`linear/table.rs`) names its entry points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kernel {
    Stats,
    Finalize,
    Quantize,
    /// All of quantization in one dispatch, one invocation per scale group (`quantize_runs_main`).
    QuantizeRuns,
    Dequantize,
    Gemv,
    GemvFast,
    GemvDense,
    GemvRows,
    /// The row-per-thread GEMV reading a 16-byte unit per row per step (`gemv_rows16_main`).
    GemvRows16,
    /// `GemvRows16` for one activation row, eight weight rows per invocation.
    GemvRows16One,
    /// `GemvRows16` for passes of several activation rows, sixteen weight rows per invocation.
    GemvRows16Wide,
    Gemm,
    GemmDense,
    /// LLM.int8()'s per-column outlier flags.
    ActFlags,
    /// The ordered list of outlier columns.
    ActList,
    /// Per-row int8 activations and scales.
    ActQuant,
    /// `ActQuant` with one invocation per row (CPU adapters).
    ActQuantRows,
    /// The int8-activation GEMV (several weight rows per invocation).
    A8Rows,
    /// The int8-activation GEMV in 16-byte units (k % 16 == 0).
    A8Rows16,
    /// `A8Rows16` for passes of several activation rows, sixteen weight rows per invocation.
    A8Rows16Wide,
    /// The int8-activation tiled GEMM.
    A8Gemm,
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
    /// int8 activations: products by `dot4I8Packed` rather than from sign-extended bytes.
    pub(crate) packed_dot: bool,
}

impl Variant {
    pub(crate) fn new(in_dt: DType, out_dt: DType) -> Self {
        Self { in_dt, out_dt, grouped: false, subgroups: false, asym: false, rpt: 1, packed_dot: false }
    }
}

impl Family {
    /// The family's WGSL: the host's prelude (constants, parameters, bindings; see
    /// `params::prelude`), `common.wgsl`, then the family's own file(s).
    pub(crate) fn source(self) -> String {
        let prelude = params::prelude(self);
        match self {
            Family::Quantize => [&prelude, COMMON, QUANTIZE].concat(),
            Family::Dequantize => [&prelude, COMMON, DEQUANTIZE].concat(),
            Family::Gemv { subgroups } => {
                // Naga rejects subgroup operations on devices without them, so the subgroup
                // reduction is a separate file rather than a branch.
                let reduce = if subgroups { GEMV_REDUCE_SG } else { GEMV_REDUCE_WG };
                [&prelude, COMMON, LINEAR_COMMON, GEMV_UNITS, GEMV, reduce].concat()
            }
            Family::GemvRows => [&prelude, COMMON, LINEAR_COMMON, GEMV_UNITS, GEMV_ROWS].concat(),
            Family::Gemm => [&prelude, COMMON, LINEAR_COMMON, GEMM].concat(),
            Family::ActQuant => [&prelude, COMMON, ACT_META, ACT_QUANT].concat(),
            Family::LinearA8 => [&prelude, COMMON, LINEAR_COMMON, ACT_META, LINEAR_A8].concat(),
            #[cfg(test)]
            Family::DivCheck => [&prelude, COMMON, DIV_CHECK].concat(),
        }
    }
}

impl Kernel {
    pub(crate) fn family(self, v: Variant) -> Family {
        match self {
            Kernel::Stats | Kernel::Finalize | Kernel::Quantize | Kernel::QuantizeRuns => Family::Quantize,
            #[cfg(test)]
            Kernel::DivCheck => Family::DivCheck,
            Kernel::Dequantize => Family::Dequantize,
            Kernel::Gemv | Kernel::GemvFast | Kernel::GemvDense => Family::Gemv { subgroups: v.subgroups },
            Kernel::GemvRows | Kernel::GemvRows16 | Kernel::GemvRows16One | Kernel::GemvRows16Wide => Family::GemvRows,
            Kernel::Gemm | Kernel::GemmDense => Family::Gemm,
            Kernel::ActFlags | Kernel::ActList | Kernel::ActQuant | Kernel::ActQuantRows => Family::ActQuant,
            Kernel::A8Rows | Kernel::A8Rows16 | Kernel::A8Rows16Wide | Kernel::A8Gemm => Family::LinearA8,
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
            Family::GemvRows => vec![("ASYM", f64::from(u8::from(v.asym)))],
            Family::Gemm => vec![("DENSE", f64::from(u8::from(self == Kernel::GemmDense)))],
            Family::LinearA8 => vec![("PACKED_DOT", f64::from(u8::from(v.packed_dot)))],
            _ => vec![],
        }
    }

    pub(crate) fn entry(self) -> &'static str {
        match self {
            Kernel::Stats => "stats_main",
            Kernel::Finalize => "finalize_main",
            Kernel::Quantize => "quantize_main",
            Kernel::QuantizeRuns => "quantize_runs_main",
            Kernel::Dequantize => "dequantize_main",
            Kernel::Gemv => "gemv_main",
            Kernel::GemvFast | Kernel::GemvDense => "gemv_fast_main",
            Kernel::GemvRows => "gemv_rows_main",
            Kernel::GemvRows16 => "gemv_rows16_main",
            Kernel::GemvRows16One => "gemv_rows16_one_main",
            Kernel::GemvRows16Wide => "gemv_rows16_wide_main",
            Kernel::Gemm | Kernel::GemmDense => "gemm_main",
            Kernel::ActFlags => "act_flags_main",
            Kernel::ActList => "act_list_main",
            Kernel::ActQuant => "act_quant_main",
            Kernel::ActQuantRows => "act_quant_rows_main",
            Kernel::A8Rows => "a8_rows_main",
            Kernel::A8Rows16 => "a8_rows16_main",
            Kernel::A8Rows16Wide => "a8_rows16_wide_main",
            Kernel::A8Gemm => "a8_gemm_main",
            #[cfg(test)]
            Kernel::DivCheck => "div_check_main",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::translate::translate_for_every_backend;

    const DTYPES: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

    /// Every (kernel, variant) the crate can ask `Gpu::pipeline` for (a superset: all flag
    /// combinations of the linear kernels, whatever the device).
    fn every_pipeline() -> Vec<(Kernel, Variant)> {
        let mut v = Vec::new();
        for dt in DTYPES {
            for k in [Kernel::Stats, Kernel::Finalize, Kernel::Quantize, Kernel::QuantizeRuns] {
                v.push((k, Variant::new(dt, DType::F32)));
            }
            v.push((Kernel::Dequantize, Variant::new(DType::F32, dt)));
            for k in [Kernel::Gemv, Kernel::Gemm, Kernel::GemmDense] {
                v.push((k, Variant::new(dt, dt)));
            }
            for asym in [false, true] {
                for k in [Kernel::GemvRows, Kernel::GemvRows16, Kernel::GemvRows16One, Kernel::GemvRows16Wide] {
                    v.push((k, Variant { asym, ..Variant::new(dt, dt) }));
                }
            }
            for k in [Kernel::ActFlags, Kernel::ActList, Kernel::ActQuant, Kernel::ActQuantRows] {
                v.push((k, Variant::new(dt, DType::F32)));
            }
            for packed_dot in [false, true] {
                for k in [Kernel::A8Rows, Kernel::A8Rows16, Kernel::A8Rows16Wide, Kernel::A8Gemm] {
                    v.push((k, Variant { packed_dot, ..Variant::new(dt, dt) }));
                }
            }
            for (grouped, asym, subgroups, rpt) in
                (0..24).map(|i| (i & 1 != 0, i & 2 != 0, i & 4 != 0, [1, 2, 4][i / 8]))
            {
                let var = Variant { grouped, asym, subgroups, rpt, ..Variant::new(dt, dt) };
                v.push((Kernel::GemvFast, var));
                if !grouped && !asym {
                    v.push((Kernel::GemvDense, var));
                }
            }
        }
        v.push((Kernel::DivCheck, Variant::new(DType::F32, DType::F32)));
        v
    }

    /// Every pipeline variant translates to SPIR-V (Vulkan), MSL (Metal), HLSL (DX12) and
    /// GLSL ES 3.1 (GL; subgroup variants excepted, wgpu's GL backend has no subgroups), with
    /// its override constants applied, as wgpu would translate it: a kernel that only one
    /// backend has seen fails here, on any machine.
    #[test]
    fn every_pipeline_translates_for_every_backend() {
        use naga::valid::{Capabilities, ValidationFlags, Validator};
        let mut modules = HashMap::new();
        let mut translated = 0;
        for (kernel, variant) in every_pipeline() {
            let family = kernel.family(variant);
            let (module, info) = modules.entry(family).or_insert_with(|| {
                let module = naga::front::wgsl::parse_str(&family.source())
                    .unwrap_or_else(|e| panic!("{}: {}", family.name(), e.emit_to_string(&family.source())));
                let info = Validator::new(ValidationFlags::all(), Capabilities::all())
                    .validate(&module)
                    .unwrap_or_else(|e| panic!("{}: {e:?}", family.name()));
                (module, info)
            });
            let ctx = format!("{} {variant:?}", kernel.entry());
            let mut constants = naga::back::PipelineConstants::default();
            constants.insert("IN_DT".into(), f64::from(variant.in_dt.shader_code()));
            constants.insert("OUT_DT".into(), f64::from(variant.out_dt.shader_code()));
            for (name, value) in kernel.extra_constants(variant) {
                constants.insert(name.into(), value);
            }
            // As wgpu's Metal backend does: one buffer slot per binding of the layout.
            let bindings: Vec<(u32, bool)> = crate::gpu::bindings::layout_entries(family)
                .iter()
                .map(|e| {
                    let wgpu::BindingType::Buffer { ty, .. } = e.ty else { unreachable!("buffers only") };
                    (e.binding, ty == wgpu::BufferBindingType::Storage { read_only: false })
                })
                .collect();
            // wgpu's GL backend has no subgroups.
            translated += translate_for_every_backend(
                module,
                info,
                kernel.entry(),
                &constants,
                Some(&bindings),
                !variant.subgroups,
                &ctx,
            );
        }
        assert!(translated > 400, "{translated} translations");
    }

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
