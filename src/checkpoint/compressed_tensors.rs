//! Reading the tensors of 8-bit quantized linear layers back (the layouts are in the
//! [`checkpoint`](super) module docs): which layers a checkpoint holds, each one's scheme
//! inferred from its scale and zero-point shapes, its ints, scales and zero points. Encoding
//! them is `encode.rs`'s job, bitsandbytes' own tensors `bitsandbytes.rs`'s, and the
//! `quantization_config` of `config.json` `quantization_config.rs`'s.

use serde_json::Value;

use super::pack_format::OFFSET_BINARY;
use super::{Checkpoint, PackFormat, TensorDtype, floats_to_f32, to_dtype};
use crate::quantized::unpack_rows_xor;
use crate::{Error, Granularity, Mode, QuantScheme, QuantizedTensor, Result};

/// What a quantized layer of a checkpoint is, read from its tensors' headers.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedLayerInfo {
    /// The layer name `P` (tensors are `P.weight_packed`, `P.weight_scale`, ...).
    pub name: String,
    /// `[out, in]`.
    pub shape: [usize; 2],
    /// The scheme, inferred from the scale and zero-point shapes (zero points under a config
    /// group that says `symmetric: true` must all be zero, and the layer is symmetric).
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
    /// `P.weight_scale` or, bitsandbytes, a `P.SCB`), sorted.
    pub fn quantized_layers(&self) -> Vec<String> {
        self.tensors
            .iter()
            .filter_map(|(name, info)| {
                if let Some(p) = name.strip_suffix(".weight_packed") {
                    return Some(p.to_string());
                }
                let p = name.strip_suffix(".weight")?;
                let has = |suffix: &str| self.tensors.contains_key(&format!("{p}.{suffix}"));
                (info.dtype == TensorDtype::I8 && (has("weight_scale") || has("SCB"))).then(|| p.to_string())
            })
            .collect()
    }

    /// What quantized layer `name` is: shape, scheme, scale dtype, format (headers only, but for
    /// the zero points of a layer whose config says symmetric, which are read to check they are zero).
    pub fn quantized_layer_info(&self, name: &str) -> Result<QuantizedLayerInfo> {
        self.layer_info(name).map_err(|e| e.in_tensor(name))
    }

    pub(super) fn layer_info(&self, p: &str) -> Result<QuantizedLayerInfo> {
        self.check_num_bits()?;
        // A layer is only described for running it: an activation scheme that cannot run fails here.
        self.activation_quant()?;
        let get = |suffix: &str| self.tensors.get(&format!("{p}.{suffix}"));
        let bad = |msg: String| Err(Error::Unsupported(msg));
        if get("weight").is_some_and(|w| w.dtype == TensorDtype::I8) && get("SCB").is_some() {
            return self.bnb_layer_info(p);
        }
        let mut nbytes = 0;
        let (format, out, inn) = if let Some(packed) = get("weight_packed") {
            let Some(shape_t) = get("weight_shape") else {
                return bad(format!("`{p}.weight_packed` has no `{p}.weight_shape`"));
            };
            let dims = self.int_values(&format!("{p}.weight_shape"))?;
            let &[out, inn] = dims.as_slice() else {
                return bad(format!("`{p}.weight_shape` is {dims:?}; a linear weight needs [out, in]"));
            };
            let (out, inn) = (to_dim(p, out)?, to_dim(p, inn)?);
            let words = inn.div_ceil(4);
            // I32 [out, in/8] or [out, in/16] is 4- or 2-bit packing; any other shape contradicts
            // weight_shape (an edited file).
            let other_bits = [8, 16].iter().any(|f| packed.shape == [out, inn.div_ceil(*f)]);
            if packed.dtype == TensorDtype::I32 && packed.shape != [out, words] && !other_bits {
                return Err(Error::Corrupt(format!(
                    "`{p}.weight_shape` is [{out}, {inn}] but `{p}.weight_packed` is I32 {:?}; 8-bit ints of a \
                     [{out}, {inn}] weight pack into I32 [{out}, {words}]: weight_shape disagrees with the packed \
                     tensor's shape, so the file was edited or is corrupt",
                    packed.shape
                )));
            }
            if packed.dtype != TensorDtype::I32 || packed.shape != [out, words] {
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
            if let Some(dtype) = self.float_weight(p) {
                return Err(Error::NotFound(format!(
                    "layer `{p}` is not quantized: the checkpoint holds its float weight `{p}.weight` ({dtype}); \
                     quantize the checkpoint with `int8-wgpu quantize`, or the layer with \
                     `QuantizedLinear::from_float`"
                )));
            }
            return Err(Error::NotFound(format!(
                "no quantized layer `{p}` (no `{p}.weight_packed` nor I8 `{p}.weight`){}",
                self.layer_hint(p)
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
        self.check_config_granularity(p, [out, inn], granularity, &scale.shape)?;
        let group = self.layer_group(p)?;
        let symmetric = group.as_ref().and_then(|g| g.weights.get("symmetric")).and_then(Value::as_bool);
        let mode = match get("weight_zero_point") {
            // compressed-tensors saved all-zero zero points for symmetric schemes until May 2024
            // (its PR #59): under a symmetric config they are checked to be zero, then ignored.
            Some(z) if symmetric == Some(true) => {
                nbytes += z.nbytes();
                let zps = self.zero_points(p, [out, inn], granularity)?;
                if let Some(i) = zps.iter().position(|&z| z != 0) {
                    let cols = (zps.len() / out).max(1);
                    return Err(Error::Corrupt(format!(
                        "layer `{p}`: config group `{}` says symmetric but `{p}.weight_zero_point` holds the nonzero \
                         zero point {} at [{}, {}]; a symmetric layer's zero points are all zero, so the config and \
                         the tensors disagree: the file was edited or is corrupt",
                        group.as_ref().map_or("", |g| g.name),
                        zps[i],
                        i / cols,
                        i % cols
                    )));
                }
                Mode::Symmetric
            }
            Some(z) => {
                nbytes += z.nbytes();
                Mode::Asymmetric
            }
            None => Mode::Symmetric,
        };
        if mode == Mode::Symmetric && symmetric == Some(false) {
            return Err(Error::Corrupt(format!(
                "config.json says asymmetric but `{p}.weight_zero_point` is missing; an asymmetric layer needs its \
                 zero points, so the file is incomplete or corrupt"
            )));
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
    pub(super) fn int_values(&self, name: &str) -> Result<Vec<i64>> {
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
        if info.format == PackFormat::BitsAndBytes {
            return self.bnb_rebuild(&info);
        }
        let [out, inn] = info.shape;
        let values: Vec<i8> = match info.format {
            PackFormat::PackQuantized => {
                let words: Vec<u32> = bytemuck::pod_collect_to_vec(&self.tensor_data(&format!("{p}.weight_packed"))?);
                check_padding(p, &words, out, inn)?;
                unpack_rows_xor(&words, out, inn, OFFSET_BINARY)
            }
            PackFormat::IntQuantized | PackFormat::BitsAndBytes => {
                bytemuck::cast_slice(&self.tensor_data(&format!("{p}.weight"))?).to_vec()
            }
        };
        let (scales, zero_points) = self.params(&info)?;
        QuantizedTensor::new(&info.shape, info.scheme, values, scales, zero_points)
    }

    /// Scales (widened to f32) and zero points (unpacked) of a quantized layer.
    pub(super) fn params(&self, info: &QuantizedLayerInfo) -> Result<(Vec<f32>, Option<Vec<i8>>)> {
        let p = &info.name;
        let scale_name = format!("{p}.weight_scale");
        let scales = floats_to_f32(info.scale_dtype, &self.tensor_data(&scale_name)?).expect("checked float dtype");
        let zero_points = match info.scheme.mode {
            Mode::Symmetric => None,
            Mode::Asymmetric => Some(self.zero_points(p, info.shape, info.scheme.granularity)?),
        };
        Ok((scales, zero_points))
    }

    /// The zero points of layer `p` (weight `shape`, scales of `granularity`), unpacked.
    fn zero_points(&self, p: &str, shape: [usize; 2], granularity: Granularity) -> Result<Vec<i8>> {
        let out = shape[0];
        let layout = QuantScheme { mode: Mode::Asymmetric, granularity }.layout(&shape)?;
        let zname = format!("{p}.weight_zero_point");
        let z = self.require(&zname)?;
        let (rows, cols) = match granularity {
            Granularity::PerTensor => (1, 1),
            _ => (out, layout.num_params() / out),
        };
        let bytes = self.tensor_data(&zname)?;
        Ok(match z.dtype {
            TensorDtype::I8 if z.numel() == rows * cols => bytemuck::cast_slice(&bytes).to_vec(),
            TensorDtype::I32 if z.numel() == rows.div_ceil(4) * cols => unpack_dim0(&bytes, rows, cols),
            _ => {
                // I8 or I32 of another size contradicts the scales; another dtype is a layout
                // this crate does not read.
                let msg = format!(
                    "`{zname}` is {} {:?}; expected I32 [{}, {cols}] (packed along dim 0) or I8 with {} elements",
                    z.dtype,
                    z.shape,
                    rows.div_ceil(4),
                    rows * cols
                );
                return Err(match z.dtype {
                    TensorDtype::I8 | TensorDtype::I32 => Error::Corrupt(format!(
                        "{msg}: the zero points disagree with the scales' shape, so the file was edited or is corrupt"
                    )),
                    _ => Error::Unsupported(msg),
                });
            }
        })
    }
}

fn to_dim(p: &str, v: i64) -> Result<usize> {
    usize::try_from(v).map_err(|_| {
        Error::Corrupt(format!(
            "`{p}.weight_shape` has the negative dimension {v}; weight_shape disagrees with the packed tensor's \
             shape, so the file was edited or is corrupt"
        ))
    })
}

/// The ints of `pack-quantized` rows, after checking that each row's padding bytes (past `in`,
/// up to a whole word) are zero as compressed-tensors writes them: nonzero padding means
/// weight_shape was edited to drop columns that hold ints.
pub(super) fn check_padding(p: &str, words: &[u32], out: usize, inn: usize) -> Result<()> {
    let wpr = inn.div_ceil(4);
    if inn.is_multiple_of(4) {
        return Ok(());
    }
    let mask = !0u32 << (8 * (inn % 4));
    for r in 0..out {
        if words[r * wpr + wpr - 1] & mask != 0 {
            return Err(Error::Corrupt(format!(
                "`{p}.weight_packed` row {r} holds nonzero bytes past column {inn} of `{p}.weight_shape` [{out}, \
                 {inn}], where a row is padded with zeros: weight_shape disagrees with the packed tensor, so the \
                 file was edited or is corrupt"
            )));
        }
    }
    Ok(())
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
    use super::super::encode::{pack_dim0, words_bytes};
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
}
