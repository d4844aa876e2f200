//! The compressed-tensors codec for the tensors of 8-bit quantized linear layers (the layout is
//! in the [`checkpoint`](super) module docs): reading a layer back, its scheme inferred from the
//! scale and zero-point shapes; and encoding one, ints packed as offset binary and scales
//! exported in the weight's dtype. The `quantization_config` of `config.json` is
//! `quantization_config.rs`'s job.

use serde_json::Value;

use super::{Checkpoint, TensorDtype, f32_to_bytes, floats_to_f32, to_dtype, to_tensor_dtype};
use crate::quantized::{pack_rows_xor, unpack_rows_xor};
use crate::{DType, Error, Granularity, Mode, QuantScheme, QuantizedTensor, Result};

/// What compressed-tensors stores in place of an int8 `q`: `q ^ 0x80` = `q + 128` (offset binary).
const OFFSET_BINARY: u8 = 0x80;

/// How a quantized layer's weight is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackFormat {
    /// compressed-tensors `pack-quantized`: `weight_packed` I32, bytes `q ^ 0x80`.
    PackQuantized,
    /// compressed-tensors `int-quantized`: `weight` I8 `[out, in]`.
    IntQuantized,
}

/// What a quantized layer of a checkpoint is, read from its tensors' headers.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedLayerInfo {
    /// The layer name `P` (tensors are `P.weight_packed`, `P.weight_scale`, ...).
    pub name: String,
    /// `[out, in]`.
    pub shape: [usize; 2],
    /// The scheme, inferred from the scale and zero-point shapes.
    pub scheme: QuantScheme,
    /// The dtype the scales are stored in (the original weight's dtype).
    pub scale_dtype: TensorDtype,
    /// How the int8 weight is stored.
    pub format: PackFormat,
    /// Bytes of all the layer's weight tensors (packed weight, shape, scales, zero points).
    pub nbytes: usize,
}

impl Checkpoint {
    /// The names `P` of the quantized layers (`P.weight_packed`, or an I8 `P.weight` with a
    /// `P.weight_scale`), sorted.
    pub fn quantized_layers(&self) -> Vec<String> {
        self.tensors
            .iter()
            .filter_map(|(name, info)| {
                if let Some(p) = name.strip_suffix(".weight_packed") {
                    return Some(p.to_string());
                }
                let p = name.strip_suffix(".weight")?;
                (info.dtype == TensorDtype::I8 && self.tensors.contains_key(&format!("{p}.weight_scale")))
                    .then(|| p.to_string())
            })
            .collect()
    }

    /// What quantized layer `name` is: shape, scheme, scale dtype, format (headers only).
    pub fn quantized_layer_info(&self, name: &str) -> Result<QuantizedLayerInfo> {
        self.layer_info(name).map_err(|e| e.in_tensor(name))
    }

    pub(super) fn layer_info(&self, p: &str) -> Result<QuantizedLayerInfo> {
        self.check_num_bits()?;
        let get = |suffix: &str| self.tensors.get(&format!("{p}.{suffix}"));
        let bad = |msg: String| Err(Error::Unsupported(msg));
        let mut nbytes = 0;
        let (format, out, inn) = if let Some(packed) = get("weight_packed") {
            let Some(shape_t) = get("weight_shape") else {
                return bad(format!("`{p}.weight_packed` has no `{p}.weight_shape`"));
            };
            let dims = self.int_values(&format!("{p}.weight_shape"))?;
            let &[out, inn] = dims.as_slice() else {
                return bad(format!("`{p}.weight_shape` is {dims:?}; a linear weight needs [out, in]"));
            };
            let (out, inn) = (to_dim(out)?, to_dim(inn)?);
            if packed.dtype != TensorDtype::I32 || packed.shape != [out, inn.div_ceil(4)] {
                return bad(format!(
                    "`{p}.weight_packed` is {} {:?}; 8-bit pack-quantized needs I32 [{out}, {}] for weight shape \
                     [{out}, {inn}] (other bit widths are not supported)",
                    packed.dtype,
                    packed.shape,
                    inn.div_ceil(4)
                ));
            }
            nbytes += packed.nbytes() + shape_t.nbytes();
            (PackFormat::PackQuantized, out, inn)
        } else if let Some(w) = get("weight").filter(|w| w.dtype == TensorDtype::I8) {
            let &[out, inn] = w.shape.as_slice() else {
                return bad(format!("`{p}.weight` has shape {:?}; a linear weight needs [out, in]", w.shape));
            };
            nbytes += w.nbytes();
            (PackFormat::IntQuantized, out, inn)
        } else {
            return Err(Error::NotFound(format!(
                "no quantized layer `{p}` (no `{p}.weight_packed` nor I8 `{p}.weight`)"
            )));
        };
        if out == 0 || inn == 0 {
            return Err(Error::Empty(format!("quantized weight `{p}` of shape [{out}, {inn}]")));
        }
        let Some(scale) = get("weight_scale") else {
            return bad(format!("quantized layer `{p}` has no `{p}.weight_scale`"));
        };
        if to_dtype(scale.dtype).is_none() {
            return bad(format!("`{p}.weight_scale` is {}; scales must be F32, F16 or BF16", scale.dtype));
        }
        nbytes += scale.nbytes();
        let granularity = match (scale.numel(), scale.shape.as_slice()) {
            (1, _) if out > 1 || scale.shape.len() <= 1 => Granularity::PerTensor,
            (n, [o, 1] | [o]) if *o == out && n == out => Granularity::PerChannel { axis: 0 },
            (_, [o, g]) if *o == out && *g > 0 && inn % g == 0 => {
                if *g == 1 {
                    Granularity::PerChannel { axis: 0 }
                } else {
                    Granularity::PerGroup { size: inn / g }
                }
            }
            _ => {
                return bad(format!(
                    "`{p}.weight_scale` has shape {:?}, which fits no scheme for weight [{out}, {inn}] \
                     (expected [1], [{out}, 1] or [{out}, in/group_size])",
                    scale.shape
                ));
            }
        };
        let mode = match get("weight_zero_point") {
            Some(z) => {
                nbytes += z.nbytes();
                Mode::Asymmetric
            }
            None => Mode::Symmetric,
        };
        if mode == Mode::Symmetric
            && self.config_weights().and_then(|w| w.get("symmetric")).and_then(Value::as_bool) == Some(false)
        {
            return bad(format!("config.json says asymmetric but `{p}.weight_zero_point` is missing"));
        }
        Ok(QuantizedLayerInfo {
            name: p.to_string(),
            shape: [out, inn],
            scheme: QuantScheme { mode, granularity },
            scale_dtype: scale.dtype,
            format,
            nbytes,
        })
    }

