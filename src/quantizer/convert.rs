//! Converting the checkpoint into the run's temporary folder: each safetensors file rewritten
//! with its planned layers quantized (tensors in natural name order, the method recorded in the
//! metadata), then the shard index and `config.json` with its `quantization_config`.
//!
//! Files are streamed. Every output file's header is written first (the selection fixes each
//! tensor's dtype and shape); then each tensor is written at its offset as soon as it is ready,
//! so no file is ever held in memory. Tensors are read from the input one at a time (copies in
//! windows of `tensor_job.rs`'s `COPY_WINDOW`) with positioned reads, each worker into one buffer it reuses, never
//! through a memory map (a map faults when another program truncates the file). Worker threads
//! take the tensors in order, several at once: each layer in one pass over its rows
//! (`one_pass.rs`: ints, stored form, error metrics); with a GPU, the calling thread quantizes the
//! next layers on it while the workers finish the ones before. Files are byte-identical whatever
//! the backend or the number of threads.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::output::TmpDir;
use super::tensor_job::{Job, layer_shape};
use super::{Backend, LayerReport, Progress, Quantizer, Selection};
use crate::checkpoint::{
    self, CONFIG_FILE, Checkpoint, INDEX_FILE, METHOD_METADATA_KEY, MODEL_FILE, SafetensorsWriter,
    THRESHOLD_METADATA_KEY, TensorInfo, TensorSpec,
};
use crate::{Error, Result};

/// What the safetensors files written hold.
pub(super) struct Written {
    /// One report per quantized layer, in the order they were written.
    pub(super) layers: Vec<LayerReport>,
    /// Bytes of all tensors written.
    pub(super) total_after: usize,
    /// The output file of each tensor written, for the shard index.
    pub(super) weight_map: BTreeMap<String, String>,
}

impl Quantizer {
    /// Writes every safetensors file of `ckpt` into `tmp` with the planned layers quantized on
    /// `backend`, calling `progress` before each layer and once at the end.
    pub(super) fn write_tensors(
        &self,
        ckpt: &Checkpoint,
        selection: &Selection,
        backend: &Backend,
        tmp: &TmpDir,
        progress: &mut impl FnMut(Progress<'_>),
    ) -> Result<Written> {
        let targets: BTreeSet<&str> = selection.targets.iter().map(String::as_str).collect();
        let mut written = Written { layers: Vec::new(), total_after: 0, weight_map: BTreeMap::new() };
        let (mut jobs, mut files, mut layers) = (Vec::new(), Vec::new(), 0);
        for i in 0..ckpt.files().len() {
            // A single file is written as `model.safetensors` whatever its name.
            let file_name = if ckpt.is_sharded() {
                ckpt.files()[i].file_name().expect("shard files have names").to_string_lossy().into_owned()
            } else {
                MODEL_FILE.to_string()
            };
            let mut names: Vec<(&str, &TensorInfo)> = ckpt.tensors().filter(|(_, t)| t.file == i).collect();
            names.sort_by(|a, b| checkpoint::natural_cmp(a.0, b.0));
            let mut specs = Vec::new();
            for (name, info) in names {
                let mut layer = None;
                if targets.contains(name) {
                    let p = name.trim_end_matches(".weight");
                    let dtype = info.float_dtype().expect("targets are float");
                    let format = checkpoint::pack_format(self.method);
                    for (suffix, dtype, shape) in
                        checkpoint::layer_specs(layer_shape(info), self.scheme, dtype, format)?
                    {
                        specs.push(TensorSpec { name: format!("{p}.{suffix}"), dtype, shape });
                    }
                    layer = Some((p, layers));
                    layers += 1;
                } else {
                    specs.push(TensorSpec { name: name.to_string(), dtype: info.dtype, shape: info.shape.clone() });
                }
                jobs.push(Job { name, info, out: files.len(), layer });
            }
            let mut metadata = ckpt.file_metadata(i).cloned().unwrap_or_default();
            metadata.entry("format".into()).or_insert_with(|| "pt".into());
            metadata.insert(METHOD_METADATA_KEY.into(), self.method.to_string());
            if let Some(t) = self.activation_quant()?.and_then(|a| a.outlier_threshold()) {
                // Rust's shortest round-trip form: parsing it gives back the same f32.
                metadata.insert(THRESHOLD_METADATA_KEY.into(), t.to_string());
            }
            tmp.ensure_live()?;
            let writer = SafetensorsWriter::create(&tmp.path().join(&file_name), &specs, &metadata)?;
            written.total_after += writer.data_len();
            for s in specs {
                written.weight_map.insert(s.name, file_name.clone());
            }
            files.push(writer);
        }
        written.layers = self.run_jobs(ckpt, &jobs, &files, backend, tmp, progress)?;
        tmp.ensure_live()?;
        for f in files {
            f.finish()?;
        }
        progress(Progress { done: written.layers.len(), total: written.layers.len(), layer: None });
        Ok(written)
    }

    /// Writes the folder's JSON files into `tmp`: the shard index of a sharded checkpoint, and
    /// `config.json` (when the input has one) with the `quantization_config` of this run.
    pub(super) fn write_json_files(
        &self,
        ckpt: &Checkpoint,
        selection: &Selection,
        tmp: &TmpDir,
        written: &Written,
    ) -> Result<()> {
        tmp.ensure_live()?;
        if ckpt.is_sharded() {
            let index = json!({ "metadata": { "total_size": written.total_after }, "weight_map": written.weight_map });
            checkpoint::write_json(&tmp.path().join(INDEX_FILE), &index)?;
        }
        if let (Some(dir), Some(config)) = (ckpt.folder(), ckpt.config()) {
            let mut config = config.clone();
            let Some(obj) = config.as_object_mut() else {
                return Err(Error::Corrupt(format!("`{}` is not a JSON object", dir.join(CONFIG_FILE).display())));
            };
            let q = checkpoint::quantization_config(self.scheme, &selection.ignore, self.method)?;
            obj.insert("quantization_config".into(), q);
            checkpoint::write_json(&tmp.path().join(CONFIG_FILE), &config)?;
        }
        Ok(())
    }
}
