//! Tuning files: the tuned choices ([`Gpu::tune`]) saved as JSON and loaded on a later run, so
//! that the measuring is done once per device.
//!
//! A file holds one adapter's choices: the identity of the adapter that measured them (name,
//! backend, driver and its version, vendor and device ids, whether the kernels reduce with
//! subgroups) and one entry per tuned class. Speeds change with any of these, so a file of
//! another identity, or of another format version, is refused whole
//! ([`Error::TuningMismatch`]) and the application tunes again; a file that is not valid is an
//! [`Error::TuningCorrupt`]. Either leaves the device's table as it was. Entries of a kernel
//! family this version does not know (written by a later version) are skipped with a warning;
//! it knows `linear` (weight-only) and `linear_a8` (int8 activations).
//!
//! Files are read as the checkpoint reader reads its files: regular files only, opened without
//! blocking, and no longer than [`MAX_FILE_BYTES`]; so a FIFO or `/dev/zero` is refused at once.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value, json};

use crate::gpu::Gpu;
use crate::gpu::linear::kernel::LinearKernel;
use crate::gpu::linear::tune_table::{RowClass, TuneClass};
use crate::regular_file::{not_regular, open_regular};
use crate::{DType, Error, Result};

/// The `format` field of every tuning file.
const FORMAT: &str = "int8-wgpu tuning";
/// The layout version this build writes and reads.
const VERSION: u64 = 1;
/// The most entries a tuning file holds: far more classes than any set of models has, and a
/// bound on what a hostile file can make the loader do.
const MAX_TUNING_ENTRIES: usize = 4096;
/// The largest tuning file read: [`MAX_TUNING_ENTRIES`] entries take about 1 MB.
const MAX_FILE_BYTES: u64 = 4 << 20;
/// The largest `in_class` or `out_class`: a weight has fewer than 2^32 elements (the kernels'
/// 32-bit indexing, `check_numel`), so `in` and `out` are below 2^32 and round up to at most it.
const MAX_CLASS: u64 = 1 << 32;
/// Numbers the temporary files of this process's saves, so that concurrent saves (threads of
/// one process) never write the same temporary file.
static SAVES: AtomicU64 = AtomicU64::new(0);

impl Gpu {
    /// Saves the tuned choices to `path` as JSON: written to a temporary file beside it (a name
    /// of its own per call, so concurrent saves never share one), flushed to disk, then renamed
    /// over it, so that a reader never sees half a file and the last rename wins whole. Only a
    /// regular file at `path` is replaced: anything else there (a folder, FIFO, device, symbolic
    /// link) is an [`Error::NotRegularFile`].
    pub fn save_tuning(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let tuning = self.tuning();
        if tuning.len() > MAX_TUNING_ENTRIES {
            let (size, limit) = (tuning.len() as u64, MAX_TUNING_ENTRIES as u64);
            return Err(Error::TooLarge { what: "the tuning table (entries)".into(), size, limit });
        }
        let entries: Vec<Value> = tuning.iter().map(|(k, v)| entry_json(k, *v)).collect();
        let doc = json!({ "format": FORMAT, "version": VERSION, "adapter": self.identity(), "entries": entries });
        let text = serde_json::to_string_pretty(&doc).map_err(|e| Error::Gpu(format!("encoding tuning: {e}")))?;
        // Only a regular file is replaced: the rename would put a file in place of a FIFO, a
        // device (`/dev/null` as root) or a link (leaving its target as it was).
        match std::fs::symlink_metadata(path) {
            Ok(m) if !m.is_file() => return Err(not_regular(path, m.file_type())),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io("writing", path, e)),
            _ => {}
        }
        let Some(name) = path.file_name() else {
            let e = std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path does not end in a file name");
            return Err(Error::io("writing", path, e));
        };
        // A name no other call or process uses: a process-wide counter, the pid, and random
        // bits (containers on one volume often share pid 1); a temporary file only this call
        // created is removed on failure.
        let (tmp, mut file) = loop {
            use std::hash::{BuildHasher, Hasher};
            let n = SAVES.fetch_add(1, Ordering::Relaxed);
            let random = std::hash::RandomState::new().build_hasher().finish();
            let tmp = path.with_file_name(format!(
                ".{}.tmp-{}-{n}-{random:016x}",
                name.to_string_lossy(),
                std::process::id()
            ));
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp) {
                Ok(f) => break (tmp, f),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n % 64 != 63 => continue,
                Err(e) => return Err(Error::io("creating", &tmp, e)),
            }
        };
        let written = file
            .write_all((text + "\n").as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io("writing", &tmp, e))
            .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io("renaming into place", path, e)));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// Loads tuned choices saved by [`Gpu::save_tuning`] on this adapter, replacing choices of
    /// the same classes; returns how many were loaded.
    ///
    /// The file names the adapter that measured it (name, backend, driver and its version,
    /// vendor and device ids, whether the kernels reduce with subgroups): speeds change with
    /// each, so a file of another identity or format version is an [`Error::TuningMismatch`]
    /// (tune again and save). A file that is not a valid tuning file (not JSON, an entry
    /// malformed or repeating another's class, more than 4096 entries or 4 MiB) is an
    /// [`Error::TuningCorrupt`]. A path that is not a regular file (nor a link to one) is an
    /// [`Error::NotRegularFile`]: a FIFO or a device is refused without reading it, so the call
    /// never blocks. Either way nothing is loaded.
    /// Entries of a kernel family this version does not tune (from a later version) are skipped
    /// with a logged warning.
    pub fn load_tuning(&self, path: impl AsRef<Path>) -> Result<usize> {
        let path = path.as_ref();
        let corrupt = |detail: String| Error::TuningCorrupt { path: path.to_path_buf(), detail };
        let text = read_limited(path)?;
        let doc: Value = serde_json::from_slice(&text).map_err(|e| corrupt(format!("not JSON: {e}")))?;
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

/// Reads a tuning file: a regular file (opened without blocking) of at most [`MAX_FILE_BYTES`].
fn read_limited(path: &Path) -> Result<Vec<u8>> {
    let corrupt = |detail: String| Error::TuningCorrupt { path: path.to_path_buf(), detail };
    // Not "corrupt": a folder or `/dev/zero` is not to be deleted and tuned again.
    let (file, len) = open_regular(path)?;
    let too_large = |size: u64| corrupt(format!("it is {size} bytes; tuning files are at most {MAX_FILE_BYTES}"));
    if len > MAX_FILE_BYTES {
        return Err(too_large(len));
    }
    // The file may grow while it is read: read one byte past the limit at most.
    let mut text = Vec::with_capacity(len as usize);
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut text).map_err(|e| Error::io("reading", path, e))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(text.len() as u64));
    }
    Ok(text)
}