    /// Reads an integer tensor (I8, I16, I32, I64, U8) as i64 values.
    fn int_values(&self, name: &str) -> Result<Vec<i64>> {
        let info = self.require(name)?;
        let b = self.tensor_data(name)?;
        Ok(match info.dtype {
            TensorDtype::I64 => b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8"))).collect(),
            TensorDtype::I32 => {
                b.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().expect("4")).into()).collect()
            }
            TensorDtype::I16 => {
                b.chunks_exact(2).map(|c| i16::from_le_bytes(c.try_into().expect("2")).into()).collect()
            }
            TensorDtype::I8 => b.iter().map(|&v| (v as i8).into()).collect(),
            TensorDtype::U8 => b.iter().map(|&v| v.into()).collect(),
            d => return Err(Error::Unsupported(format!("tensor `{name}` is {d}; an integer tensor was expected"))),
        })
    }

    /// Rebuilds quantized layer `name` on the host: ints from the packed bytes (`^ 0x80`),
    /// scales widened to f32, zero points unpacked.
    pub fn quantized_tensor(&self, name: &str) -> Result<QuantizedTensor> {
        self.rebuild(name).map_err(|e| e.in_tensor(name))
    }

    pub(super) fn rebuild(&self, p: &str) -> Result<QuantizedTensor> {
        let info = self.layer_info(p)?;
        let [out, inn] = info.shape;
        let values: Vec<i8> = match info.format {
            PackFormat::PackQuantized => {
                let words: Vec<u32> = bytemuck::pod_collect_to_vec(&self.tensor_data(&format!("{p}.weight_packed"))?);
                unpack_rows_xor(&words, out, inn, OFFSET_BINARY)
            }
            PackFormat::IntQuantized => bytemuck::cast_slice(&self.tensor_data(&format!("{p}.weight"))?).to_vec(),
        };
        let (scales, zero_points) = self.params(&info)?;
        QuantizedTensor::new(&info.shape, info.scheme, values, scales, zero_points)
    }

    /// Scales (widened to f32) and zero points (unpacked) of a quantized layer.
    pub(super) fn params(&self, info: &QuantizedLayerInfo) -> Result<(Vec<f32>, Option<Vec<i8>>)> {
        let (p, out) = (&info.name, info.shape[0]);
        let scale_name = format!("{p}.weight_scale");
        let scales = floats_to_f32(info.scale_dtype, &self.tensor_data(&scale_name)?).expect("checked float dtype");
        let layout = info.scheme.layout(&info.shape)?;
        let zero_points = match info.scheme.mode {
            Mode::Symmetric => None,
            Mode::Asymmetric => {
                let zname = format!("{p}.weight_zero_point");
                let z = self.require(&zname)?;
                let (rows, cols) = match info.scheme.granularity {
                    Granularity::PerTensor => (1, 1),
                    _ => (out, layout.num_params() / out),
                };
                let bytes = self.tensor_data(&zname)?;
                Some(match z.dtype {
                    TensorDtype::I8 if z.numel() == rows * cols => bytemuck::cast_slice(&bytes).to_vec(),
                    TensorDtype::I32 if z.numel() == rows.div_ceil(4) * cols => unpack_dim0(&bytes, rows, cols),
                    _ => {
                        return Err(Error::Unsupported(format!(
                            "`{zname}` is {} {:?}; expected I32 [{}, {cols}] (packed along dim 0) or I8 with \
                             {} elements",
                            z.dtype,
                            z.shape,
                            rows.div_ceil(4),
                            rows * cols
                        )));
                    }
                })
            }
        };
        Ok((scales, zero_points))
    }
}

