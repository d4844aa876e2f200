//! Kernel variants chosen per device by measurement: the tuning table that
//! [`choose`](super::matmul::choose) consults, keyed by the layer's class. [`Gpu::tune`]
//! (`tune_measure.rs`) fills it by timing every candidate variant on the real layer.
//!
//! The heuristic in `matmul.rs` was measured on lavapipe only; on another device the fastest
//! of the fused linear's variants (whole rows per invocation, lane groups of 1, 2 or 4 rows,
//! the generic GEMV, GEMV passes of up to 8 rows or the tiled GEMM) is found by timing them once,
//! as cubecl's autotune does: per shape class, with the result kept in a file
//! ([`Gpu::save_tuning`], [`Gpu::load_tuning`], in `tune_file.rs`). With
//! [`GpuOptions::tune_on_first_use`](crate::GpuOptions::tune_on_first_use), a layer's first
//! plan for a class not yet in the table times it there and then.
//!
//! Precedence: an explicit [`GpuOptions`](crate::GpuOptions) field decides what it names
//! (`gemm_min_rows`: GEMM or passes; `gemv_rows_per_thread` / `gemv_rows_per_group`: the GEMV
//! kernel), a tuned choice decides the rest, and the heuristic decides where no layer of the
//! class was tuned. A layer keeps the plans it already made for a row count: tune or load
//! before a layer's first forward, or call [`QuantizedLinear::tune`](crate::QuantizedLinear::tune),
//! which re-plans the layer it tunes.
//!
//! Layers with int8 activations (W8A8, LLM.int8()) have kernels of their own (`matmul_a8.rs`)
//! and a table family of their own ([`LINEAR_A8_FAMILY`]), tuned the same way
//! ([`TuneCase::int8_activations`](crate::gpu::TuneCase::int8_activations)).

use std::collections::HashMap;
use std::fmt;
use std::sync::RwLock;

use crate::DType;
use crate::gpu::matmul::{GEMV_MAX_ROWS, choice, kernel_of};
use crate::gpu::matmul_a8::{a8_choice, a8_kernel_of};
use crate::gpu::{Gpu, GpuQuantizedTensor};

/// One way to run a weight-only fused linear layer: the candidates [`Gpu::tune`] times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinearVariant {
    /// The tiled GEMM (`gemm.wgsl`), all rows in one pass; a candidate above
    /// [`GEMV_MAX_ROWS`](crate::gpu::GEMV_MAX_ROWS) rows.
    Gemm,
    /// The GEMV with whole weight rows per invocation (`gemv_rows.wgsl`), in passes of up to 8 rows
    /// above 8; needs `in % 4 == 0` and scale groups of a multiple of 4.
    GemvRows,
    /// The same with a 16-byte unit (16 int8) per row per step (`gemv_rows16_main`), in passes
    /// of 8 rows above 8; needs `in % 16 == 0` and scale groups of a multiple of 16.
    GemvRows16,
    /// `GemvRows16` with sixteen weight rows per invocation for passes of 2-8 activation rows
    /// (`gemv_rows16_wide_main`); one activation row runs as `GemvRows16` does. The same needs.
    GemvRows16Wide,
    /// The vectorised GEMV, a group of 32 lanes per `rows_per_group` weight rows (1, 2 or 4), in
    /// passes of up to 8 rows above 8; needs `in % 16 == 0` and scale groups of a multiple of 16.
    GemvLanes {
        /// Weight rows each lane group computes.
        rows_per_group: u8,
    },
    /// The generic GEMV (any shape and scale group), in passes of up to 8 rows above 8.
    GemvGeneric,
    /// Int8 activations (W8A8, LLM.int8()): the integer GEMV a packed word per row per step
    /// (`a8_rows_main`), in passes of up to 8 rows above 8; any `in`.
    Int8Rows,
    /// Int8 activations: the integer GEMV in 16-byte units (`a8_rows16_main`); needs
    /// `in % 16 == 0`.
    Int8Rows16,
    /// Int8 activations: `Int8Rows16` with sixteen weight rows per invocation for passes of 2-8
    /// rows (`a8_rows16_wide_main`); one activation row runs as `Int8Rows16` does.
    Int8Rows16Wide,
    /// Int8 activations: the tiled integer GEMM (`a8_gemm_main`), all rows in one pass; a
    /// candidate above [`GEMV_MAX_ROWS`](crate::gpu::GEMV_MAX_ROWS) rows.
    Int8Gemm,
}

