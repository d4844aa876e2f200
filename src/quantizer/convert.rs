//! Converting the checkpoint into the run's temporary folder: each safetensors file rewritten
//! with its planned layers quantized (tensors in natural name order, the method recorded in the
//! metadata), then the shard index and `config.json` with its `quantization_config`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::eval::{output_error, seed_of};
use super::output::TmpDir;
use super::{Backend, LayerReport, Plan, Progress, Quantizer};
use crate::checkpoint::{
    self, CONFIG_FILE, Checkpoint, INDEX_FILE, METHOD_METADATA_KEY, MODEL_FILE, OutTensor, TensorInfo,
};
use crate::{DType, Element, Error, QuantScheme, QuantizedTensor, Result, reference};

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
        plan: &Plan,
        backend: &Backend,
        tmp: &TmpDir,
        progress: &mut impl FnMut(Progress<'_>),
    ) -> Result<Written> {
        let targets = plan.targets.iter().map(String::as_str).collect();
        let run = Conversion { quantizer: self, ckpt, targets, backend, tmp };
        let mut written = Written { layers: Vec::new(), total_after: 0, weight_map: BTreeMap::new() };
        for i in 0..ckpt.files().len() {
            run.write_file(i, &mut written, progress)?;
        }
        progress(Progress { done: written.layers.len(), total: run.targets.len(), layer: None });
        Ok(written)
    }

    /// Writes the folder's JSON files into `tmp`: the shard index of a sharded checkpoint, and
    /// `config.json` (when the input has one) with the `quantization_config` of this run.
    pub(super) fn write_json_files(
        &self,
        ckpt: &Checkpoint,
        plan: &Plan,
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
            obj.insert("quantization_config".into(), checkpoint::quantization_config(self.scheme, &plan.ignore)?);
            checkpoint::write_json(&tmp.path().join(CONFIG_FILE), &config)?;
        }
        Ok(())
    }

    /// Quantizes one float weight (its bytes as stored) and encodes it as compressed-tensors
    /// tensors, scales in the weight's dtype; the report measures the stored tensor.
    fn quantize_layer(
        &self,
        backend: &Backend,
        layer: &str,
        info: &TensorInfo,
        bytes: &[u8],
    ) -> Result<(LayerReport, Vec<(&'static str, OutTensor<'static>)>)> {
        let dtype = info.float_dtype().expect("targets are float");
        let shape = [info.shape[0], info.shape[1]];
        let (q, w) = match dtype {
            DType::F32 => quantize_as::<f32>(backend, bytes, shape, self.scheme)?,
            DType::F16 => quantize_as::<half::f16>(backend, bytes, shape, self.scheme)?,
            DType::BF16 => quantize_as::<half::bf16>(backend, bytes, shape, self.scheme)?,
        };
        let q = checkpoint::exported(&q, dtype)?;
        let tensors = checkpoint::layer_tensors(&q, dtype)?;
        let err = q.error(&w)?;
        let (rel, max) = match self.eval_rows {
            0 => (None, None),
            rows => {
                let (r, m) = output_error(&q, &w, rows, seed_of(layer))?;
                (Some(r), Some(m))
            }
        };
        let report = LayerReport {
            name: layer.to_string(),
            shape,
            dtype,
            scheme: self.scheme,
            bytes_before: bytes.len(),
            bytes_after: tensors.iter().map(|(_, t)| t.data.len()).sum(),
            mse: err.mse,
            max_abs: err.max_abs,
            output_rel_error: rel,
            output_max_abs: max,
        };
        Ok((report, tensors))
    }
}

/// One run's conversion: what it reads, which tensors it quantizes and on what, where it writes.
struct Conversion<'a> {
    quantizer: &'a Quantizer,
    ckpt: &'a Checkpoint,
    targets: BTreeSet<&'a str>,
    backend: &'a Backend,
    tmp: &'a TmpDir,
}

impl Conversion<'_> {
    /// Writes file `i` of the checkpoint, quantizing the targets, and adds what it wrote to
    /// `written`. A single file is written as `model.safetensors` whatever its name.
    fn write_file(&self, i: usize, written: &mut Written, progress: &mut impl FnMut(Progress<'_>)) -> Result<()> {
        let Conversion { quantizer, ckpt, targets, backend, tmp } = self;
        let reader = ckpt.open_reader(i)?;
        let file_name = if ckpt.is_sharded() {
            ckpt.files()[i].file_name().expect("shard files have names").to_string_lossy().into_owned()
        } else {
            MODEL_FILE.to_string()
        };
        let mut out = Vec::new();
        let mut names: Vec<(&str, &TensorInfo)> = ckpt.tensors().filter(|(_, t)| t.file == i).collect();
        names.sort_by(|a, b| checkpoint::natural_cmp(a.0, b.0));
        let maps = names
            .iter()
            .map(|(_, info)| ckpt.map_tensor(&reader, info, 0..info.nbytes()))
            .collect::<Result<Vec<_>>>()?;
        for ((name, info), bytes) in names.into_iter().zip(&maps) {
            if targets.contains(name) {
                let layer = name.trim_end_matches(".weight");
                progress(Progress { done: written.layers.len(), total: targets.len(), layer: Some(layer) });
                let (report, tensors) =
                    quantizer.quantize_layer(backend, layer, info, bytes).map_err(|e| e.in_tensor(name))?;
                for (suffix, t) in tensors {
                    out.push((format!("{layer}.{suffix}"), t));
                }
                written.layers.push(report);
            } else {
                out.push((
                    name.to_string(),
                    OutTensor { dtype: info.dtype, shape: info.shape.clone(), data: (&bytes[..]).into() },
                ));
            }
        }
        for (name, t) in &out {
            written.weight_map.insert(name.clone(), file_name.clone());
            written.total_after += t.data.len();
        }
        let mut metadata = ckpt.file_metadata(i).cloned().unwrap_or_default();
        metadata.entry("format".into()).or_insert_with(|| "pt".into());
        metadata.insert(METHOD_METADATA_KEY.into(), quantizer.method.to_string());
        tmp.ensure_live()?;
        checkpoint::write_safetensors(&tmp.path().join(&file_name), out, Some(metadata))
    }
}

/// Quantizes `bytes` read as `T`, and returns the weight widened to f32 for the error metrics.
fn quantize_as<T: Element>(
    backend: &Backend,
    bytes: &[u8],
    shape: [usize; 2],
    scheme: QuantScheme,
) -> Result<(QuantizedTensor, Vec<f32>)> {
    let x: Vec<T> = bytemuck::pod_collect_to_vec(bytes);
    let q = match backend {
        Backend::Gpu(g) => g.quantize(&x, &shape, scheme)?.to_host()?,
        Backend::Cpu => reference::quantize(&x, &shape, scheme)?,
    };
    Ok((q, x.iter().map(|v| v.to_f32()).collect()))
}
