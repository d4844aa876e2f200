//! The one source of every contract between the host and the WGSL kernels: the
//! parameter structs, the constants both sides size their work by and the dtype codes; the
//! binding slots and tables are in `bindings.rs`.
//!
//! [`prelude`] writes them as WGSL ahead of each family's source, so no shader restates them:
//! a field, constant or binding changed here changes both sides at once.

use std::fmt::Write;

use crate::DType;
use crate::gpu::bindings::{Access, bindings};
use crate::gpu::family::Family;

/// Activation rows one GEMV pass serves (reading the weights once for all of them).
pub(crate) const GEMV_MAX_ROWS: usize = 8;
/// Threads of a simple-GEMV workgroup.
pub(crate) const GEMV_WG: usize = 64;
/// Weight rows each simple-GEMV workgroup owns.
pub(crate) const GEMV_ROWS: usize = 2;
/// Threads of a fast-GEMV workgroup.
pub(crate) const FAST_WG: usize = 256;
/// Lanes of one fast-GEMV lane group; subgroup reductions are used only where every subgroup
/// size the device may pick divides it.
pub(crate) const FAST_LANES: usize = 32;
/// Lane groups per fast-GEMV workgroup.
pub(crate) const FAST_GROUPS: usize = FAST_WG / FAST_LANES;
/// Most weight rows one fast-GEMV lane group owns (`RPT` is 1, 2 or 4).
pub(crate) const MAX_RPT: usize = 4;
/// Weight rows each invocation of the row-per-thread GEMV (`gemv_rows.wgsl`) owns.
pub(crate) const THREAD_ROWS: usize = 4;
// The row-per-invocation GEMVs keep one vec4 lane per weight row (gemv_rows16_main, linear_a8.wgsl).
const _: () = assert!(THREAD_ROWS == 4, "the row GEMVs hold their rows' sums in vec4s");
/// Threads of a workgroup of the wide row GEMVs (`gemv_rows16_wide_main`,
/// `a8_rows16_wide_main`), kept small so that
/// layers of a few hundred output rows still give every core of a CPU adapter a workgroup.
pub(crate) const WIDE_WG: usize = 16;
/// Weight rows each invocation of the wide row GEMVs owns.
pub(crate) const WIDE_ROWS: usize = 16;
// The wide row GEMVs (gemv_rows16_wide_main, a8_rows16_wide_main) name one accumulator per
// activation row of a pass, each holding sixteen weight rows' sums in four vec4s.
const _: () = assert!(GEMV_MAX_ROWS == 8 && WIDE_ROWS == 16, "the wide row GEMVs' accumulators");
/// Output tile of the GEMM: `GEMM_TILE` activation rows by `GEMM_TILE` weight rows.
pub(crate) const GEMM_TILE: usize = 64;
/// Depth of one GEMM k step (`linear_a8.wgsl` writes out its `GEMM_TK / 4` = 4 words).
pub(crate) const GEMM_TK: usize = 16;
/// Threads of every 256-thread workgroup (GEMM, quantize, dequantize, activation quantize).
pub(crate) const WG: usize = 256;
/// Int8 activations' `act` buffer (act_quant.wgsl writes it, linear_a8.wgsl reads it), in `u32`
/// words: the outlier count at `META_COUNT`, the outlier columns ascending from `META_LIST`, then
/// one outlier flag per column (`META_LIST + k + c`), then one scale per row as f32 bits
/// (`META_LIST + 2k + row`); see [`meta_words`].
pub(crate) const META_COUNT: usize = 0;
/// First outlier column in the `act` buffer.
pub(crate) const META_LIST: usize = 1;

/// Words of the `act` buffer for `m` rows of `k` columns.
pub(crate) fn meta_words(m: usize, k: usize) -> usize {
    META_LIST + 2 * k + m
}

/// Word of row `row`'s scale in the `act` buffer of `k` columns.
pub(crate) fn meta_scale_at(k: usize, row: usize) -> usize {
    META_LIST + 2 * k + row
}

