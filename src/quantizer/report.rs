//! What a run reports: per layer, the sizes before and after and the errors; totals; what was
//! left in float; warnings. Its `Display` is what `int8-wgpu quantize` prints.

use std::fmt;
use std::path::PathBuf;

use super::Skipped;
use crate::{DType, Method, QuantScheme};

/// The result for one quantized layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerReport {
    /// The layer name `P` (its weight was `P.weight`).
    pub name: String,
    /// `[out, in]`.
    pub shape: [usize; 2],
    /// The float weight's dtype (the scales are stored in it).
    pub dtype: DType,
    /// The scheme.
    pub scheme: QuantScheme,
    /// Bytes of the float weight.
    pub bytes_before: usize,
    /// Bytes of the layer's quantized tensors (packed weight, shape, scales, zero points).
    pub bytes_after: usize,
    /// Mean squared error of the dequantized weight (as stored, scales in the weight's dtype).
    pub mse: f64,
    /// Largest absolute error of the dequantized weight.
    pub max_abs: f64,
    /// `‖y_q − y‖₂ / ‖y‖₂` on random f32 activations in [-1, 1): `y_q` from the quantized
    /// layer ([`reference::linear`](crate::reference::linear)), `y` from the float weight in
    /// f64. `None` when [`Quantizer::eval_rows`](super::Quantizer::eval_rows) is 0.
    pub output_rel_error: Option<f64>,
    /// Largest `|y_q − y|` of the same evaluation.
    pub output_max_abs: Option<f64>,
}

/// What a [`Quantizer`](super::Quantizer) did: per layer, totals, what was left in float,
/// warnings.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantReport {
    /// The input checkpoint.
    pub input: PathBuf,
    /// The output folder.
    pub output: PathBuf,
    /// The method recorded.
    pub method: Method,
    /// The scheme used.
    pub scheme: QuantScheme,
    /// Where quantization ran (the GPU's description, or `CPU reference`).
    pub backend: String,
    /// The quantized layers, in file order.
    pub layers: Vec<LayerReport>,
    /// The `*.weight` tensors left in float.
    pub skipped: Vec<Skipped>,
    /// Warnings (patterns that matched nothing, files not copied).
    pub warnings: Vec<String>,
    /// Other files copied (tokenizer, configs), relative to the input folder.
    pub copied_files: Vec<PathBuf>,
    /// Bytes of all tensors in the input.
    pub total_before: usize,
    /// Bytes of all tensors in the output.
    pub total_after: usize,
}

impl QuantReport {
    /// Bytes of the quantized layers' float weights.
    pub fn linear_before(&self) -> usize {
        self.layers.iter().map(|l| l.bytes_before).sum()
    }

    /// Bytes of the quantized layers' tensors in the output.
    pub fn linear_after(&self) -> usize {
        self.layers.iter().map(|l| l.bytes_after).sum()
    }
}

/// Formats a byte count in decimal units (`kB`, `MB`, `GB`), as the course's footprint does.
pub(crate) fn format_bytes(bytes: usize) -> String {
    let b = bytes as f64;
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} kB", b / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2} MB", b / 1e6),
        _ => format!("{:.2} GB", b / 1e9),
    }
}

/// Describes a scheme briefly: `sym channel`, `asym group 32`, `sym tensor`.
pub(crate) fn describe_scheme(s: QuantScheme) -> String {
    let mode = if s.has_zero_point() { "asym" } else { "sym" };
    match s.granularity {
        crate::Granularity::PerTensor => format!("{mode} tensor"),
        crate::Granularity::PerChannel { axis: 0 } => format!("{mode} channel"),
        crate::Granularity::PerChannel { axis } => format!("{mode} channel(axis {axis})"),
        crate::Granularity::PerGroup { size } => format!("{mode} group {size}"),
    }
}

fn ratio(before: usize, after: usize) -> String {
    if after == 0 { "-".into() } else { size_change(before, after) }
}

