//! Tuning as JSON text: the tuned choices ([`Gpu::tune`]) written out and loaded on a later run,
//! so that the measuring is done once per device; the tuning files of [`Gpu::save_tuning`] hold
//! exactly this text, and a browser can keep it in its storage.
//!
//! The text holds one adapter's choices: the identity of the adapter that measured them (name,
//! backend, driver and its version, vendor and device ids, whether the kernels reduce with
//! subgroups) and one entry per tuned class. Speeds change with any of these, so text of
//! another identity, or of another format version, is refused whole
//! ([`Error::TuningMismatch`]) and the application tunes again; text that is not valid is an
//! [`Error::TuningCorrupt`]. Either leaves the device's table as it was. Entries of a kernel
//! family this version does not know (written by a later version) are skipped with a warning;
//! it knows `linear` (weight-only) and `linear_a8` (int8 activations).

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value, json};

use crate::gpu::Gpu;
use crate::gpu::linear::kernel::LinearKernel;
use crate::gpu::linear::tune_table::{RowClass, TuneClass};
use crate::{DType, Error, Result};

/// The `format` field of all tuning JSON.
const FORMAT: &str = "int8-wgpu tuning";
/// The layout version this build writes and reads.
const VERSION: u64 = 1;
/// The most entries tuning JSON holds: far more classes than any set of models has, and a
/// bound on what hostile text can make the loader do.
const MAX_TUNING_ENTRIES: usize = 4096;
/// The longest tuning JSON read: [`MAX_TUNING_ENTRIES`] entries take about 1 MB.
pub(super) const MAX_TUNING_BYTES: u64 = 4 << 20;
/// The largest `in_class` or `out_class`: a weight has fewer than 2^32 elements (the kernels'
/// 32-bit indexing, `check_numel`), so `in` and `out` are below 2^32 and round up to at most it.
const MAX_CLASS: u64 = 1 << 32;

impl Gpu {
    /// The tuned choices ([`Gpu::tune`]) as JSON text, for [`Gpu::load_tuning_json`] on a later
    /// run: exactly what `Gpu::save_tuning` writes to its file (pretty-printed, ending in a
    /// newline). A table of more than 4096 entries is an [`Error::TooLarge`].
    pub fn tuning_json(&self) -> Result<String> {
        let tuning = self.tuning();
        if tuning.len() > MAX_TUNING_ENTRIES {
            let (size, limit) = (tuning.len() as u64, MAX_TUNING_ENTRIES as u64);
            return Err(Error::TooLarge { what: "the tuning table (entries)".into(), size, limit });
        }
        let entries: Vec<Value> = tuning.iter().map(|(k, v)| entry_json(k, *v)).collect();
        let doc = json!({ "format": FORMAT, "version": VERSION, "adapter": self.identity(), "entries": entries });
        let text = serde_json::to_string_pretty(&doc).map_err(|e| Error::Gpu(format!("encoding tuning: {e}")))?;
        Ok(text + "\n")
    }

    /// Loads tuned choices from JSON text of [`Gpu::tuning_json`] (or a file of
    /// `Gpu::save_tuning`) measured on this adapter, replacing choices of the same classes;
    /// returns how many were loaded.
    ///
    /// The text names the adapter that measured it (name, backend, driver and its version,
    /// vendor and device ids, whether the kernels reduce with subgroups): speeds change with
    /// each, so text of another identity or format version is an [`Error::TuningMismatch`]
    /// (tune again). Text that is not valid tuning JSON (not JSON, an entry malformed or
    /// repeating another's class, more than 4096 entries or 4 MiB) is an
    /// [`Error::TuningCorrupt`]. Either way nothing is loaded; the errors' `path` is empty.
    /// Entries of a kernel family this version does not tune (from a later version) are skipped
    /// with a logged warning.
    pub fn load_tuning_json(&self, text: &str) -> Result<usize> {
        self.load_tuning_text(text.as_bytes(), Path::new(""))
    }

