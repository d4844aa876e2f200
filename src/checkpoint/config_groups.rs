//! Which `config_groups` entry of a compressed-tensors `quantization_config` quantizes a layer,
//! and whether its `weights` arguments are ones this crate runs and that its tensors can be:
//! targets and `ignore` entries match as compressed-tensors matches them (a layer name, `re:`
//! and a regex matched from the name's start, or the module class, always `Linear` here).

use serde_json::Value;

use super::Checkpoint;
use crate::{Error, Granularity, Result};

/// A layer's config group, read and checked.
pub(super) struct LayerGroup<'a> {
    /// The group's name (`group_0`).
    pub(super) name: &'a str,
    /// Its `weights` arguments.
    pub(super) weights: &'a Value,
    /// The granularity its `strategy` and `group_size` declare.
    pub(super) granularity: Granularity,
}

/// Whether target (or ignore entry) `t` names layer `p`: its name, a `re:` regex matching from
/// the name's start (Python's `re.match`), or its class, which is `Linear` for every layer here.
fn matches(t: &str, p: &str) -> Result<bool> {
    if let Some(re) = t.strip_prefix("re:") {
        let re = regex::Regex::new(&format!("^(?:{re})")).map_err(|e| {
            Error::Unsupported(format!("quantization_config target `{t}` is a regex this crate cannot read: {e}"))
        })?;
        return Ok(re.is_match(p));
    }
    Ok(t == p || t == "Linear")
}

/// The strings of a `targets` or `ignore` list; anything else there is a corrupt config.
fn names<'a>(v: Option<&'a Value>, what: &str) -> Result<Vec<&'a str>> {
    match v {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|t| {
                t.as_str().ok_or_else(|| Error::Corrupt(format!("quantization_config {what} holds {t}, not a name")))
            })
            .collect(),
        Some(v) => Err(Error::Corrupt(format!("quantization_config {what} is {v}, not a list of names"))),
    }
}

impl Checkpoint {
    /// The config group that quantizes layer `p` (`None` without a compressed-tensors config).
    /// Errors: [`Error::Unsupported`] for a float format or weights, or a strategy this crate
    /// cannot run; [`Error::Corrupt`] when `ignore` lists the layer, no group or two groups with
    /// different weights target it, or its `group_size` is not one its strategy takes.
    pub(super) fn layer_group(&self, p: &str) -> Result<Option<LayerGroup<'_>>> {
        let Some(q) = self.quantization_config() else { return Ok(None) };
        let Some(groups) = q.get("config_groups").and_then(Value::as_object) else { return Ok(None) };
        if let Some(f) = q.get("format").and_then(Value::as_str).filter(|f| f.starts_with("float")) {
            return Err(Error::Unsupported(format!(
                "quantization_config format `{f}` stores float (e.g. FP8) weights; only int8 weights load here"
            )));
        }
        let corrupt =
            |why: String| Err(Error::Corrupt(format!("layer `{p}`: config.json's quantization_config {why}")));
        for i in names(q.get("ignore"), "ignore")? {
            if matches(i, p)? {
                return corrupt(format!(
                    "lists it in `ignore` (`{i}`), but it carries quantized tensors; the config and the tensors \
                     disagree, so the file was edited or is corrupt"
                ));
            }
        }
        let mut found: Option<(&str, &Value)> = None;
        for (name, g) in groups {
            let mut hit = false;
            for t in names(g.get("targets"), &format!("group `{name}` targets"))? {
                hit |= matches(t, p)?;
            }
            let Some(w) = g.get("weights").filter(|w| hit && !w.is_null()) else { continue };
            match found {
                Some((first, fw)) if fw != w => {
                    return corrupt(format!(
                        "targets it from groups `{first}` and `{name}`, whose weights differ; a layer is quantized \
                         by one group"
                    ));
                }
                Some(_) => {}
                None => found = Some((name, w)),
            }
        }
        let Some((name, weights)) = found else {
            return corrupt(
                "has no config group whose targets name it, but it carries quantized tensors; the file was edited \
                 or is corrupt"
                    .into(),
            );
        };
        let granularity = group_granularity(p, name, weights)?;
        Ok(Some(LayerGroup { name, weights, granularity }))
    }
}

/// The granularity group `g`'s `weights` declare, with the checks of its `type`, `strategy` and
/// `group_size`.
fn group_granularity(p: &str, g: &str, w: &Value) -> Result<Granularity> {
    let field = |k: &str| w.get(k).filter(|v| !v.is_null());
    let unsupported = |k: &str, v: &Value, why: &str| {
        Err(Error::Unsupported(format!("config group `{g}`: weights.{k} is {v}; {why}")))
    };
    if let Some(t) = field("type").filter(|t| *t != "int") {
        return unsupported("type", t, "only int weights load here (float, e.g. FP8, weights do not)");
    }
    // A value of another JSON type than compressed-tensors' would be read as its default here.
    let mistyped = |k: &str, v: &Value, want: &str| {
        Err(Error::Corrupt(format!(
            "layer `{p}`: config group `{g}`: weights.{k} is {v}, not {want}, so the file was edited or is corrupt"
        )))
    };
    if let Some(b) = field("num_bits").filter(|b| !b.is_u64()) {
        return mistyped("num_bits", b, "an integer");
    }
    if let Some(s) = field("symmetric").filter(|s| !s.is_boolean()) {
        return mistyped("symmetric", s, "true or false");
    }
    let size = field("group_size");
    let bad_size = |why: &str| {
        Err(Error::Corrupt(format!(
            "layer `{p}`: config group `{g}`: weights.group_size is {}; {why}, so the file was edited or is corrupt",
            size.unwrap_or(&Value::Null)
        )))
    };
    // compressed-tensors' default: groups when a group size is given, else one scale per tensor.
    let strategy = match field("strategy") {
        Some(s) => s.as_str().map(str::to_string).unwrap_or_else(|| s.to_string()),
        None if size.is_some() => "group".into(),
        None => "tensor".into(),
    };
    match strategy.as_str() {
        "tensor" if size.is_none() => Ok(Granularity::PerTensor),
        // -1 is compressed-tensors' old spelling of one group per row.
        "channel" if size.is_none() || size.and_then(Value::as_i64) == Some(-1) => {
            Ok(Granularity::PerChannel { axis: 0 })
        }
        "tensor" | "channel" => bad_size(&format!("strategy `{strategy}` has no groups")),
        "group" => match size.filter(|s| s.is_u64()).and_then(Value::as_u64).filter(|&s| s > 0) {
            Some(s) => match usize::try_from(s) {
                Ok(size) => Ok(Granularity::PerGroup { size }),
                Err(_) => bad_size("strategy `group` needs a positive integer group size"),
            },
            None => bad_size("strategy `group` needs a positive integer group size"),
        },
        _ => unsupported(
            "strategy",
            field("strategy").unwrap_or(&Value::Null),
            "only `tensor`, `channel` and `group` int8 weights load here",
        ),
    }
}
