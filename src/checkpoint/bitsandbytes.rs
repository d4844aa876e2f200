//! bitsandbytes 8-bit checkpoints, as transformers saves a model loaded with `load_in_8bit`:
//! each linear layer `P` is `P.weight` (I8 `[out, in]`, bitsandbytes' own ints), `P.SCB` (f32
//! `[out]`, the absmax of each row of the float weight: dequant = `weight · SCB / 127`) and
//! `P.weight_format` (a U8 scalar, 0 for row-major, the only layout bitsandbytes still writes or
//! reads). `config.json` has `quantization_config: {"quant_method": "bitsandbytes",
//! "load_in_8bit": true, "llm_int8_threshold": 6.0, ...}`. Such layers load as LLM.int8() layers
//! at the config's threshold. Key names as in bitsandbytes 0.50 (`Linear8bitLt._save_to_state_dict`,
//! `maybe_rearrange_weight`) and transformers 5.24 (`Bnb8bitHfQuantizer.serialized_names`).

use serde_json::Value;

use super::{Checkpoint, PackFormat, QuantizedLayerInfo, floats_to_f32, to_dtype};
use crate::{ActivationQuant, DType, Error, Granularity, QuantScheme, QuantizedTensor, Result};

/// bitsandbytes' `weight_format` for row-major ints (`LINEAR_8BIT_WEIGHTS_FORMAT_MAPPING["row"]`);
/// 1-3 were tiled GPU layouts (`col32`, `col_turing`, `col_ampere`).
const ROW_MAJOR: i64 = 0;

impl Checkpoint {
    /// Whether `config.json` says the checkpoint was saved by bitsandbytes.
    pub(super) fn is_bitsandbytes(&self) -> bool {
        self.quantization_config().and_then(|q| q.get("quant_method")).and_then(Value::as_str) == Some("bitsandbytes")
    }

    /// The activations a bitsandbytes config asks for: LLM.int8() at `llm_int8_threshold` (6.0,
    /// bitsandbytes' default, when absent); plain per-token int8 for a threshold of 0, which
    /// bitsandbytes takes as "no outlier columns". `None` when the config is not bitsandbytes'.
    /// 4-bit configs and thresholds that are not finite non-negative numbers are
    /// [`Error::Unsupported`].
    pub(super) fn bnb_activations(&self) -> Result<Option<ActivationQuant>> {
        let Some(q) = self.quantization_config().filter(|_| self.is_bitsandbytes()) else { return Ok(None) };
        // transformers writes both the property and the private field it reads it from.
        let flag = |k: &str| q.get(k).or_else(|| q.get(format!("_{k}"))).and_then(Value::as_bool) == Some(true);
        if flag("load_in_4bit") {
            return Err(Error::Unsupported(
                "bitsandbytes 4-bit checkpoints (load_in_4bit) are not supported; only load_in_8bit".into(),
            ));
        }
        if !flag("load_in_8bit") {
            return Err(Error::Unsupported(
                "the bitsandbytes quantization_config has no `load_in_8bit: true`; only 8-bit checkpoints are supported"
                    .into(),
            ));
        }
        let threshold = match q.get("llm_int8_threshold") {
            None | Some(Value::Null) => ActivationQuant::DEFAULT_THRESHOLD,
            Some(v) => match v.as_f64() {
                // Quoted from the JSON: as an f32 it would read `inf` or `0`.
                Some(t) if t.is_finite() && t > f64::from(f32::MAX) => {
                    return Err(Error::Unsupported(format!(
                        "the bitsandbytes quantization_config has llm_int8_threshold {v}, beyond f32's range (max \
                         {:e})",
                        f32::MAX
                    )));
                }
                Some(t) if t > 0.0 && t as f32 == 0.0 => {
                    return Err(Error::Unsupported(format!(
                        "the bitsandbytes quantization_config has llm_int8_threshold {v}, below f32's smallest \
                         positive value ({:e}); 0 means no outlier columns",
                        f32::from_bits(1)
                    )));
                }
                Some(t) if t.is_finite() && t >= 0.0 => t as f32,
                _ => {
                    return Err(Error::Unsupported(format!(
                        "the bitsandbytes quantization_config has llm_int8_threshold {v}; it must be a number >= 0"
                    )));
                }
            },
        };
        if threshold == 0.0 {
            return Ok(Some(ActivationQuant::per_token()));
        }
        ActivationQuant::llm_int8(threshold)
            .map(Some)
            .map_err(|_| Error::Unsupported(format!("llm_int8_threshold {threshold} is not a positive f32 threshold")))
    }