fn to_dim(v: i64) -> Result<usize> {
    usize::try_from(v).map_err(|_| Error::Corrupt(format!("negative dimension {v} in weight_shape")))
}

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

/// The tensors a quantized layer with weight shape `[out, in]` is stored as, without their data,
/// in the order [`layer_bytes`] gives their bytes: `weight_packed`, `weight_shape`,
/// `weight_scale` (in `scale_dtype`) and, asymmetric, `weight_zero_point`.
///
/// Only per-tensor, per-channel along axis 0 and per-group schemes have a compressed-tensors
/// layout; per-channel along another axis is an [`Error::Scheme`].
pub(crate) fn layer_specs(shape: [usize; 2], scheme: QuantScheme, scale_dtype: DType) -> Result<Vec<LayerTensorSpec>> {
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
    let mut v = vec![
        ("weight_packed", TensorDtype::I32, vec![out, inn.div_ceil(4)]),
        ("weight_shape", TensorDtype::I64, vec![2]),
        ("weight_scale", to_tensor_dtype(scale_dtype), scale_shape.clone()),
    ];
    if scheme.has_zero_point() {
        v.push(match scheme.granularity {
            Granularity::PerTensor => ("weight_zero_point", TensorDtype::I8, vec![1]),
            _ => ("weight_zero_point", TensorDtype::I32, vec![out.div_ceil(4), scale_shape[1]]),
        });
    }
    Ok(v)
}

/// The bytes of the tensors of [`layer_specs`], in its order, from what a quantized layer
/// stores: `packed`, its rows of ints as [`pack_row`] writes them; the scales as exported (each
/// exactly representable in `scale_dtype`); the zero points of an asymmetric scheme.
pub(crate) fn layer_bytes(
    shape: [usize; 2],
    scheme: QuantScheme,
    scale_dtype: DType,
    packed: Vec<u8>,
    scales: &[f32],
    zero_points: Option<&[i8]>,
) -> Vec<Vec<u8>> {
    let [out, inn] = shape;
    let mut v = vec![
        packed,
        [out as i64, inn as i64].iter().flat_map(|d| d.to_le_bytes()).collect(),
        f32_to_bytes(scales, scale_dtype),
    ];
    if let Some(z) = zero_points {
        v.push(match scheme.granularity {
            Granularity::PerTensor => z.iter().map(|&z| z as u8).collect(),
            _ => words_bytes(&pack_dim0(z, out, z.len() / out)),
        });
    }
    v
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
pub(crate) fn layer_tensors(q: &QuantizedTensor, scale_dtype: DType) -> Result<Vec<(LayerTensorSpec, Vec<u8>)>> {
    let &[out, inn] = q.shape() else {
        return Err(Error::Shape(format!("a linear weight must be 2-D [out, in], found {:?}", q.shape())));
    };
    let specs = layer_specs([out, inn], q.scheme(), scale_dtype)?;
    let packed = words_bytes(&pack_rows_xor(q.values(), out, inn, OFFSET_BINARY));
    let bytes = layer_bytes([out, inn], q.scheme(), scale_dtype, packed, q.scales(), q.zero_points());
    Ok(specs.into_iter().zip(bytes).collect())
}

fn words_bytes(words: &[u32]) -> Vec<u8> {
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

fn unpack_dim0(bytes: &[u8], rows: usize, cols: usize) -> Vec<i8> {
    let words: Vec<u32> = bytemuck::pod_collect_to_vec(bytes);
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            out.push(((words[(r / 4) * cols + c] >> (8 * (r % 4))) as u8 ^ OFFSET_BINARY) as i8);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dim0_packing_round_trips() {
        let z: Vec<i8> = (0..5 * 3).map(|i| (i * 37 % 256) as u8 as i8).collect();
        let w = pack_dim0(&z, 5, 3);
        assert_eq!(w.len(), 2 * 3);
        assert_eq!(w[0] & 0xFF, u32::from(z[0] as u8 ^ 0x80));
        assert_eq!((w[0] >> 8) & 0xFF, u32::from(z[3] as u8 ^ 0x80));
        assert_eq!(unpack_dim0(&words_bytes(&w), 5, 3), z);
    }

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
