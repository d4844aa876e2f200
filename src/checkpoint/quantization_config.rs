//! The `quantization_config` of `config.json`: written for the scheme and method a run used, and
//! read for what a loader must check (bit width, symmetry; the activations are `method.rs`'s).

use serde_json::{Value, json};

use super::{Checkpoint, PackFormat};
use crate::{Error, Granularity, Method, Mode, QuantScheme, Result};

/// The compressed-tensors release whose `pack-quantized` layout and config this crate writes,
/// recorded as the config's `version` as compressed-tensors itself does (transformers 5.23 with
/// compressed-tensors 0.20 was checked loading our files).
const COMPRESSED_TENSORS_VERSION: &str = "0.20.1";

/// How a method's layers are stored: `w8a8` as `int-quantized`, the only int8 format vLLM runs
/// with int8 activations (its W8A8 kernels take `int-quantized`, `naive-quantized` or
/// `float-quantized`, never `pack-quantized`), as llmcompressor writes W8A8; the weight-only
/// methods, and `llm-int8` (whose config is weight-only, see [`quantization_config`]), as
/// `pack-quantized`, which vLLM's 8-bit weight-only kernels need.
pub(crate) fn pack_format(method: Method) -> PackFormat {
    match method {
        Method::W8A8 => PackFormat::IntQuantized,
        Method::W8A16 | Method::W8A32 | Method::LlmInt8 => PackFormat::PackQuantized,
    }
}

/// The `quantization_config` written into `config.json`: exactly the keys compressed-tensors
/// parsers expect for 8-bit int weights, and no others — plus the cheap ones llmcompressor
/// writes: `version`, and `zp_dtype` for asymmetric schemes.
///
/// `w8a8` adds the `input_activations` of llmcompressor's W8A8 preset (dynamic per-token
/// symmetric int8), with the same keys as the weights: llmcompressor 0.14 also writes
/// `observer: null`, `observer_kwargs: {}`, `block_structure`, `scale_dtype` and `zp_dtype` as
/// null, which compressed-tensors parses to the same arguments, and which releases before those
/// fields existed refuse (their arguments forbid unknown keys).
///
/// `llm-int8` writes the weight-only config, as `w8a16` does: compressed-tensors has no outlier
/// columns, and a loader that cannot keep them in float keeps every activation in float, which
/// loses nothing LLM.int8() keeps (plain W8A8 would lose exactly the outliers it exists for).
/// Our loader reads the method from the files' metadata.
pub(crate) fn quantization_config(scheme: QuantScheme, ignore: &[String], method: Method) -> Result<Value> {
    let (strategy, group_size) = match scheme.granularity {
        Granularity::PerTensor => ("tensor", Value::Null),
        Granularity::PerChannel { axis: 0 } => ("channel", Value::Null),
        Granularity::PerGroup { size } => ("group", json!(size)),
        Granularity::PerChannel { axis } => {
            return Err(Error::Scheme(format!(
                "per-channel along axis {axis} has no compressed-tensors layout; use axis 0 (one scale per output row)"
            )));
        }
    };
    let mut weights = json!({
        "num_bits": 8,
        "type": "int",
        "symmetric": scheme.mode == Mode::Symmetric,
        "strategy": strategy,
        "group_size": group_size,
        "dynamic": false,
        "actorder": null,
    });
    if scheme.has_zero_point() {
        weights["zp_dtype"] = json!("torch.int8");
    }
    let (format, input_activations) = match method {
        Method::W8A8 => (
            "int-quantized",
            json!({
                "num_bits": 8,
                "type": "int",
                "symmetric": true,
                "strategy": "token",
                "group_size": null,
                "dynamic": true,
                "actorder": null,
            }),
        ),
        Method::W8A16 | Method::W8A32 | Method::LlmInt8 => ("pack-quantized", Value::Null),
    };
    debug_assert_eq!(format == "int-quantized", pack_format(method) == PackFormat::IntQuantized);
    Ok(json!({
        "quant_method": "compressed-tensors",
        "version": COMPRESSED_TENSORS_VERSION,
        "format": format,
        "quantization_status": "compressed",
        "config_groups": {
            "group_0": {
                "targets": ["Linear"],
                "weights": weights,
                "input_activations": input_activations,
            }
        },
        "ignore": ignore,
    }))
}

