//! Quantization schemes: how scales are computed and which elements share one; and the method,
//! which fixes the activation dtype a quantized model runs with.

use std::fmt;
use std::str::FromStr;

use crate::{DType, Error, Result};

/// How a block of values is mapped onto int8.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Absmax: `scale = absmax / 127`, zero point 0.
    Symmetric,
    /// Zero-point: `scale = (max - min) / 255`, `zp = round(-128 - min / scale)` clamped to int8.
    Asymmetric,
}

/// Which elements share one scale (and zero point).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Granularity {
    /// One scale for the whole tensor.
    PerTensor,
    /// One scale per index along `axis`. For a linear weight `[out, in]`, axis 0 is one scale
    /// per output row (the usual choice), axis 1 one per input column.
    PerChannel {
        /// The channel axis.
        axis: usize,
    },
    /// One scale per `size` contiguous elements along the last axis, which `size` must divide.
    PerGroup {
        /// Elements per group.
        size: usize,
    },
}

/// A quantization scheme: mode plus granularity.
///
/// ```
/// use int8_wgpu::{QuantScheme, Mode, Granularity};
/// let s = QuantScheme::asymmetric(Granularity::PerGroup { size: 128 });
/// assert_eq!(s.mode, Mode::Asymmetric);
/// assert_eq!(QuantScheme::default(), QuantScheme::symmetric(Granularity::PerChannel { axis: 0 }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuantScheme {
    /// Symmetric or asymmetric.
    pub mode: Mode,
    /// Which elements share a scale.
    pub granularity: Granularity,
}

impl Default for QuantScheme {
    /// The course's default: symmetric, per output channel.
    fn default() -> Self {
        Self::symmetric(Granularity::PerChannel { axis: 0 })
    }
}

impl QuantScheme {
    /// A symmetric (absmax) scheme.
    pub const fn symmetric(granularity: Granularity) -> Self {
        Self { mode: Mode::Symmetric, granularity }
    }

    /// An asymmetric (zero-point) scheme.
    pub const fn asymmetric(granularity: Granularity) -> Self {
        Self { mode: Mode::Asymmetric, granularity }
    }

    /// Whether weights quantized with this scheme can take int8 activations: symmetric, with one
    /// scale per output row or per tensor, so each output's integer sum is scaled once. The one
    /// place that decides it (layers, the oracle, the quantizer's checks and its report).
    pub(crate) fn takes_a8(&self) -> bool {
        self.mode == Mode::Symmetric
            && matches!(self.granularity, Granularity::PerTensor | Granularity::PerChannel { axis: 0 })
    }

    /// Whether the scheme stores zero points.
    pub const fn has_zero_point(&self) -> bool {
        matches!(self.mode, Mode::Asymmetric)
    }

    /// Checks the scheme against a shape and describes which elements share each scale.
    pub fn layout(&self, shape: &[usize]) -> Result<ParamLayout> {
        let numel = check_shape(shape, "tensor")?;
        let layout = match self.granularity {
            Granularity::PerTensor => ParamLayout { outer: 1, channels: 1, inner: numel },
            Granularity::PerChannel { axis } => {
                if axis >= shape.len() {
                    return Err(Error::Scheme(format!(
                        "per-channel axis {axis} is out of range for a tensor of shape {shape:?}"
                    )));
                }
                ParamLayout {
                    outer: shape[..axis].iter().product(),
                    channels: shape[axis],
                    inner: shape[axis + 1..].iter().product(),
                }
            }
            Granularity::PerGroup { size } => {
                let last = *shape.last().unwrap_or(&1);
                if size == 0 || !last.is_multiple_of(size) {
                    return Err(Error::Scheme(format!(
                        "group size {size} does not divide the last dimension {last} of shape {shape:?}"
                    )));
                }
                ParamLayout { outer: 1, channels: numel / size, inner: size }
            }
        };
        Ok(layout)
    }
}

