//! Encoding a quantized layer into the compressed-tensors tensors that store it
//! (`pack-quantized` or `int-quantized`; the layouts are in the [`checkpoint`](super) module
//! docs): ints as offset binary packed in words, or as plain int8; scales exported in the
//! weight's dtype; zero points packed along dim 0. Reading them back is `compressed_tensors.rs`'s job.

use super::pack_format::OFFSET_BINARY;
use super::{PackFormat, TensorDtype, f32_to_bytes, to_tensor_dtype};
use crate::quantized::pack_rows_xor;
use crate::{DType, Error, Granularity, QuantScheme, QuantizedTensor, Result};

/// The tensor exactly as a checkpoint stores it when its scales are exported in `scale_dtype`:
/// same ints and zero points, each scale rounded to `scale_dtype` (round to nearest even).
///
/// A scale below f16's range (a row of an f16 model whose weights are all below about 4e-6 in
/// magnitude) would round to 0, which no loader can use: it is exported as f16's smallest
/// positive value, 2⁻²⁴, instead. bf16 has f32's range and never underflows.
pub fn exported(q: &QuantizedTensor, scale_dtype: DType) -> Result<QuantizedTensor> {
    let scales = q.scales().iter().map(|&s| export_scale(s, scale_dtype)).collect();
    QuantizedTensor::new(q.shape(), q.scheme(), q.values().to_vec(), scales, q.zero_points().map(<[i8]>::to_vec))
}

/// One scale as [`exported`] stores it in `scale_dtype`.
#[inline]
pub(crate) fn export_scale(s: f32, scale_dtype: DType) -> f32 {
    match (scale_dtype, scale_dtype.round(s)) {
        (DType::F16, 0.0) => half::f16::from_bits(1).to_f32(),
        (_, r) => r,
    }
}

