//! Tuning files: a device's tuned choices ([`Gpu::tune`]) saved as JSON and loaded on a later
//! run, so that the measuring is done once per device.
//!
//! A file holds one adapter's choices: the identity of the adapter that measured them (name,
//! backend, driver and its version, vendor and device ids, whether the kernels reduce with
//! subgroups) and one entry per tuned class. Speeds change with any of these, so a file of
//! another identity, or of another format version, is refused whole
//! ([`Error::TuningMismatch`]) and the application tunes again; a file that is not valid is an
//! [`Error::TuningCorrupt`]. Either leaves the device's table as it was. Entries of a kernel
//! family this version does not know (written by a later version) are skipped with a warning;
//! it knows `linear` (weight-only) and `linear_a8` (int8 activations).

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::gpu::Gpu;
use crate::gpu::tune::{LINEAR_A8_FAMILY, LINEAR_FAMILY, LinearVariant, RowClass, TuneKey};
use crate::{DType, Error, Result};

/// The `format` field of every tuning file.
const FORMAT: &str = "int8-wgpu tuning";
/// The layout version this build writes and reads.
const VERSION: u64 = 1;

impl Gpu {
    /// Saves the tuned choices to `path` as JSON: written to a temporary file beside it, then
    /// renamed over it, so that a reader never sees half a file.
    pub fn save_tuning(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let entries: Vec<Value> = self.tuning().iter().map(|(k, v)| entry_json(k, *v)).collect();
        let doc = json!({ "format": FORMAT, "version": VERSION, "adapter": self.identity(), "entries": entries });
        let text = serde_json::to_string_pretty(&doc).map_err(|e| Error::Gpu(format!("encoding tuning: {e}")))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        let written = std::fs::write(&tmp, text + "\n").map_err(|e| Error::io("writing", &tmp, e));
        match written.and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io("renaming into place", path, e)))
        {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Loads tuned choices saved by [`Gpu::save_tuning`] on this adapter, replacing choices of
    /// the same classes; returns how many were loaded.
    ///
    /// The file names the adapter that measured it (name, backend, driver and its version,
    /// vendor and device ids, whether the kernels reduce with subgroups): speeds change with
    /// each, so a file of another identity or format version is an [`Error::TuningMismatch`]
    /// (tune again and save). A file that is not a valid tuning file is an
    /// [`Error::TuningCorrupt`]. Either way nothing is loaded. Entries of a kernel family this
    /// version does not tune (from a later version) are skipped with a logged warning.
    pub fn load_tuning(&self, path: impl AsRef<Path>) -> Result<usize> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
        let corrupt = |detail: String| Error::TuningCorrupt { path: path.to_path_buf(), detail };
        let doc: Value = serde_json::from_str(&text).map_err(|e| corrupt(format!("not JSON: {e}")))?;
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
        let mut entries = Vec::with_capacity(list.len());
        for (i, e) in list.iter().enumerate() {
            match parse_entry(e).map_err(|d| corrupt(format!("entry {i}: {d}")))? {
                Some(entry) => entries.push(entry),
                None => log::warn!(
                    "int8-wgpu: {}: entry {i} is of a kernel family this version does not tune; skipped",
                    path.display()
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

fn entry_json(k: &TuneKey, v: LinearVariant) -> Value {
    json!({
        "family": k.family,
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
fn parse_entry(e: &Value) -> std::result::Result<Option<(TuneKey, LinearVariant)>, String> {
    let str_of = |name: &str| e.get(name).and_then(Value::as_str).ok_or_else(|| format!("`{name}` is not a string"));
    let bool_of =
        |name: &str| e.get(name).and_then(Value::as_bool).ok_or_else(|| format!("`{name}` is not true or false"));
    let class_of = |name: &str| {
        e.get(name)
            .and_then(Value::as_u64)
            .and_then(|c| usize::try_from(c).ok())
            .filter(|c| c.is_power_of_two())
            .ok_or_else(|| format!("`{name}` is not a power of two"))
    };
    let family = match str_of("family")? {
        LINEAR_FAMILY => LINEAR_FAMILY,
        LINEAR_A8_FAMILY => LINEAR_A8_FAMILY,
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
    let variant = LinearVariant::from_name(variant).ok_or_else(|| format!("unknown variant `{variant}`"))?;
    if variant.is_gemm() && rows <= RowClass::UpTo8 {
        return Err(format!("the GEMM is not a candidate for {} rows", rows.label()));
    }
    if variant.int8_activations() != (family == LINEAR_A8_FAMILY) {
        return Err(format!("`{variant}` is not a variant of the `{family}` family"));
    }
    let key = TuneKey {
        family,
        activation,
        in_class: class_of("in_class")?,
        out_class: class_of("out_class")?,
        rows,
        grouped: bool_of("grouped")?,
        zero_point: bool_of("zero_point")?,
    };
    Ok(Some((key, variant)))
}