    /// Loads tuning JSON `text`, read from the file at `path` (empty for text given in memory),
    /// as [`Gpu::load_tuning_json`] says.
    pub(super) fn load_tuning_text(&self, text: &[u8], path: &Path) -> Result<usize> {
        let corrupt = |detail: String| Error::TuningCorrupt { path: path.to_path_buf(), detail };
        if text.len() as u64 > MAX_TUNING_BYTES {
            return Err(too_large(path, text.len() as u64));
        }
        let doc: Value = serde_json::from_slice(text).map_err(|e| corrupt(format!("not JSON: {e}")))?;
        if doc.get("format").and_then(Value::as_str) != Some(FORMAT) {
            return Err(corrupt(format!("its `format` is not \"{FORMAT}\"")));
        }
        let mismatch = |detail: String| Error::TuningMismatch { path: path.to_path_buf(), detail };
        match doc.get("version").and_then(Value::as_u64) {
            Some(VERSION) => {}
            Some(v) => return Err(mismatch(format!("it is format version {v}; this build reads version {VERSION}"))),
            None => return Err(corrupt("its `version` is not a whole number".into())),
        }
        let (found, here) = (doc.get("adapter").cloned().unwrap_or(Value::Null), self.identity());
        if found != here {
            return Err(mismatch(format!("it was measured on {found}, this device is {here}")));
        }
        let list = doc.get("entries").and_then(Value::as_array).ok_or_else(|| corrupt("no `entries` list".into()))?;
        if list.len() > MAX_TUNING_ENTRIES {
            return Err(corrupt(format!("it has {} entries; at most {MAX_TUNING_ENTRIES} are read", list.len())));
        }
        let mut entries = Vec::with_capacity(list.len());
        // Each class once: two choices for one class would make the result depend on order.
        let mut seen = HashMap::with_capacity(list.len());
        for (i, e) in list.iter().enumerate() {
            match parse_entry(e).map_err(|d| corrupt(format!("entry {i}: {d}")))? {
                Some(entry) => {
                    if let Some(first) = seen.insert(entry.0, i) {
                        return Err(corrupt(format!("entry {i} repeats the class of entry {first}")));
                    }
                    entries.push(entry)
                }
                None => log::warn!(
                    "int8-wgpu: {}: entry {i} is of a kernel family this version does not tune; skipped",
                    crate::error::tuning_source(path)
                ),
            }
        }
        let loaded = entries.len();
        self.tune_table().extend(entries);
        Ok(loaded)
    }

    /// What identifies the measuring device in a tuning file.
    fn identity(&self) -> Value {
        let mut id = Map::new();
        if let Some(i) = self.adapter_info() {
            id.insert("name".into(), i.name.clone().into());
            id.insert("backend".into(), format!("{:?}", i.backend).into());
            id.insert("driver".into(), i.driver.clone().into());
            id.insert("driver_info".into(), i.driver_info.clone().into());
            id.insert("vendor".into(), i.vendor.into());
            id.insert("device".into(), i.device.into());
        }
        id.insert("subgroup_reductions".into(), self.uses_subgroup_reductions().into());
        Value::Object(id)
    }
}

/// The error of tuning JSON (from `path`, empty for text) of `size` bytes, over [`MAX_TUNING_BYTES`].
pub(super) fn too_large(path: &Path, size: u64) -> Error {
    let detail = format!("it is {size} bytes; tuning files are at most {MAX_TUNING_BYTES}");
    Error::TuningCorrupt { path: path.to_path_buf(), detail }
}

fn entry_json(k: &TuneClass, v: LinearKernel) -> Value {
    json!({
        "family": k.family(),
        "activation": k.activation.to_string(),
        "in_class": k.in_class,
        "out_class": k.out_class,
        "rows": k.rows.label(),
        "grouped": k.grouped,
        "zero_point": k.zero_point,
        "variant": v.to_string(),
    })
}

/// One entry; `Ok(None)` for a family this version does not know.
fn parse_entry(e: &Value) -> std::result::Result<Option<(TuneClass, LinearKernel)>, String> {
    let str_of = |name: &str| e.get(name).and_then(Value::as_str).ok_or_else(|| format!("`{name}` is not a string"));
    let bool_of =
        |name: &str| e.get(name).and_then(Value::as_bool).ok_or_else(|| format!("`{name}` is not true or false"));
    let class_of = |name: &str| {
        e.get(name)
            .and_then(Value::as_u64)
            .filter(|c| c.is_power_of_two() && *c <= MAX_CLASS)
            .and_then(|c| usize::try_from(c).ok())
            .ok_or_else(|| format!("`{name}` is not a power of two from 1 to 2^32"))
    };
    let (family, a8) = match str_of("family")? {
        "linear" => ("linear", false),
        "linear_a8" => ("linear_a8", true),
        _ => return Ok(None),
    };
    let activation = match str_of("activation")? {
        "f32" => DType::F32,
        "f16" => DType::F16,
        "bf16" => DType::BF16,
        other => return Err(format!("unknown activation dtype `{other}`")),
    };
    let rows = str_of("rows")?;
    let rows = RowClass::from_label(rows).ok_or_else(|| format!("unknown row class `{rows}`"))?;
    let variant = str_of("variant")?;
    let variant: LinearKernel = variant.parse().map_err(|_| format!("unknown variant `{variant}`"))?;
    if variant.is_gemm() && rows <= RowClass::UpTo8 {
        return Err(format!("the GEMM is not a candidate for {} rows", rows.label()));
    }
    if variant.is_a8() != a8 {
        return Err(format!("`{variant}` is not a variant of the `{family}` family"));
    }
    let (in_class, out_class) = (class_of("in_class")?, class_of("out_class")?);
    // in · out < 2^32, and each class is below twice its dimension.
    if (in_class as u64).saturating_mul(out_class as u64) > 2 * MAX_CLASS {
        return Err(format!(
            "no weight of fewer than 2^32 elements has `in_class` {in_class} and `out_class` {out_class}"
        ));
    }
    let key = TuneClass {
        a8,
        activation,
        in_class,
        out_class,
        rows,
        grouped: bool_of("grouped")?,
        zero_point: bool_of("zero_point")?,
    };
    Ok(Some((key, variant)))
}