/// One tensor of a stored quantized layer: the suffix after the layer name, dtype, shape.
pub(crate) type LayerTensorSpec = (&'static str, TensorDtype, Vec<usize>);

/// The tensors a quantized layer with weight shape `[out, in]` is stored as in `format`, without
/// their data, in the order [`layer_bytes`] gives their bytes: the ints (`weight_packed` and
/// `weight_shape`, or an I8 `weight`), `weight_scale` (in `scale_dtype`) and, asymmetric,
/// `weight_zero_point` (packed along dim 0 in `pack-quantized`, plain I8 in `int-quantized`).
///
/// Only per-tensor, per-channel along axis 0 and per-group schemes have a compressed-tensors
/// layout; per-channel along another axis is an [`Error::Scheme`]. Only the two compressed-tensors
/// formats are written (bitsandbytes files are read, never written): another is an
/// [`Error::Unsupported`].
pub(crate) fn layer_specs(
    shape: [usize; 2],
    scheme: QuantScheme,
    scale_dtype: DType,
    format: PackFormat,
) -> Result<Vec<LayerTensorSpec>> {
    let [out, inn] = shape;
    let scale_shape = match scheme.granularity {
        Granularity::PerTensor => vec![1],
        Granularity::PerChannel { axis: 0 } => vec![out, 1],
        Granularity::PerGroup { size } => vec![out, inn / size],
        Granularity::PerChannel { axis } => {
            return Err(Error::Scheme(format!(
                "per-channel along axis {axis} has no compressed-tensors layout; use axis 0 (one scale per output row)"
            )));
        }
    };
    let mut v = match format {
        PackFormat::PackQuantized => vec![
            ("weight_packed", TensorDtype::I32, vec![out, inn.div_ceil(4)]),
            ("weight_shape", TensorDtype::I64, vec![2]),
        ],
        PackFormat::IntQuantized => vec![("weight", TensorDtype::I8, vec![out, inn])],
        PackFormat::BitsAndBytes => {
            return Err(Error::Unsupported("bitsandbytes layers are read, never written".into()));
        }
    };
    v.push(("weight_scale", to_tensor_dtype(scale_dtype), scale_shape.clone()));
    if scheme.has_zero_point() {
        v.push(match (format, scheme.granularity) {
            (PackFormat::PackQuantized, Granularity::PerTensor) => ("weight_zero_point", TensorDtype::I8, vec![1]),
            (PackFormat::PackQuantized, _) => {
                ("weight_zero_point", TensorDtype::I32, vec![out.div_ceil(4), scale_shape[1]])
            }
            _ => ("weight_zero_point", TensorDtype::I8, scale_shape),
        });
    }
    Ok(v)
}

/// The bytes of the tensors of [`layer_specs`], in its order, from what a quantized layer
/// stores: `packed`, its rows of ints as [`pack_row`] writes them; the scales as exported (each
/// exactly representable in `scale_dtype`); the zero points of an asymmetric scheme.
///
/// For `int-quantized`, the packed rows are turned into plain int8 rows in place (the offset
/// undone, the padding dropped): one pass over bytes already in memory, so that the quantizer's
/// single pass over the weight keeps one row format for every method.
pub(crate) fn layer_bytes(
    shape: [usize; 2],
    scheme: QuantScheme,
    scale_dtype: DType,
    format: PackFormat,
    packed: Vec<u8>,
    scales: &[f32],
    zero_points: Option<&[i8]>,
) -> Vec<Vec<u8>> {
    let [out, inn] = shape;
    let mut v = match format {
        PackFormat::IntQuantized => vec![int_rows(packed, out, inn)],
        _ => vec![packed, [out as i64, inn as i64].iter().flat_map(|d| d.to_le_bytes()).collect()],
    };
    v.push(f32_to_bytes(scales, scale_dtype));
    if let Some(z) = zero_points {
        v.push(match (format, scheme.granularity) {
            (PackFormat::PackQuantized, Granularity::PerTensor) | (PackFormat::IntQuantized, _) => {
                z.iter().map(|&z| z as u8).collect()
            }
            _ => words_bytes(&pack_dim0(z, out, z.len() / out)),
        });
    }
    v
}

/// `out` rows of [`pack_row`]'s words as plain int8 rows of `inn` bytes, in place.
fn int_rows(mut packed: Vec<u8>, out: usize, inn: usize) -> Vec<u8> {
    let row_bytes = inn.div_ceil(4) * 4;
    // Row r moves from r * row_bytes to r * inn <= r * row_bytes: forward order never overwrites
    // a byte before it is read.
    for r in 0..out {
        for c in 0..inn {
            packed[r * inn + c] = packed[r * row_bytes + c] ^ OFFSET_BINARY;
        }
    }
    packed.truncate(out * inn);
    packed
}

/// One row of ints as `weight_packed` stores it: `out[c] = q[c] ^ 0x80`, then zeros up to the
/// end of `out` (the row padded to whole words).
#[inline]
pub(crate) fn pack_row(q: &[i8], out: &mut [u8]) {
    let (values, padding) = out.split_at_mut(q.len());
    for (o, &v) in values.iter_mut().zip(q) {
        *o = v as u8 ^ OFFSET_BINARY;
    }
    padding.fill(0);
}

/// The compressed-tensors tensors of one quantized layer as `(spec, bytes)` pairs (see
/// [`layer_specs`]), scales written in `scale_dtype`.
pub(crate) fn layer_tensors(
    q: &QuantizedTensor,
    scale_dtype: DType,
    format: PackFormat,
) -> Result<Vec<(LayerTensorSpec, Vec<u8>)>> {
    let &[out, inn] = q.shape() else {
        return Err(Error::Shape(format!("a linear weight must be 2-D [out, in], found {:?}", q.shape())));
    };
    let specs = layer_specs([out, inn], q.scheme(), scale_dtype, format)?;
    let packed = words_bytes(&pack_rows_xor(q.values(), out, inn, OFFSET_BINARY));
    let bytes = layer_bytes([out, inn], q.scheme(), scale_dtype, format, packed, q.scales(), q.zero_points());
    Ok(specs.into_iter().zip(bytes).collect())
}

/// Words as their little-endian bytes.
pub(super) fn words_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Packs an int8 matrix `[rows, cols]` along dim 0 (compressed-tensors' zero-point layout):
/// word `[w, c]` holds `z[4w+j, c] ^ 0x80` in byte `j`; shape `[ceil(rows/4), cols]`.
pub(crate) fn pack_dim0(values: &[i8], rows: usize, cols: usize) -> Vec<u32> {
    let mut out = vec![0u32; rows.div_ceil(4) * cols];
    for r in 0..rows {
        for c in 0..cols {
            out[(r / 4) * cols + c] |= u32::from(values[r * cols + c] as u8 ^ OFFSET_BINARY) << (8 * (r % 4));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_pack_as_the_words_of_pack_rows_xor() {
        let q: Vec<i8> = (0..3 * 7).map(|i| (i * 53 % 256) as u8 as i8).collect();
        let words = words_bytes(&pack_rows_xor(&q, 3, 7, OFFSET_BINARY));
        let mut rows = vec![0xAAu8; 3 * 8];
        for (r, out) in q.chunks(7).zip(rows.chunks_mut(8)) {
            pack_row(r, out);
        }
        assert_eq!(rows, words);
    }

    #[test]
    fn int_quantized_rows_are_the_plain_ints() {
        let q: Vec<i8> = (0..3 * 7).map(|i| (i * 53 % 256) as u8 as i8).collect();
        let t = QuantizedTensor::new(&[3, 7], QuantScheme::default(), q.clone(), vec![0.5; 3], None).unwrap();
        let tensors = layer_tensors(&t, DType::BF16, PackFormat::IntQuantized).unwrap();
        let names: Vec<&str> = tensors.iter().map(|((n, ..), _)| *n).collect();
        assert_eq!(names, ["weight", "weight_scale"]);
        assert_eq!(tensors[0].0.2, [3, 7]);
        assert_eq!(tensors[0].1, bytemuck::cast_slice::<i8, u8>(&q));
        assert_eq!(tensors[1].0.2, [3, 1]);
        assert!(layer_specs([3, 7], QuantScheme::default(), DType::F32, PackFormat::BitsAndBytes).is_err());
    }

    #[test]
    fn f16_scales_that_underflow_export_as_the_smallest_f16() {
        let w = [3e-6f32, -1e-6, 0.5, 0.25];
        let q = crate::reference::quantize(&w, &[2, 2], QuantScheme::default()).unwrap();
        assert_eq!(DType::F16.round(q.scales()[0]), 0.0, "the case this test is about");
        let e = exported(&q, DType::F16).unwrap();
        assert_eq!(e.scales()[0], 2f32.powi(-24));
        assert_eq!(e.scales()[1], DType::F16.round(q.scales()[1]));
        assert_eq!(e.values(), q.values());
    }
}