/// Which elements of a row-major tensor share a scale, as `outer × channels × inner`.
///
/// Every granularity is one case of this: element `e` uses parameter `(e / inner) % channels`,
/// and parameter `p` owns `outer * inner` elements. Per tensor is `1 × 1 × numel`; per channel
/// along axis `a` is `prod(shape[..a]) × shape[a] × prod(shape[a+1..])`; per group of `g` is
/// `1 × numel/g × g`. The GPU kernels use the same three numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParamLayout {
    /// Product of the dimensions before the channel axis.
    pub outer: usize,
    /// Number of scales.
    pub channels: usize,
    /// Run of contiguous elements sharing a scale.
    pub inner: usize,
}

impl ParamLayout {
    /// Number of scales (and zero points).
    pub fn num_params(&self) -> usize {
        self.channels
    }

    /// Elements per scale.
    pub fn elems_per_param(&self) -> usize {
        self.outer * self.inner
    }

    /// The parameter index of flat element `e`.
    #[inline]
    pub fn param_of(&self, e: usize) -> usize {
        (e / self.inner) % self.channels
    }

    /// The flat index of the `k`-th element of parameter `p`.
    #[inline]
    pub fn element(&self, p: usize, k: usize) -> usize {
        let (o, i) = (k / self.inner, k % self.inner);
        (o * self.channels + p) * self.inner + i
    }
}

/// How the quantized model runs: int8 weights with 16-bit or f32 activations, or with
/// activations quantized to int8 at run time (W8A8, LLM.int8()).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Method {
    /// int8 weights, 16-bit activations (the course's default).
    #[default]
    W8A16,
    /// int8 weights, f32 activations.
    W8A32,
    /// int8 weights and int8 activations quantized per token at run time (16-bit in and out).
    W8A8,
    /// LLM.int8(): W8A8 with outlier feature columns in floating point (16-bit in and out).
    LlmInt8,
}

impl Method {
    /// The activation dtype (a layer's float input and output) for weights stored in
    /// `weight_dtype`: f32 for `w8a32`; for the others the weight's dtype when it is 16-bit,
    /// else bf16.
    pub fn activation_dtype(self, weight_dtype: DType) -> DType {
        match (self, weight_dtype) {
            (Method::W8A32, _) => DType::F32,
            (_, DType::F16) => DType::F16,
            (_, _) => DType::BF16,
        }
    }

    /// How the method quantizes activations: `None` for the weight-only methods, per token for
    /// `w8a8`, LLM.int8() at [`ActivationQuant::DEFAULT_THRESHOLD`](crate::ActivationQuant::DEFAULT_THRESHOLD) for `llm-int8`.
    pub fn activation_quant(self) -> Option<crate::ActivationQuant> {
        match self {
            Method::W8A16 | Method::W8A32 => None,
            Method::W8A8 => Some(crate::ActivationQuant::per_token()),
            Method::LlmInt8 => crate::ActivationQuant::llm_int8(crate::ActivationQuant::DEFAULT_THRESHOLD).ok(),
        }
    }

    /// `"w8a16"`, `"w8a32"`, `"w8a8"` or `"llm-int8"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::W8A16 => "w8a16",
            Method::W8A32 => "w8a32",
            Method::W8A8 => "w8a8",
            Method::LlmInt8 => "llm-int8",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "w8a16" => Ok(Method::W8A16),
            "w8a32" => Ok(Method::W8A32),
            "w8a8" => Ok(Method::W8A8),
            "llm-int8" | "llm_int8" | "llmint8" => Ok(Method::LlmInt8),
            _ => Err(Error::Scheme(format!("unknown method `{s}`; use w8a16, w8a32, w8a8 or llm-int8"))),
        }
    }
}

