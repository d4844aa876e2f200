//! The tuning table that kernel choice consults: per device, a [`LinearKernel`] per layer
//! class ([`TuneClass`]), filled by [`Gpu::tune`](crate::Gpu::tune) (`tune_measure.rs`) or a tuning file
//! (`tune_file.rs`). On a device the heuristic was not measured on, the fastest kernel is found
//! by timing the candidates once per class, as cubecl's autotune does, and kept in a file.

use std::collections::HashMap;
use std::fmt;
use std::sync::RwLock;

use crate::DType;
use crate::gpu::linear::kernel::LinearKernel;
use crate::gpu::params::GEMV_MAX_ROWS;

/// Activation rows, in the classes that share a tuned choice: one row, one GEMV pass (2-8), up
/// to four passes, where the GEMM's 64-row tiles are at most half full (9-32), up to two tiles
/// (33-128), more.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum RowClass {
    One,
    UpTo8,
    UpTo32,
    UpTo128,
    Over128,
}

impl RowClass {
    const ALL: [RowClass; 5] = [RowClass::One, RowClass::UpTo8, RowClass::UpTo32, RowClass::UpTo128, RowClass::Over128];

    /// The class of `rows` activation rows.
    pub(crate) fn of(rows: usize) -> Self {
        match rows {
            0 | 1 => RowClass::One,
            r if r <= GEMV_MAX_ROWS => RowClass::UpTo8,
            r if r <= 4 * GEMV_MAX_ROWS => RowClass::UpTo32,
            r if r <= 128 => RowClass::UpTo128,
            _ => RowClass::Over128,
        }
    }

    /// The class's name in reports and tuning files: `1`, `2-8`, `9-32`, `33-128`, `>128`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            RowClass::One => "1",
            RowClass::UpTo8 => "2-8",
            RowClass::UpTo32 => "9-32",
            RowClass::UpTo128 => "33-128",
            RowClass::Over128 => ">128",
        }
    }

    /// Parses [`RowClass::label`] (tuning JSON).
    pub(crate) fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.label() == label)
    }
}

/// The layers that share a tuned choice on one device: activations (float or int8, and their
/// dtype), `[out, in]` rounded up to powers of two, the activation rows' class, and whether the
/// scheme has scale groups shorter than a row or zero points. [`Display`](fmt::Display) names
/// it as a report does: `linear_a8 bf16 [64, 64] rows 2-8`, then `grouped` and `zero-point`
/// where they hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TuneClass {
    pub(crate) a8: bool,
    pub(crate) activation: DType,
    pub(crate) in_class: usize,
    pub(crate) out_class: usize,
    pub(crate) rows: RowClass,
    pub(crate) grouped: bool,
    pub(crate) zero_point: bool,
}

impl TuneClass {
    /// The kernel family's name in tuning files: `linear` (float activations) or `linear_a8`.
    pub(crate) fn family(&self) -> &'static str {
        if self.a8 { "linear_a8" } else { "linear" }
    }
}

impl fmt::Display for TuneClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} [{}, {}] rows {}",
            self.family(),
            self.activation,
            self.out_class,
            self.in_class,
            self.rows.label()
        )?;
        if self.grouped {
            f.write_str(" grouped")?;
        }
        if self.zero_point {
            f.write_str(" zero-point")?;
        }
        Ok(())
    }
}

/// A device's tuned choices (kept in [`Gpu`](crate::Gpu)).
#[derive(Debug, Default)]
pub(crate) struct TuneTable(RwLock<HashMap<TuneClass, LinearKernel>>);

impl TuneTable {
    pub(crate) fn get(&self, class: &TuneClass) -> Option<LinearKernel> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).get(class).copied()
    }

    /// Records choices, replacing those of the same classes.
    pub(crate) fn extend(&self, entries: impl IntoIterator<Item = (TuneClass, LinearKernel)>) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).extend(entries);
    }

    pub(crate) fn clear(&self) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Every entry, in a stable order (so that saved files compare equal).
    pub(crate) fn entries(&self) -> Vec<(TuneClass, LinearKernel)> {
        let mut v: Vec<_> = self.0.read().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, c)| (*k, *c)).collect();
        v.sort_by_key(|(k, _)| {
            (k.a8, k.activation.to_string(), k.in_class, k.out_class, k.rows, k.grouped, k.zero_point)
        });
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_classes_follow_the_kernels() {
        let classes: Vec<&str> = [1, 2, 8, 9, 32, 33, 128, 129].map(|r| RowClass::of(r).label()).to_vec();
        assert_eq!(classes, ["1", "2-8", "2-8", "9-32", "9-32", "33-128", "33-128", ">128"]);
        for c in RowClass::ALL {
            assert_eq!(RowClass::from_label(c.label()), Some(c));
        }
    }

    #[test]
    fn classes_describe_themselves() {
        let class = |a8, grouped, zero_point| TuneClass {
            a8,
            activation: DType::BF16,
            in_class: 64,
            out_class: 32,
            rows: RowClass::UpTo8,
            grouped,
            zero_point,
        };
        assert_eq!(class(true, false, false).to_string(), "linear_a8 bf16 [32, 64] rows 2-8");
        assert_eq!(class(false, true, true).to_string(), "linear bf16 [32, 64] rows 2-8 grouped zero-point");
    }
}
