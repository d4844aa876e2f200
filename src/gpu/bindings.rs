//! The globals each kernel family binds: named slots, WGSL names and types, access, and the
//! bind group layout made from them. `params::prelude` declares them in each family's WGSL.

use crate::gpu::family::Family;

/// How a kernel accesses a binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    ReadWrite,
}

/// One global a kernel family binds: slot, WGSL name and type. Two globals may share a slot
/// when they are views of one buffer used by different entry points (gemv's `x` and `x4`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Binding {
    pub(crate) slot: u32,
    pub(crate) name: &'static str,
    pub(crate) ty: &'static str,
    pub(crate) access: Access,
}

/// Binding slots, named; every family binds its parameters at [`slot::PARAMS`] and writes its
/// result through [`slot::OUT`].
pub(crate) mod slot {
    pub(crate) const PARAMS: u32 = 0;
    pub(crate) const OUT: u32 = 1;
    // Fused linear.
    pub(crate) const X: u32 = 2;
    pub(crate) const WEIGHTS: u32 = 3;
    pub(crate) const SCALES: u32 = 4;
    pub(crate) const ZERO_POINTS: u32 = 5;
    pub(crate) const BIAS: u32 = 6;
    // Quantize.
    pub(crate) const Q_INPUT: u32 = 2;
    pub(crate) const Q_STATS: u32 = 3;
    pub(crate) const Q_FLAGS: u32 = 4;
    pub(crate) const Q_SCALES: u32 = 5;
    pub(crate) const Q_ZERO_POINTS: u32 = 6;
    // Dequantize.
    pub(crate) const DQ_WEIGHTS: u32 = 2;
    pub(crate) const DQ_SCALES: u32 = 3;
    pub(crate) const DQ_ZERO_POINTS: u32 = 4;
    // Activation quantize (OUT is the packed int8 activations).
    pub(crate) const AQ_X: u32 = 2;
    pub(crate) const AQ_META: u32 = 3;
    // Int8-activation linear: the fused linear's slots (but zero points) and these two.
    pub(crate) const QX: u32 = 7;
    pub(crate) const META: u32 = 8;
}

const fn b(slot: u32, name: &'static str, ty: &'static str, access: Access) -> Binding {
    Binding { slot, name, ty, access }
}

use Access::{Read as R, ReadWrite as RW};

const OUT: Binding = b(slot::OUT, "out", "array<atomic<u32>>", RW);
// Every family reads its parameters from a storage buffer, not a uniform one: lavapipe
// specialises a shader on its uniform values, which cost ~7 ms per submission of a [1536, 384]
// layer (BENCHMARKS.md). GPUs read either from cache.
const PARAMS: Binding = b(slot::PARAMS, "p", "Params", R);
const LINEAR: [Binding; 7] = [
    PARAMS,
    OUT,
    b(slot::X, "x", "array<u32>", R),
    b(slot::WEIGHTS, "weights", "array<u32>", R),
    b(slot::SCALES, "scales", "array<f32>", R),
    b(slot::ZERO_POINTS, "zps", "array<i32>", R),
    b(slot::BIAS, "bias", "array<u32>", R),
];
const GEMV: [Binding; 9] = [
    LINEAR[0],
    LINEAR[1],
    LINEAR[2],
    LINEAR[3],
    LINEAR[4],
    LINEAR[5],
    LINEAR[6],
    // 16-byte views of the activations and weights, used by gemv_fast_main and gemv_rows16_main.
    b(slot::X, "x4", "array<vec4<u32>>", R),
    b(slot::WEIGHTS, "weights4", "array<vec4<u32>>", R),
];
const QUANTIZE: [Binding; 7] = [
    PARAMS,
    OUT,
    b(slot::Q_INPUT, "input", "array<u32>", R),
    b(slot::Q_STATS, "stats", "array<atomic<u32>>", RW),
    b(slot::Q_FLAGS, "flags", "array<atomic<u32>>", RW),
    b(slot::Q_SCALES, "scales", "array<f32>", RW),
    b(slot::Q_ZERO_POINTS, "zps", "array<i32>", RW),
];
const DEQUANTIZE: [Binding; 5] = [
    PARAMS,
    OUT,
    b(slot::DQ_WEIGHTS, "weights", "array<u32>", R),
    b(slot::DQ_SCALES, "scales", "array<f32>", R),
    b(slot::DQ_ZERO_POINTS, "zps", "array<i32>", R),
];

const ACT_QUANT: [Binding; 4] =
    [PARAMS, OUT, b(slot::AQ_X, "x", "array<u32>", R), b(slot::AQ_META, "act", "array<u32>", RW)];
// Eight storage buffers, WebGPU's default per-stage limit: the zero points (always 0 for the
// symmetric weights int8 activations need) are left out, and the activation scales travel in
// `act` with the outlier list.
const LINEAR_A8: [Binding; 8] = [
    LINEAR[0],
    LINEAR[1],
    LINEAR[2],
    LINEAR[3],
    LINEAR[4],
    LINEAR[6],
    b(slot::QX, "qx", "array<u32>", R),
    b(slot::META, "act", "array<u32>", R),
];

/// The globals `family` binds.
pub(crate) fn bindings(family: Family) -> &'static [Binding] {
    match family {
        Family::Quantize => &QUANTIZE,
        #[cfg(test)]
        Family::DivCheck => &QUANTIZE,
        Family::Dequantize => &DEQUANTIZE,
        Family::Gemv { .. } | Family::GemvRows => &GEMV,
        Family::Gemm => &LINEAR,
        Family::ActQuant => &ACT_QUANT,
        Family::LinearA8 => &LINEAR_A8,
    }
}

/// The bind group layout entries of `family`: one per slot.
pub(crate) fn layout_entries(family: Family) -> Vec<wgpu::BindGroupLayoutEntry> {
    let mut slots: Vec<(u32, Access)> = bindings(family).iter().map(|b| (b.slot, b.access)).collect();
    slots.sort_by_key(|&(s, _)| s);
    slots.dedup_by_key(|&mut (s, _)| s);
    slots
        .into_iter()
        .map(|(binding, access)| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: match access {
                    Access::Read => wgpu::BufferBindingType::Storage { read_only: true },
                    Access::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slots shared by two globals are views of one buffer: same access.
    #[test]
    fn shared_slots_agree_on_access() {
        for family in Family::ALL {
            for a in bindings(family) {
                for b in bindings(family).iter().filter(|b| b.slot == a.slot) {
                    assert_eq!(a.access, b.access, "{family:?} slot {}", a.slot);
                }
            }
        }
    }
}
