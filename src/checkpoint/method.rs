//! The method a checkpoint records and what it says about its activations, which
//! [`Checkpoint::linear`] then applies: our `__metadata__` (`int8_wgpu.method`,
//! `int8_wgpu.outlier_threshold`), the `input_activations` of a compressed-tensors
//! `quantization_config` (llmcompressor's W8A8), or a bitsandbytes `load_in_8bit` config
//! (LLM.int8()).
//!
//! An activation scheme this crate cannot run is an [`Error::Unsupported`] naming the config
//! group and the field, raised when a layer is loaded or described (never when the checkpoint is
//! opened: its float tensors stay readable, and the error comes from the call that would have
//! run the scheme wrongly).

use serde_json::Value;

use super::Checkpoint;
use crate::{ActivationQuant, Error, Method, Result};

/// The `__metadata__` key where the quantizer records its method (`w8a16`, `w8a32`, `w8a8`,
/// `llm-int8`).
pub(crate) const METHOD_METADATA_KEY: &str = "int8_wgpu.method";

/// The `__metadata__` key where the quantizer records the LLM.int8() outlier threshold (an f32
/// written in Rust's shortest round-trip form, e.g. `6`).
pub(crate) const THRESHOLD_METADATA_KEY: &str = "int8_wgpu.outlier_threshold";

impl Checkpoint {
    /// The method the checkpoint runs with: the one recorded in the `__metadata__` of its first
    /// file; without it, `w8a8` for a compressed-tensors config with int8 dynamic per-token
    /// activations (llmcompressor's W8A8), `llm-int8` for a bitsandbytes 8-bit config; `None`
    /// otherwise (weight-only compressed-tensors files, no config, or an activation scheme that
    /// [`Checkpoint::activation_quant`] refuses).
    pub fn method(&self) -> Option<Method> {
        if let Some(m) = self.metadata().and_then(|m| m.get(METHOD_METADATA_KEY)) {
            return m.parse().ok();
        }
        match self.config_activations() {
            Ok(Some(_)) if self.is_bitsandbytes() => Some(Method::LlmInt8),
            Ok(Some(_)) => Some(Method::W8A8),
            _ => None,
        }
    }

    /// How [`Checkpoint::linear`] makes layers quantize their activations: `None` for weight-only
    /// checkpoints, [`ActivationQuant::per_token`] for W8A8, [`ActivationQuant::llm_int8`] for
    /// LLM.int8().
    ///
    /// Our files say it in their metadata (an `llm-int8` file without a recorded threshold runs
    /// at [`ActivationQuant::DEFAULT_THRESHOLD`]); other files in `config.json`. Errors:
    /// [`Error::Unsupported`] for an activation scheme that cannot run here (static scales,
    /// another strategy than per token, asymmetric, float or not 8-bit activations, output
    /// activations, groups that disagree, 4-bit bitsandbytes); [`Error::Corrupt`] for metadata
    /// that is not ours to read (an unknown method, a bad threshold) or that contradicts
    /// `config.json` (a weight-only method with configured activations, or `w8a8` without them).
    pub fn activation_quant(&self) -> Result<Option<ActivationQuant>> {
        let configured = self.config_activations()?;
        let Some(recorded) = self.metadata().and_then(|m| m.get(METHOD_METADATA_KEY)) else {
            return Ok(configured);
        };
        let corrupt = |what: String| Error::Corrupt(format!("`{}`: {what}", self.path().display()));
        let method: Method =
            recorded.parse().map_err(|_| corrupt(format!("{METHOD_METADATA_KEY} is `{recorded}`, not a method")))?;
        let a8 =
            match method {
                Method::LlmInt8 => match self.metadata().and_then(|m| m.get(THRESHOLD_METADATA_KEY)) {
                    None => method.activation_quant(),
                    Some(t) => Some(t.parse::<f32>().ok().and_then(|t| ActivationQuant::llm_int8(t).ok()).ok_or_else(
                        || corrupt(format!("{THRESHOLD_METADATA_KEY} is `{t}`, not a finite threshold above 0")),
                    )?),
                },
                m => m.activation_quant(),
            };
        // llm-int8 files carry a weight-only config on purpose (see the README, "What loads
        // where"); any other disagreement means the config or the metadata was edited.
        let agrees = match method {
            Method::LlmInt8 => true,
            _ => configured.is_some() == a8.is_some() || self.quantization_config().is_none(),
        };
        if !agrees {
            return Err(corrupt(format!(
                "{METHOD_METADATA_KEY} says `{method}` but config.json's quantization_config {} activations",
                if configured.is_some() { "quantizes" } else { "does not quantize" }
            )));
        }
        Ok(a8)
    }

