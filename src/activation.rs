//! int8 activations: how a W8A8 layer quantizes its inputs per row (per token), and which
//! feature columns LLM.int8() keeps in floating point.

use crate::{Error, Result};

/// How a linear layer quantizes its activations before the integer matmul.
///
/// Every activation row (token) gets its own symmetric scale, `absmax / 127` over the row's
/// int8 columns, with the weights' contract: the division correctly rounded, ties to even,
/// subnormals as zero, an all-zero row scale 1. The weights must be symmetric with one scale per
/// output row or per tensor: products are then summed in `i32` and scaled once,
/// `y[m, n] = (s_x[m] · acc[m, n]) · s_w[n] + bias[n]`.
///
/// With an outlier threshold this is LLM.int8() (Dettmers et al., 2022): the feature columns in
/// which any row of the batch has `|x| >= threshold` are left out of the int8 part (their int8
/// values are 0 and they do not count towards the row's absmax) and computed in f32 from the
/// dequantized weight columns, `Σ_outlier x[m, k] · (s_w[n] · q[n, k])` in increasing `k`, added
/// to the integer part before the bias.
///
/// ```
/// use int8_wgpu::ActivationQuant;
/// assert_eq!(ActivationQuant::per_token().outlier_threshold(), None);
/// let a = ActivationQuant::llm_int8(6.0).unwrap();
/// assert_eq!(a.outlier_threshold(), Some(6.0));
/// assert!(ActivationQuant::llm_int8(0.0).is_err());
/// assert!(ActivationQuant::llm_int8(f32::NAN).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActivationQuant {
    threshold: Option<f32>,
}

impl ActivationQuant {
    /// LLM.int8()'s default outlier threshold (bitsandbytes' `llm_int8_threshold`).
    pub const DEFAULT_THRESHOLD: f32 = 6.0;

    /// Plain W8A8: every column in int8, one scale per row.
    pub const fn per_token() -> Self {
        Self { threshold: None }
    }

    /// LLM.int8(): columns with any `|x| >= threshold` in f32, the rest as [`per_token`](Self::per_token).
    ///
    /// The threshold must be a finite positive number: anything else is an
    /// [`Error::InvalidOption`]. A threshold below every activation makes every column an
    /// outlier, which is a valid (float, W8A16-like) result.
    pub fn llm_int8(threshold: f32) -> Result<Self> {
        if !(threshold.is_finite() && threshold > 0.0) {
            return Err(Error::InvalidOption(format!(
                "the LLM.int8() outlier threshold is {threshold}; it must be a finite number above 0 \
                 (bitsandbytes uses {})",
                Self::DEFAULT_THRESHOLD
            )));
        }
        Ok(Self { threshold: Some(threshold) })
    }

    /// The outlier threshold, `None` for plain W8A8.
    pub fn outlier_threshold(&self) -> Option<f32> {
        self.threshold
    }

    /// Whether `|x| >= threshold` makes `x`'s column an outlier (never for plain W8A8).
    #[inline]
    pub fn is_outlier(&self, x: f32) -> bool {
        self.threshold.is_some_and(|t| x.abs() >= t)
    }
}

/// Activations quantized per row: what [`reference::quantize_activations`](crate::reference::quantize_activations)
/// and [`Gpu::quantize_activations`](crate::Gpu::quantize_activations) return, equal on both.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedActivations {
    /// Rows and columns (`in_features`).
    pub shape: [usize; 2],
    /// int8 values, row-major `[rows, cols]`; 0 in outlier columns.
    pub values: Vec<i8>,
    /// One scale per row.
    pub scales: Vec<f32>,
    /// The outlier columns, ascending (empty for plain W8A8).
    pub outlier_columns: Vec<usize>,
}

/// The largest `in_features` whose int8 dot products fit an `i32`: `|q_x| <= 127` and
/// `|q_w| <= 128`, so `|acc| <= 16256 · k`.
pub(crate) const MAX_INT8_DOT_LEN: usize = 1 << 17;