impl LinearVariant {
    /// Every variant, in the order candidates are timed and reported.
    pub(crate) const ALL: [LinearVariant; 8] = [
        LinearVariant::GemvRows,
        LinearVariant::GemvRows16,
        LinearVariant::GemvRows16Wide,
        LinearVariant::GemvLanes { rows_per_group: 1 },
        LinearVariant::GemvLanes { rows_per_group: 2 },
        LinearVariant::GemvLanes { rows_per_group: 4 },
        LinearVariant::GemvGeneric,
        LinearVariant::Gemm,
    ];

    /// Every variant of layers with int8 activations, in the order candidates are timed.
    pub(crate) const INT8: [LinearVariant; 4] =
        [LinearVariant::Int8Rows, LinearVariant::Int8Rows16, LinearVariant::Int8Rows16Wide, LinearVariant::Int8Gemm];

    /// Parses the name [`Display`](fmt::Display) writes (`gemm`, `rows`, `rows16`, `rows16/wide`,
    /// `lanes/1`, `lanes/2`, `lanes/4`, `generic`; for int8 activations `a8/rows`, `a8/rows16`,
    /// `a8/rows16/wide`, `a8/gemm`).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().chain(Self::INT8).find(|v| v.to_string() == name)
    }

    /// Whether the variant runs layers with int8 activations (family [`LINEAR_A8_FAMILY`]).
    pub fn int8_activations(self) -> bool {
        Self::INT8.contains(&self)
    }

    /// Whether the variant runs all activation rows in one tiled pass (a candidate only above
    /// one GEMV pass).
    pub fn is_gemm(self) -> bool {
        matches!(self, LinearVariant::Gemm | LinearVariant::Int8Gemm)
    }
}

impl fmt::Display for LinearVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinearVariant::Gemm => f.write_str("gemm"),
            LinearVariant::GemvRows => f.write_str("rows"),
            LinearVariant::GemvRows16 => f.write_str("rows16"),
            LinearVariant::GemvRows16Wide => f.write_str("rows16/wide"),
            LinearVariant::GemvLanes { rows_per_group } => write!(f, "lanes/{rows_per_group}"),
            LinearVariant::GemvGeneric => f.write_str("generic"),
            LinearVariant::Int8Rows => f.write_str("a8/rows"),
            LinearVariant::Int8Rows16 => f.write_str("a8/rows16"),
            LinearVariant::Int8Rows16Wide => f.write_str("a8/rows16/wide"),
            LinearVariant::Int8Gemm => f.write_str("a8/gemm"),
        }
    }
}

/// Activation rows, in the classes that share a tuned choice.
///
/// The bounds follow the kernels: one row, one GEMV pass (2-8), up to four passes, where the
/// GEMM's 64-row tiles are at most half full (9-32), up to two tiles (33-128), more.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RowClass {
    /// 1 row.
    One,
    /// 2 to 8 rows.
    UpTo8,
    /// 9 to 32 rows.
    UpTo32,
    /// 33 to 128 rows.
    UpTo128,
    /// More than 128 rows.
    Over128,
}

impl RowClass {
    const ALL: [RowClass; 5] = [RowClass::One, RowClass::UpTo8, RowClass::UpTo32, RowClass::UpTo128, RowClass::Over128];

    /// The class of `rows` activation rows.
    pub fn of(rows: usize) -> Self {
        match rows {
            0 | 1 => RowClass::One,
            r if r <= GEMV_MAX_ROWS => RowClass::UpTo8,
            r if r <= 4 * GEMV_MAX_ROWS => RowClass::UpTo32,
            r if r <= 128 => RowClass::UpTo128,
            _ => RowClass::Over128,
        }
    }

    /// The class's name in reports and tuning files: `1`, `2-8`, `9-32`, `33-128`, `>128`.
    pub fn label(self) -> &'static str {
        match self {
            RowClass::One => "1",
            RowClass::UpTo8 => "2-8",
            RowClass::UpTo32 => "9-32",
            RowClass::UpTo128 => "33-128",
            RowClass::Over128 => ">128",
        }
    }

    /// Parses [`RowClass::label`].
    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.label() == label)
    }
}

/// The kernel family of the weight-only fused linear (W8A32, W8A16).
pub const LINEAR_FAMILY: &str = "linear";
/// The kernel family of the linear with int8 activations (W8A8, LLM.int8()).
pub const LINEAR_A8_FAMILY: &str = "linear_a8";