    /// The activation scheme `config.json` asks for (checked), from bitsandbytes' config or from
    /// the compressed-tensors config groups, which must agree.
    pub(super) fn config_activations(&self) -> Result<Option<ActivationQuant>> {
        if self.is_bitsandbytes() {
            return self.bnb_activations();
        }
        let Some(groups) = self.quantization_config().and_then(|q| q.get("config_groups")).and_then(Value::as_object)
        else {
            return Ok(None);
        };
        let mut found: Option<(&String, Option<ActivationQuant>)> = None;
        for (name, group) in groups {
            if let Some(o) = group.get("output_activations").filter(|v| !v.is_null()) {
                return Err(Error::Unsupported(format!(
                    "config group `{name}` quantizes output_activations ({o}); only input activations can be \
                     quantized here"
                )));
            }
            let a8 = match group.get("input_activations").filter(|v| !v.is_null()) {
                None => None,
                Some(args) => Some(input_activations(name, args)?),
            };
            match found {
                Some((first, a)) if a != a8 => {
                    return Err(Error::Unsupported(format!(
                        "config groups `{first}` and `{name}` quantize activations differently; a checkpoint with \
                         one activation scheme per layer group is not supported"
                    )));
                }
                Some(_) => {}
                None => found = Some((name, a8)),
            }
        }
        Ok(found.and_then(|(_, a)| a))
    }
}

/// The scheme of one group's `input_activations` (compressed-tensors `QuantizationArgs`): only
/// llmcompressor's W8A8 one runs here, `{"num_bits": 8, "type": "int", "symmetric": true,
/// "strategy": "token", "dynamic": true}`. A missing key takes compressed-tensors' default
/// (8 bits, int, symmetric, static, strategy tensor); anything else is an [`Error::Unsupported`]
/// naming the group and the field.
fn input_activations(group: &str, args: &Value) -> Result<ActivationQuant> {
    // `field` is the path below the group: `input_activations` or `input_activations.<key>`.
    let unsupported = |field: &str, found: &Value, why: &str| {
        Err(Error::Unsupported(format!(
            "config group `{group}`: {field} is {found}; {why} (only dynamic per-token symmetric int8 activations, \
             llmcompressor's W8A8, are supported)"
        )))
    };
    let Some(args) = args.as_object() else {
        return unsupported("input_activations", args, "the quantization arguments must be an object");
    };
    let unsupported =
        |key: &str, found: &Value, why: &str| unsupported(&format!("input_activations.{key}"), found, why);
    let field = |k: &str, default: Value| args.get(k).filter(|v| !v.is_null()).cloned().unwrap_or(default);
    let ty = field("type", Value::from("int"));
    if ty != "int" {
        return unsupported("type", &ty, "float (e.g. FP8) activations cannot run here");
    }
    let bits = field("num_bits", Value::from(8));
    if bits != 8 {
        return unsupported("num_bits", &bits, "activations must be 8-bit");
    }
    let symmetric = field("symmetric", Value::Bool(true));
    if symmetric != true {
        return unsupported("symmetric", &symmetric, "asymmetric (zero-point) activations cannot run here");
    }
    // A missing key is said to be missing, not shown as the default it stands for.
    let missing = |key: &str, default: &str, why: &str| {
        Err(Error::Unsupported(format!(
            "config group `{group}`: input_activations.{key} is missing (compressed-tensors' default is {default}); \
             {why} (only dynamic per-token symmetric int8 activations, llmcompressor's W8A8, are supported)"
        )))
    };
    match args.get("dynamic").filter(|v| !v.is_null()) {
        None => return missing("dynamic", "false", "static (calibrated) activation scales are not supported"),
        Some(d) if *d != true => {
            return unsupported("dynamic", d, "static (calibrated) activation scales are not supported");
        }
        Some(_) => {}
    }
    match args.get("strategy").filter(|v| !v.is_null()) {
        None => return missing("strategy", "\"tensor\"", "activations are quantized with one scale per token"),
        Some(st) if *st != "token" => {
            return unsupported("strategy", st, "activations are quantized with one scale per token");
        }
        Some(_) => {}
    }
    for k in ["group_size", "block_structure"] {
        if let Some(v) = args.get(k).filter(|v| !v.is_null()) {
            return unsupported(k, v, "per-token activations have no groups or blocks");
        }
    }
    Ok(ActivationQuant::per_token())
}