impl Checkpoint {
    /// The granularity that layer `p`'s scale shape gave must be the one its config group's
    /// `weights` declare (`strategy` tensor, channel, or group with its `group_size`): scales of
    /// another shape would be read as another scheme than the file says.
    pub(super) fn check_config_granularity(
        &self,
        p: &str,
        [out, inn]: [usize; 2],
        found: Granularity,
        scale_shape: &[usize],
    ) -> Result<()> {
        let Some(group) = self.layer_group(p)? else { return Ok(()) };
        // One scale per row is the same scheme as one group per row, or one scale for one row.
        let norm = |g: Granularity| match g {
            Granularity::PerGroup { size } if size == inn => Granularity::PerChannel { axis: 0 },
            Granularity::PerTensor if out == 1 => Granularity::PerChannel { axis: 0 },
            g => g,
        };
        if norm(group.granularity) == norm(found) {
            return Ok(());
        }
        let describe = |g: Granularity| match g {
            Granularity::PerGroup { size } => format!("groups of {size} inputs"),
            Granularity::PerTensor => "one scale per tensor".into(),
            Granularity::PerChannel { .. } => "one scale per output row".into(),
        };
        Err(Error::Corrupt(format!(
            "layer `{p}` [{out}, {inn}]: config.json's quantization_config group `{}` says {}, but \
             `{p}.weight_scale` has shape {scale_shape:?} ({}); the config and the scales disagree, so the file was \
             edited or is corrupt",
            group.name,
            describe(group.granularity),
            describe(found)
        )))
    }

    pub(super) fn check_num_bits(&self) -> Result<()> {
        let Some(groups) = self.quantization_config().and_then(|q| q.get("config_groups")).and_then(Value::as_object)
        else {
            return Ok(());
        };
        for (gname, g) in groups {
            let bits = g.get("weights").and_then(|w| w.get("num_bits")).and_then(Value::as_u64);
            if let Some(bits) = bits.filter(|&b| b != 8) {
                return Err(Error::Unsupported(format!(
                    "config group `{gname}` quantizes weights to {bits} bits; only 8-bit weights are supported"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys_are_exactly_the_specified_ones() {
        let c = quantization_config(QuantScheme::asymmetric(Granularity::PerGroup { size: 32 }), &[], Method::W8A16)
            .unwrap();
        let keys: Vec<&String> = c.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 6);
        assert_eq!(c["version"], COMPRESSED_TENSORS_VERSION);
        let w = &c["config_groups"]["group_0"]["weights"];
        assert_eq!(w["group_size"], 32);
        assert_eq!(w["symmetric"], false);
        assert_eq!(w["zp_dtype"], "torch.int8");
        assert_eq!(w.as_object().unwrap().len(), 8);
        let sym = quantization_config(QuantScheme::default(), &["lm_head".into()], Method::LlmInt8).unwrap();
        assert_eq!(sym["format"], "pack-quantized");
        assert_eq!(sym["ignore"], serde_json::json!(["lm_head"]));
        assert_eq!(sym["config_groups"]["group_0"]["weights"]["strategy"], "channel");
        assert!(sym["config_groups"]["group_0"]["weights"].get("zp_dtype").is_none(), "symmetric: no zp_dtype");
        assert!(sym["config_groups"]["group_0"]["input_activations"].is_null(), "llm-int8: weight-only config");
        let axis1 = QuantScheme::symmetric(Granularity::PerChannel { axis: 1 });
        assert!(quantization_config(axis1, &[], Method::W8A16).is_err());
    }
}