/// Checks that a shape has at least one dimension and no zero-size one; returns its element count.
pub(crate) fn check_shape(shape: &[usize], what: &str) -> Result<usize> {
    if shape.is_empty() {
        return Err(Error::Shape(format!("{what} has no dimensions; use shape [n] for a vector")));
    }
    if shape.contains(&0) {
        return Err(Error::Empty(format!("{what} of shape {shape:?}")));
    }
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| Error::TooLarge {
        what: format!("{what} of shape {shape:?}"),
        size: u64::MAX,
        limit: usize::MAX as u64,
    })
}

/// Converts a flat index into a position in `shape`.
pub(crate) fn unravel(mut index: usize, shape: &[usize]) -> Vec<usize> {
    let mut pos = vec![0; shape.len()];
    for (p, &d) in pos.iter_mut().zip(shape).rev() {
        *p = index % d;
        index /= d;
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_cover_every_element_once() {
        let shape = [3, 4, 6];
        for g in [
            Granularity::PerTensor,
            Granularity::PerChannel { axis: 0 },
            Granularity::PerChannel { axis: 1 },
            Granularity::PerChannel { axis: 2 },
            Granularity::PerGroup { size: 3 },
        ] {
            let l = QuantScheme::symmetric(g).layout(&shape).unwrap();
            let mut seen = [0u8; 72];
            for p in 0..l.num_params() {
                for k in 0..l.elems_per_param() {
                    let e = l.element(p, k);
                    assert_eq!(l.param_of(e), p, "{g:?} p={p} k={k}");
                    seen[e] += 1;
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "{g:?}");
        }
    }

    #[test]
    fn axis0_is_per_row_and_axis1_per_column() {
        let l = QuantScheme::symmetric(Granularity::PerChannel { axis: 0 }).layout(&[2, 3]).unwrap();
        assert_eq!((0..6).map(|e| l.param_of(e)).collect::<Vec<_>>(), [0, 0, 0, 1, 1, 1]);
        let l = QuantScheme::symmetric(Granularity::PerChannel { axis: 1 }).layout(&[2, 3]).unwrap();
        assert_eq!((0..6).map(|e| l.param_of(e)).collect::<Vec<_>>(), [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn method_activation_dtypes() {
        assert_eq!(Method::W8A16.activation_dtype(DType::F32), DType::BF16);
        assert_eq!(Method::W8A16.activation_dtype(DType::F16), DType::F16);
        assert_eq!(Method::W8A16.activation_dtype(DType::BF16), DType::BF16);
        assert_eq!(Method::W8A32.activation_dtype(DType::BF16), DType::F32);
        assert_eq!("W8A32".parse::<Method>().unwrap(), Method::W8A32);
        assert!("w4a16".parse::<Method>().is_err());
        assert_eq!("LLM.int8".replace('.', "-").parse::<Method>().unwrap(), Method::LlmInt8);
        assert_eq!(Method::W8A8.activation_dtype(DType::F32), DType::BF16);
        assert_eq!(Method::LlmInt8.activation_quant().and_then(|a| a.outlier_threshold()), Some(6.0));
        assert_eq!(Method::W8A16.activation_quant(), None);
    }

    #[test]
    fn bad_schemes_are_errors() {
        let g = QuantScheme::symmetric(Granularity::PerGroup { size: 3 });
        assert!(matches!(g.layout(&[2, 4]), Err(Error::Scheme(_))));
        let g = QuantScheme::symmetric(Granularity::PerGroup { size: 0 });
        assert!(matches!(g.layout(&[2, 4]), Err(Error::Scheme(_))));
        let c = QuantScheme::symmetric(Granularity::PerChannel { axis: 2 });
        assert!(matches!(c.layout(&[2, 4]), Err(Error::Scheme(_))));
        assert!(matches!(QuantScheme::default().layout(&[2, 0]), Err(Error::Empty(_))));
        assert!(matches!(QuantScheme::default().layout(&[]), Err(Error::Shape(_))));
        assert_eq!(unravel(5, &[2, 3]), [1, 2]);
    }
}