/// What a tuned choice applies to on one device: layers of one class share it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TuneKey {
    /// The kernel family ([`LINEAR_FAMILY`] or [`LINEAR_A8_FAMILY`]).
    pub family: &'static str,
    /// The activation (and output) dtype.
    pub activation: DType,
    /// `in` of the `[out, in]` weight, rounded up to a power of two.
    pub in_class: usize,
    /// `out`, rounded up to a power of two.
    pub out_class: usize,
    /// The activation rows' class.
    pub rows: RowClass,
    /// Scale groups shorter than a row (per-group or per-column schemes), which the kernels
    /// scale per segment.
    pub grouped: bool,
    /// The scheme has zero points (asymmetric), which the kernels subtract.
    pub zero_point: bool,
}

impl TuneKey {
    /// The class of `weight` run on `rows` activation rows of `activation` (weight-only).
    pub fn of(weight: &GpuQuantizedTensor, activation: DType, rows: usize) -> Self {
        Self::in_family(LINEAR_FAMILY, weight, activation, rows)
    }

    /// The class of `weight` run on `rows` activation rows of `activation` quantized to int8.
    pub fn of_int8(weight: &GpuQuantizedTensor, activation: DType, rows: usize) -> Self {
        Self::in_family(LINEAR_A8_FAMILY, weight, activation, rows)
    }

    fn in_family(family: &'static str, weight: &GpuQuantizedTensor, activation: DType, rows: usize) -> Self {
        let (n, k) = (weight.shape()[0], weight.shape()[1]);
        TuneKey {
            family,
            activation,
            in_class: k.next_power_of_two(),
            out_class: n.next_power_of_two(),
            rows: RowClass::of(rows),
            grouped: weight.layout().inner < k,
            zero_point: weight.scheme().has_zero_point(),
        }
    }
}

/// A device's tuned choices (kept in [`Gpu`]).
#[derive(Debug, Default)]
pub(crate) struct TuneTable(RwLock<HashMap<TuneKey, LinearVariant>>);

impl TuneTable {
    pub(crate) fn get(&self, key: &TuneKey) -> Option<LinearVariant> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).get(key).copied()
    }

    /// Records choices, replacing those of the same keys.
    pub(crate) fn extend(&self, entries: impl IntoIterator<Item = (TuneKey, LinearVariant)>) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).extend(entries);
    }

    fn clear(&self) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Every entry, in a stable order (so that saved files compare equal).
    pub(crate) fn entries(&self) -> Vec<(TuneKey, LinearVariant)> {
        let mut v: Vec<_> = self.0.read().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, c)| (*k, *c)).collect();
        v.sort_by_key(|(k, _)| {
            (k.family, k.activation.to_string(), k.in_class, k.out_class, k.rows, k.grouped, k.zero_point)
        });
        v
    }
}

impl Gpu {
    /// The variant a linear layer with `weight` runs on `rows` activation rows of `activation`
    /// now: explicit options, then tuning, then the heuristic.
    pub fn linear_variant(&self, weight: &GpuQuantizedTensor, activation: DType, rows: usize) -> LinearVariant {
        choice(self, weight, rows.max(1), activation)
    }

    /// The tuned choices, in a stable order.
    pub fn tuning(&self) -> Vec<(TuneKey, LinearVariant)> {
        self.tune_table().entries()
    }

    /// Forgets every tuned choice: plans made from now on follow the heuristic.
    pub fn clear_tuning(&self) {
        self.tune_table().clear();
    }

    /// The tuned choice for `m` rows of `w`, if its class was tuned and the variant suits `w`
    /// (a class spans row lengths of which only some suit the vectorised GEMVs).
    pub(crate) fn tuned(&self, w: &GpuQuantizedTensor, m: usize, dtype: DType) -> Option<LinearVariant> {
        let t = self.tune_table().get(&TuneKey::of(w, dtype, m))?;
        kernel_of(self, w, dtype, t).is_some().then_some(t)
    }

    /// [`Gpu::tuned`] for a layer with int8 activations.
    pub(crate) fn tuned_int8(&self, w: &GpuQuantizedTensor, m: usize, dtype: DType) -> Option<LinearVariant> {
        let t = self.tune_table().get(&TuneKey::of_int8(w, dtype, m))?;
        a8_kernel_of(w, t).is_some().then_some(t)
    }

    /// The variant a layer with `weight` and int8 activations (W8A8, LLM.int8()) runs on `rows`
    /// activation rows of `activation` now: explicit options, then tuning, then the heuristic.
    pub fn int8_linear_variant(&self, weight: &GpuQuantizedTensor, activation: DType, rows: usize) -> LinearVariant {
        a8_choice(self, weight, rows.max(1), activation)
    }
}
