//! Host-side quantized tensors: int8 values, scales, zero points, and their error metrics.

use crate::scheme::{ParamLayout, check_shape};
use crate::{Element, Error, Mode, QuantScheme, Result};

/// A quantized tensor on the host: one int8 per element (row-major, unpadded), one f32 scale
/// per parameter, and for asymmetric schemes one int8 zero point per parameter.
///
/// Element `e` dequantizes to `scales[p] * (values[e] - zero_points[p])` with
/// `p = layout.param_of(e)`.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedTensor {
    shape: Vec<usize>,
    scheme: QuantScheme,
    layout: ParamLayout,
    values: Vec<i8>,
    scales: Vec<f32>,
    zero_points: Option<Vec<i8>>,
}

/// How far a dequantized tensor is from the original.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantError {
    /// Mean squared error.
    pub mse: f64,
    /// Largest absolute error.
    pub max_abs: f64,
}

impl QuantizedTensor {
    /// Assembles a quantized tensor from its parts, checking that they fit together.
    ///
    /// Use this to adopt int8 weights quantized elsewhere (e.g. a checkpoint, or the course's
    /// `W8A16LinearLayer` buffers `int8_weights` and `scales`). Each scale must be a positive
    /// normal f32 no larger than `f32::MAX / 128` (asymmetric: `f32::MAX / 256`), so that every dequantized
    /// value is finite: zero, negative, subnormal or larger scales are an [`Error::BadScale`],
    /// NaN and infinities an [`Error::NonFinite`].
    pub fn new(
        shape: &[usize],
        scheme: QuantScheme,
        values: Vec<i8>,
        scales: Vec<f32>,
        zero_points: Option<Vec<i8>>,
    ) -> Result<Self> {
        let numel = check_shape(shape, "quantized tensor")?;
        let layout = scheme.layout(shape)?;
        if values.len() != numel {
            return Err(Error::Shape(format!(
                "{} int8 values given for shape {shape:?} ({numel} elements)",
                values.len()
            )));
        }
        check_params(scheme, shape, layout, &scales, zero_points.as_deref())?;
        Ok(Self { shape: shape.to_vec(), scheme, layout, values, scales, zero_points })
    }

    /// The logical shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The scheme it was quantized with.
    pub fn scheme(&self) -> QuantScheme {
        self.scheme
    }

    /// Which elements share each scale.
    pub fn layout(&self) -> ParamLayout {
        self.layout
    }

    /// The int8 values, row-major.
    pub fn values(&self) -> &[i8] {
        &self.values
    }

    /// One scale per parameter.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// One zero point per parameter (asymmetric schemes only).
    pub fn zero_points(&self) -> Option<&[i8]> {
        self.zero_points.as_deref()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.values.len()
    }

    /// The zero point of parameter `p` (0 for symmetric schemes).
    #[inline]
    pub fn zero_point(&self, p: usize) -> i8 {
        self.zero_points.as_ref().map_or(0, |z| z[p])
    }

    /// Dequantizes element `e`: `scale * (q - zp)`, computed in f32.
    #[inline]
    pub fn dequantize_at(&self, e: usize) -> f32 {
        let p = self.layout.param_of(e);
        self.scales[p] * (i32::from(self.values[e]) - i32::from(self.zero_point(p))) as f32
    }

    /// Dequantizes the whole tensor to f32 (the GPU's `dequantize` gives the same bits).
    pub fn dequantize(&self) -> Vec<f32> {
        (0..self.numel()).map(|e| self.dequantize_at(e)).collect()
    }

    /// Mean squared and largest absolute error against the original values.
    pub fn error<T: Element>(&self, original: &[T]) -> Result<QuantError> {
        if original.len() != self.numel() {
            return Err(Error::Shape(format!(
                "original has {} elements, the quantized tensor {}",
                original.len(),
                self.numel()
            )));
        }
        let (mut sum, mut max) = (0f64, 0f64);
        for (e, x) in original.iter().enumerate() {
            let d = (f64::from(x.to_f32()) - f64::from(self.dequantize_at(e))).abs();
            sum += d * d;
            max = max.max(d);
        }
        Ok(QuantError { mse: sum / original.len() as f64, max_abs: max })
    }

    /// Rows and columns of the packed 2-D view: the last axis is a row.
    pub fn rows_cols(&self) -> (usize, usize) {
        let cols = *self.shape.last().expect("shape has at least one dimension");
        (self.numel() / cols, cols)
    }

    /// The values packed four per `u32` as the GPU stores them: byte `j` of word `i` of a row is
    /// element `4i + j`, each row zero-padded to a multiple of four.
    pub fn packed_words(&self) -> Vec<u32> {
        let (rows, cols) = self.rows_cols();
        pack_rows(&self.values, rows, cols)
    }

    /// Bytes this tensor takes as int8 + f32 scales (+ int8 zero points).
    pub fn nbytes(&self) -> usize {
        self.values.len() + 4 * self.scales.len() + self.zero_points.as_ref().map_or(0, Vec::len)
    }
}

/// The largest scale a block of `mode` may have: `f32::MAX / 128` symmetric, `f32::MAX / 256`
/// asymmetric (powers of two, so the bounds are exact).
///
/// A dequantized value is `scale * (q - zp)` with `|q - zp| <= 128` (symmetric, `zp = 0`) or
/// `<= 255` (asymmetric): within these bounds it is always finite. Quantizing a block whose scale
/// would exceed them is an [`Error::RangeOverflow`]; a given scale beyond them (from a checkpoint
/// or [`QuantizedTensor::new`]) is an [`Error::BadScale`].
pub(crate) fn max_scale(mode: Mode) -> f32 {
    match mode {
        Mode::Symmetric => f32::MAX / 128.0,
        Mode::Asymmetric => f32::MAX / 256.0,
    }
}