/// Declares a parameter block of `u32` fields and its WGSL twin (`Self::WGSL`), so the two cannot
/// drift apart. Uniform blocks must be a multiple of 16 bytes: checked at compile time for all.
macro_rules! shader_params {
    ($(#[doc = $doc:literal])* $name:ident { $($(#[doc = $fdoc:literal])* $field:ident),* $(,)? }) => {
        $(#[doc = $doc])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
        pub(crate) struct $name {
            $($(#[doc = $fdoc])* pub(crate) $field: u32,)*
        }

        impl $name {
            /// The WGSL declaration of the same struct, named `Params` in its family's module.
            pub(crate) const WGSL: &'static str =
                concat!("struct Params {\n", $("    ", stringify!($field), ": u32,\n",)* "}\n");
        }

        const _: () = assert!(std::mem::size_of::<$name>() % 16 == 0, "uniform blocks are 16-byte multiples");
    };
}

shader_params! {
    /// Parameters of one dispatch of the fused linear (gemv.wgsl, gemm.wgsl):
    /// `y[m, n] = Σ_segments s * (Σ_k x[m,k] q[n,k] − z Σ_k x[m,k]) + bias[n]`.
    LinearParams {
        /// Activation rows in this pass.
        m,
        /// out_features (the row stride of y).
        n,
        /// in_features.
        k,
        /// Packed weight row stride in words.
        words_per_row,
        /// First weight row of this row block.
        row0,
        /// Weight rows in this row block.
        rows,
        /// ParamLayout: the scale of element e is `(e / inner) % channels`.
        inner,
        /// ParamLayout channels.
        channels,
        /// gemv: elements of k per thread task.
        chunk,
        /// 1 when a bias is bound.
        has_bias,
        /// 0x80808080 when weight bytes are stored offset-binary (q + 128, compressed-tensors).
        xor_mask,
        /// First activation row of this pass (GEMV passes of GEMV_MAX_ROWS rows).
        m0,
    }
}

shader_params! {
    /// Parameters of one row block of the quantize passes (quantize.wgsl).
    QuantizeParams {
        /// ParamLayout channels.
        channels,
        /// ParamLayout inner.
        inner,
        /// Elements sharing one scale.
        elems_per_param,
        /// Scales in all.
        num_params,
        /// Last-axis length.
        cols,
        /// Packed output row stride in words.
        words_per_row,
        /// First row of this block.
        row0,
        /// Rows in this block.
        rows,
        /// First flat element held by `input`.
        elem0,
        /// Elements held by `input`.
        elems,
        /// Elements per stats thread.
        run,
        /// Stats threads per parameter.
        runs_per_param,
        /// 1 for asymmetric schemes.
        asym,
        /// Padding to 16 bytes.
        _pad0,
        /// Padding.
        _pad1,
        /// Padding.
        _pad2,
    }
}

shader_params! {
    /// Parameters of one row block of dequantize.wgsl.
    DequantizeParams {
        /// ParamLayout channels.
        channels,
        /// ParamLayout inner.
        inner,
        /// Last-axis length.
        cols,
        /// Packed row stride in words.
        words_per_row,
        /// First row of this block.
        row0,
        /// Rows in this block.
        rows,
        /// 0x80808080 when bytes are stored offset-binary (q + 128).
        xor_mask,
        /// Padding to 16 bytes.
        _pad0,
    }
}

shader_params! {
    /// Parameters of the activation quantizer (act_quant.wgsl): outlier columns, then per-row
    /// int8 values and scales.
    ActQuantParams {
        /// Activation rows.
        m,
        /// Columns (in_features).
        k,
        /// Packed int8 row stride in words.
        words_per_row,
        /// The LLM.int8() outlier threshold as f32 bits (compared on the bits, see act_quant.wgsl).
        threshold,
        /// 1 for LLM.int8(), 0 for plain W8A8 (no outlier columns).
        has_threshold,
        /// Padding to 16 bytes.
        _pad0,
        /// Padding.
        _pad1,
        /// Padding.
        _pad2,
    }
}

/// The constants `family`'s WGSL sizes its work by, with their host values.
fn constants(family: Family) -> Vec<(&'static str, usize)> {
    let mut c = vec![
        ("DT_F32", DType::F32.shader_code() as usize),
        ("DT_F16", DType::F16.shader_code() as usize),
        ("DT_BF16", DType::BF16.shader_code() as usize),
        ("WG", WG),
    ];
    match family {
        Family::Gemv { .. } => c.extend([
            ("GEMV_WG", GEMV_WG),
            ("ROWS", GEMV_ROWS),
            ("MAX_M", GEMV_MAX_ROWS),
            ("FAST_WG", FAST_WG),
            ("TPR", FAST_LANES),
            ("MAX_RPT", MAX_RPT),
        ]),
        Family::Gemm => c.extend([("TM", GEMM_TILE), ("TN", GEMM_TILE), ("TK", GEMM_TK)]),
        Family::GemvRows => c.extend([
            ("GEMV_WG", GEMV_WG),
            ("MAX_M", GEMV_MAX_ROWS),
            ("THREAD_ROWS", THREAD_ROWS),
            ("WIDE_WG", WIDE_WG),
            ("WIDE_ROWS", WIDE_ROWS),
        ]),
        Family::ActQuant => c.extend([("META_COUNT", META_COUNT), ("META_LIST", META_LIST)]),
        Family::LinearA8 => c.extend([
            ("GEMV_WG", GEMV_WG),
            ("MAX_M", GEMV_MAX_ROWS),
            ("THREAD_ROWS", THREAD_ROWS),
            ("WIDE_WG", WIDE_WG),
            ("WIDE_ROWS", WIDE_ROWS),
            ("TM", GEMM_TILE),
            ("TN", GEMM_TILE),
            ("TK", GEMM_TK),
            ("META_COUNT", META_COUNT),
            ("META_LIST", META_LIST),
        ]),
        _ => {}
    }
    c
}

/// The WGSL the host writes ahead of `family`'s source: constants, the parameter struct and
/// the binding declarations.
pub(crate) fn prelude(family: Family) -> String {
    let mut s = String::from("// Generated by src/gpu/params.rs: constants, parameters and bindings.\n");
    for (name, value) in constants(family) {
        writeln!(s, "const {name}: u32 = {value}u;").expect("writing to a String");
    }
    s.push_str(match family {
        Family::Quantize => QuantizeParams::WGSL,
        #[cfg(test)]
        Family::DivCheck => QuantizeParams::WGSL,
        Family::Dequantize => DequantizeParams::WGSL,
        Family::Gemv { .. } | Family::Gemm | Family::GemvRows | Family::LinearA8 => LinearParams::WGSL,
        Family::ActQuant => ActQuantParams::WGSL,
    });
    for binding in bindings(family) {
        let space = match binding.access {
            Access::Read => "storage, read",
            Access::ReadWrite => "storage, read_write",
        };
        writeln!(s, "@group(0) @binding({}) var<{space}> {}: {};", binding.slot, binding.name, binding.ty)
            .expect("writing to a String");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reflected WGSL struct of each family has the Rust struct's size and field offsets.
    #[test]
    fn reflected_params_match_the_rust_structs() {
        for (family, size) in [
            (Family::Gemm, std::mem::size_of::<LinearParams>()),
            (Family::Gemv { subgroups: false }, std::mem::size_of::<LinearParams>()),
            (Family::Quantize, std::mem::size_of::<QuantizeParams>()),
            (Family::Dequantize, std::mem::size_of::<DequantizeParams>()),
            (Family::ActQuant, std::mem::size_of::<ActQuantParams>()),
            (Family::LinearA8, std::mem::size_of::<LinearParams>()),
        ] {
            let module = naga::front::wgsl::parse_str(&family.source()).expect("parses");
            let p = module.global_variables.iter().find(|(_, g)| g.name.as_deref() == Some("p")).expect("p").1;
            let naga::TypeInner::Struct { members, span } = &module.types[p.ty].inner else { panic!("struct") };
            assert_eq!(*span as usize, size, "{family:?}");
            for (i, m) in members.iter().enumerate() {
                assert_eq!(m.offset as usize, 4 * i, "{family:?} {:?}", m.name);
            }
        }
    }
}