/// How `after` bytes compare with `before` (both non-zero): `3.76x smaller`, or `same size`
/// where nothing changed (never "1.00x smaller" for no reduction).
pub(super) fn size_change(before: usize, after: usize) -> String {
    let r = before as f64 / after as f64;
    match before.cmp(&after) {
        std::cmp::Ordering::Equal => "same size".into(),
        // Within rounding of 1.00x: the digits would say "1.00x" for a change.
        _ if format!("{r:.2}") == "1.00" || format!("{:.2}", 1.0 / r) == "1.00" => {
            if before > after {
                "slightly smaller".into()
            } else {
                "slightly larger".into()
            }
        }
        std::cmp::Ordering::Greater => format!("{r:.2}x smaller"),
        std::cmp::Ordering::Less => format!("{:.2}x larger", 1.0 / r),
    }
}

impl fmt::Display for QuantReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.layers.iter().map(|l| l.name.len()).max().unwrap_or(5).max(5);
        writeln!(
            f,
            "{:<w$}  {:>11}  {:>5}  {:>10}  {:>10}  {:>10}  {:>9}  {:>11}",
            "layer", "shape", "dtype", "before", "after", "weight MSE", "max |err|", "out rel err"
        )?;
        for l in &self.layers {
            let rel = l.output_rel_error.map_or("-".into(), |e| format!("{e:.3e}"));
            writeln!(
                f,
                "{:<w$}  {:>11}  {:>5}  {:>10}  {:>10}  {:>10.3e}  {:>9.3e}  {:>11}",
                l.name,
                format!("{}x{}", l.shape[0], l.shape[1]),
                l.dtype.to_string(),
                format_bytes(l.bytes_before),
                format_bytes(l.bytes_after),
                l.mse,
                l.max_abs,
                rel
            )?;
        }
        writeln!(f)?;
        let n = self.layers.len().max(1) as f64;
        let mean_rel: f64 = self.layers.iter().filter_map(|l| l.output_rel_error).sum::<f64>() / n;
        let max_rel = self.layers.iter().filter_map(|l| l.output_rel_error).fold(0.0, f64::max);
        writeln!(
            f,
            "quantized {} linear layer{} ({}, {}, on {})",
            self.layers.len(),
            if self.layers.len() == 1 { "" } else { "s" },
            self.method,
            describe_scheme(self.scheme),
            self.backend
        )?;
        writeln!(
            f,
            "linear weights: {} -> {} ({})",
            format_bytes(self.linear_before()),
            format_bytes(self.linear_after()),
            ratio(self.linear_before(), self.linear_after())
        )?;
        writeln!(
            f,
            "all tensors:    {} -> {} ({})",
            format_bytes(self.total_before),
            format_bytes(self.total_after),
            ratio(self.total_before, self.total_after)
        )?;
        if self.layers.iter().any(|l| l.output_rel_error.is_some()) {
            writeln!(f, "layer output relative error: mean {mean_rel:.3e}, max {max_rel:.3e}")?;
        }
        if !self.skipped.is_empty() {
            writeln!(f, "left in float ({} weight tensors):", self.skipped.len())?;
            // Grouped by reason, in order of first appearance.
            let mut groups: Vec<(&str, Vec<&Skipped>)> = Vec::new();
            for s in &self.skipped {
                match groups.iter_mut().find(|(r, _)| *r == s.reason) {
                    Some((_, v)) => v.push(s),
                    None => groups.push((&s.reason, vec![s])),
                }
            }
            for (reason, v) in groups {
                let show = |s: &Skipped| format!("{} {:?}", s.name, s.shape);
                let list = match v.as_slice() {
                    [a] => show(a),
                    [a, b] => format!("{}, {}", show(a), show(b)),
                    [a, .., z] if v.len() > 4 => format!("{} tensors: {}, ..., {}", v.len(), show(a), show(z)),
                    _ => v.iter().map(|s| show(s)).collect::<Vec<_>>().join(", "),
                };
                writeln!(f, "  {reason}: {list}")?;
            }
        }
        if !self.copied_files.is_empty() {
            let names: Vec<String> = self.copied_files.iter().map(|p| p.display().to_string()).collect();
            writeln!(f, "copied files: {}", names.join(", "))?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        write!(f, "written to {}", self.output.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_formatting() {
        assert_eq!(format_bytes(999), "999 B");
        assert_eq!(format_bytes(1_500), "1.5 kB");
        assert_eq!(format_bytes(90_868_376), "90.87 MB");
    }
}