/// Checks one given scale: positive, normal, at most [`max_scale`] (NaN and infinities are
/// [`Error::NonFinite`]).
pub(crate) fn check_scale(index: usize, value: f32, mode: Mode) -> Result<()> {
    if !value.is_finite() {
        return Err(Error::NonFinite { what: "scales".into(), position: vec![index], index, value });
    }
    let (min, max) = (f32::MIN_POSITIVE, max_scale(mode));
    if !(min..=max).contains(&value) {
        return Err(Error::BadScale { index, value, min, max });
    }
    Ok(())
}

/// Checks that scales (finite) and zero points (only for asymmetric schemes) fit `layout`.
pub(crate) fn check_params(
    scheme: QuantScheme,
    shape: &[usize],
    layout: ParamLayout,
    scales: &[f32],
    zero_points: Option<&[i8]>,
) -> Result<()> {
    if scales.len() != layout.num_params() {
        return Err(Error::Shape(format!(
            "{} scales given; scheme {scheme:?} on shape {shape:?} needs {}",
            scales.len(),
            layout.num_params()
        )));
    }
    for (i, &s) in scales.iter().enumerate() {
        check_scale(i, s, scheme.mode)?;
    }
    match (zero_points, scheme.has_zero_point()) {
        (Some(z), true) if z.len() != layout.num_params() => {
            return Err(Error::Shape(format!("{} zero points given; {} needed", z.len(), layout.num_params())));
        }
        (None, true) => {
            return Err(Error::Scheme("an asymmetric scheme needs zero points".into()));
        }
        (Some(_), false) => {
            return Err(Error::Scheme("a symmetric scheme takes no zero points".into()));
        }
        _ => {}
    }
    Ok(())
}

/// Packs int8 rows `[rows, cols]` four per little-endian `u32`: byte `j` of word `w` of a row is
/// element `4w + j` XOR `xor`, and each row is padded with zero bytes to a multiple of four.
///
/// `xor` is 0 for the two's complement bytes the GPU computes with, and 0x80 for the offset
/// binary (`q + 128`) that compressed-tensors `pack-quantized` stores: the two layouts differ only
/// by that, so one packer serves both.
pub(crate) fn pack_rows_xor(values: &[i8], rows: usize, cols: usize, xor: u8) -> Vec<u32> {
    let wpr = cols.div_ceil(4);
    let mut out = vec![0u32; rows * wpr];
    for r in 0..rows {
        for c in 0..cols {
            out[r * wpr + c / 4] |= u32::from(values[r * cols + c] as u8 ^ xor) << (8 * (c % 4));
        }
    }
    out
}

/// Inverse of [`pack_rows_xor`] with the same `xor`.
pub(crate) fn unpack_rows_xor(words: &[u32], rows: usize, cols: usize, xor: u8) -> Vec<i8> {
    let wpr = cols.div_ceil(4);
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            out.push(((words[r * wpr + c / 4] >> (8 * (c % 4))) as u8 ^ xor) as i8);
        }
    }
    out
}

/// Packs int8 rows as the GPU stores them: [`pack_rows_xor`] with two's complement bytes.
pub(crate) fn pack_rows(values: &[i8], rows: usize, cols: usize) -> Vec<u32> {
    pack_rows_xor(values, rows, cols, 0)
}

/// Inverse of [`pack_rows`].
pub(crate) fn unpack_rows(words: &[u32], rows: usize, cols: usize) -> Vec<i8> {
    unpack_rows_xor(words, rows, cols, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Granularity;

    #[test]
    fn packing_round_trips_and_pads() {
        let v: Vec<i8> = vec![1, -2, 3, -128, 127, 0, -1, 5, 6, 7];
        let w = pack_rows(&v, 2, 5);
        assert_eq!(w.len(), 4);
        assert_eq!(w[0], 0x80_03_FE_01);
        assert_eq!(w[1], 0x7F);
        assert_eq!(unpack_rows(&w, 2, 5), v);
    }

    #[test]
    fn offset_binary_packing_flips_the_sign_bit_and_keeps_zero_padding() {
        let v: Vec<i8> = vec![0, -128, 127, -1, 5, 1, 2, 3, 4, 6];
        let w = pack_rows_xor(&v, 2, 5, 0x80);
        assert_eq!(w.len(), 4);
        assert_eq!(w[0], 0x7F_FF_00_80);
        assert_eq!(w[1], 0x85);
        assert_eq!(unpack_rows_xor(&w, 2, 5, 0x80), v);
    }

    #[test]
    fn new_checks_parts() {
        let s = QuantScheme::symmetric(Granularity::PerChannel { axis: 0 });
        assert!(QuantizedTensor::new(&[2, 2], s, vec![0; 4], vec![1.0; 2], None).is_ok());
        assert!(QuantizedTensor::new(&[2, 2], s, vec![0; 3], vec![1.0; 2], None).is_err());
        assert!(QuantizedTensor::new(&[2, 2], s, vec![0; 4], vec![1.0; 1], None).is_err());
        assert!(QuantizedTensor::new(&[2, 2], s, vec![0; 4], vec![f32::NAN; 2], None).is_err());
        assert!(QuantizedTensor::new(&[2, 2], s, vec![0; 4], vec![1.0; 2], Some(vec![0; 2])).is_err());
        let a = QuantScheme::asymmetric(Granularity::PerTensor);
        assert!(QuantizedTensor::new(&[2, 2], a, vec![0; 4], vec![1.0], None).is_err());
        let q = QuantizedTensor::new(&[2, 2], a, vec![0, 1, 2, 3], vec![0.5], Some(vec![1])).unwrap();
        assert_eq!(q.dequantize(), [-0.5, 0.0, 0.5, 1.0]);
    }
}