    /// The float dtype of a bitsandbytes model, which the activations take: `SCB` is always f32
    /// whatever the model's dtype, so it comes from config.json's `dtype` (`torch_dtype` before
    /// transformers 5); f32 when neither says.
    pub(super) fn bnb_model_dtype(&self) -> DType {
        let config = self.config();
        let name = config.and_then(|c| c.get("dtype").or_else(|| c.get("torch_dtype"))).and_then(Value::as_str);
        match name {
            Some("float16") => DType::F16,
            Some("bfloat16") => DType::BF16,
            _ => DType::F32,
        }
    }

    /// What bitsandbytes layer `p` is (headers, and the `weight_format` scalar).
    pub(super) fn bnb_layer_info(&self, p: &str) -> Result<QuantizedLayerInfo> {
        let get = |suffix: &str| self.info(&format!("{p}.{suffix}"));
        let bad = |msg: String| Err(Error::Unsupported(msg));
        let (Some(w), Some(scb)) = (get("weight"), get("SCB")) else {
            return Err(Error::NotFound(format!("no bitsandbytes layer `{p}` (no I8 `{p}.weight` with `{p}.SCB`)")));
        };
        let &[out, inn] = w.shape.as_slice() else {
            return bad(format!("`{p}.weight` has shape {:?}; a linear weight needs [out, in]", w.shape));
        };
        if out == 0 || inn == 0 {
            return Err(Error::Empty(format!("quantized weight `{p}` of shape [{out}, {inn}]")));
        }
        if to_dtype(scb.dtype).is_none() || scb.numel() != out || !matches!(scb.shape.as_slice(), [_] | [_, 1]) {
            return bad(format!(
                "`{p}.SCB` is {} {:?}; bitsandbytes row statistics are a float vector [{out}]",
                scb.dtype, scb.shape
            ));
        }
        let mut nbytes = w.nbytes() + scb.nbytes();
        if let Some(f) = get("weight_format") {
            let format_name = format!("{p}.weight_format");
            let values = self.int_values(&format_name)?;
            if values != [ROW_MAJOR] {
                return bad(format!(
                    "`{format_name}` is {values:?}; only bitsandbytes' row-major weights (0) are supported (1-3 \
                     are tiled GPU layouts that bitsandbytes itself no longer reads)"
                ));
            }
            nbytes += f.nbytes();
        }
        Ok(QuantizedLayerInfo {
            name: p.to_string(),
            shape: [out, inn],
            scheme: QuantScheme::symmetric(Granularity::PerChannel { axis: 0 }),
            scale_dtype: scb.dtype,
            format: PackFormat::BitsAndBytes,
            nbytes,
        })
    }

    /// Rebuilds bitsandbytes layer `info` on the host: its ints as stored, each row's scale
    /// `SCB / 127` computed in f32 (bitsandbytes' ints came from its own CUDA rounding; they are
    /// only read here, never recomputed).
    ///
    /// A row whose `SCB / 127` is 0 or subnormal is all zeros to bitsandbytes (or below any
    /// float activation's resolution): it gets zero ints and scale 1, as the crate stores an
    /// all-zero row, so that it dequantizes to exactly 0. A negative or non-finite `SCB` is an
    /// [`Error::BadScale`].
    pub(super) fn bnb_rebuild(&self, info: &QuantizedLayerInfo) -> Result<QuantizedTensor> {
        let p = &info.name;
        let [_, inn] = info.shape;
        let mut values: Vec<i8> = bytemuck::cast_slice(&self.tensor_data(&format!("{p}.weight"))?).to_vec();
        let scb =
            floats_to_f32(info.scale_dtype, &self.tensor_data(&format!("{p}.SCB"))?).expect("checked float dtype");
        let mut scales = Vec::with_capacity(scb.len());
        for (row, &absmax) in values.chunks_exact_mut(inn).zip(&scb) {
            let s = absmax / 127.0;
            if (0.0..f32::MIN_POSITIVE).contains(&s) {
                row.fill(0);
                scales.push(1.0);
            } else {
                scales.push(s);
            }
        }
        QuantizedTensor::new(&info.shape, info.scheme, values, scales, None)
    }
}
