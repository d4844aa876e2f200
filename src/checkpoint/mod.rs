//! Safetensors checkpoints: reading a single file, a folder or a sharded folder; the
//! compressed-tensors `pack-quantized` and `int-quantized` layouts; loading quantized layers back
//! onto the GPU, with the activation scheme the checkpoint records.
//!
//! # The layout
//!
//! A quantized linear layer `P` (whose float weight was `P.weight`, `[out, in]`) is stored as
//! the tensors that vLLM and transformers read for `format: "pack-quantized"` (the weight-only
//! methods `w8a16`, `w8a32`, and `llm-int8`):
//!
//! | tensor | dtype | shape | content |
//! |---|---|---|---|
//! | `P.weight_packed` | I32 | `[out, ceil(in/4)]` | byte `j` of word `w` = `q[4w+j] + 128` (i.e. `q ^ 0x80`), rows zero-padded |
//! | `P.weight_shape` | I64 | `[2]` | `[out, in]` |
//! | `P.weight_scale` | the weight's dtype | `[out, 1]` per channel, `[out, in/G]` per group, `[1]` per tensor | scales |
//! | `P.weight_zero_point` | I32 / I8 | `[ceil(out/4), n_groups]` packed along dim 0 (`zp + 128`); per tensor I8 `[1]` | asymmetric only |
//!
//! `w8a8` is written as `format: "int-quantized"`, as llmcompressor writes W8A8 and as vLLM
//! requires for int8 activations: `P.weight` I8 `[out, in]` (the ints themselves) and
//! `P.weight_scale` `[out, 1]` (or `[1]`).
//!
//! Every other tensor is copied byte for byte. `config.json` gains a `quantization_config`: the
//! keys compressed-tensors parsers expect for 8-bit int weights, plus the cheap ones
//! llmcompressor writes (`version`, and `zp_dtype` for asymmetric schemes); for `w8a8`, the
//! dynamic per-token `input_activations` of llmcompressor's W8A8 preset. The method (and the
//! LLM.int8() threshold) is recorded in each file's `__metadata__` (`int8_wgpu.method`,
//! `int8_wgpu.outlier_threshold`).
//!
//! Scales are computed in f32 and exported in the weight's dtype (round to nearest even). For
//! f32 checkpoints the file therefore holds exactly the in-memory quantization; for f16/bf16
//! checkpoints the ints are identical and each scale is the in-memory scale rounded to that
//! dtype ([`exported`] gives the tensor exactly as it is read back).
//!
//! # Loading
//!
//! `Checkpoint::open` reads the headers only; tensor data is read a tensor at a time when asked
//! for. [`Checkpoint::from_bytes`] reads a file held in memory (a browser's download), checked
//! the same way. [`Checkpoint::linear`] builds a [`QuantizedLinear`](crate::QuantizedLinear) from
//! `P.weight_packed` (ours or any compressed-tensors 8-bit checkpoint, `pack-quantized` or
//! `int-quantized`) or from bitsandbytes' `P.weight` and `P.SCB`. Packed words go to the GPU as
//! stored; the kernels read the offset-binary bytes directly. Each tensor it reads is held only
//! while it is uploaded, so a model loaded onto the GPU leaves no copy of its weights in host memory.
//! Layers quantize their activations as [`Checkpoint::activation_quant`] says. A layer's tensors
//! must agree with the one config group that targets it (its strategy and group size with the
//! scale shape, `weight_shape` with the packed ints, zero padding past `in`, zero points that are all
//! zero under `symmetric: true`, as compressed-tensors saved them before May 2024, and are then
//! ignored): a contradiction is an
//! [`Error::Corrupt`], never a silent reading of one side.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_json::Value;

// One file per job. Here: `Checkpoint`, opened from the files `folder` finds, and its tensors.
/// bitsandbytes 8-bit layers (`weight` + `SCB`) and their `quantization_config`.
mod bitsandbytes;
/// Reading the compressed-tensors tensors of a quantized layer.
mod compressed_tensors;
/// Which config group quantizes a layer, and its checked weight arguments.
mod config_groups;
/// The text of config.json: a JSON object, of bounded size.
mod config_json;
/// Encoding a quantized layer into compressed-tensors tensors.
// The encoders and writers below are the quantizer's (behind `files`); they write no file
// themselves, so they stay built (and unit-tested) without it.
#[cfg_attr(not(feature = "files"), allow(dead_code))]
mod encode;
/// What a checkpoint path names: file, model.safetensors or shards + index, config.json.
#[cfg(feature = "files")]
mod folder;
#[cfg(test)]
mod from_bytes_tests;
/// Hints for names a checkpoint does not hold.
mod hints;
/// Loading quantized layers onto the GPU, with the recorded method's activation dtype.
mod load;
/// The method a checkpoint records and how its activations are quantized (W8A8, LLM.int8(), none).
mod method;
/// The order names are listed and written in.
#[cfg_attr(not(feature = "files"), allow(dead_code))]
mod natural_order;
/// How a quantized layer's ints are stored (formats, offset binary).
mod pack_format;
/// The `quantization_config` of config.json.
#[cfg_attr(not(feature = "files"), allow(dead_code))]
mod quantization_config;
/// Positioned reads of a checkpoint file's bytes into reused buffers.
#[cfg(feature = "files")]
mod reader;
/// The safetensors header, read and checked; the container's dtypes.
mod safetensors;
/// Where a safetensors file's data is read from: memory or a file.
mod source;
/// Writing files deterministically.
#[cfg(feature = "files")]
mod writer;

// The product: the checkpoint, what it says about its tensors and quantized layers.
pub use self::compressed_tensors::QuantizedLayerInfo;
pub use self::pack_format::PackFormat;
// Public only while tests/checkpoint.rs and tests/quantize_int8_activations.rs call it (issue 18:
// crate-private after the merge, their checks as unit tests).
pub use self::encode::exported;
pub use self::safetensors::{TensorDtype, TensorInfo};

// Crate-private: what the quantizer and the files here share.
#[cfg(feature = "files")]
pub(crate) use self::encode::{export_scale, layer_bytes, layer_specs, layer_tensors, pack_row};
#[cfg(feature = "files")]
pub(crate) use self::folder::{CONFIG_FILE, INDEX_FILE, MODEL_FILE};
#[cfg(feature = "files")]
pub(crate) use self::method::METHOD_METADATA_KEY;
#[cfg(feature = "files")]
pub(crate) use self::method::THRESHOLD_METADATA_KEY;
#[cfg(feature = "files")]
pub(crate) use self::natural_order::natural_cmp;
#[cfg(feature = "files")]
pub(crate) use self::quantization_config::{pack_format, quantization_config};
#[cfg(feature = "files")]
pub(crate) use self::reader::{FileReader, ReadBuf};
pub(crate) use self::safetensors::{f32_to_bytes, floats_to_f32, to_dtype, to_tensor_dtype};
pub(crate) use self::source::as_slice_of;
use self::source::{SafetensorsFile, TensorData};
#[cfg(feature = "files")]
pub(crate) use self::writer::{SafetensorsWriter, TensorSpec, write_json};

use crate::{Error, Result};

/// What messages (and [`Checkpoint::path`]) call the safetensors bytes of a checkpoint in memory.
const BYTES_NAME: &str = "<bytes>";
/// What messages call the `config.json` text of a checkpoint in memory.
const CONFIG_TEXT_NAME: &str = "<config.json text>";

/// A safetensors checkpoint: one file, a folder with `model.safetensors`, or a folder of shards
/// listed by `model.safetensors.index.json`, with the folder's `config.json` when present
/// (`Checkpoint::open`, with the default feature `files`); or one safetensors file in memory,
/// with the text of its `config.json` ([`Checkpoint::from_bytes`]).
///
/// Opening reads and checks every file's header (a truncated or corrupt file is an error here);
/// tensor data is read a tensor at a time (see [`Checkpoint::bytes`] and [`Checkpoint::linear`]),
/// never a file whole. Every file read must be a regular file (or a link to one): a FIFO, socket,
/// device or folder in its place is an error, and never blocks. A file is opened again for its
/// data on first use, checked to be the one whose header was read (same size, same header bytes),
/// and kept open. Its data is read with positioned reads, never memory-mapped: its size is checked
/// again before every read, and a read that comes up short is an error, so a file truncated or
/// extended by another program, even during a read, is an [`Error::Corrupt`], not a crash.
#[derive(Debug)]
pub struct Checkpoint {
    path: PathBuf,
    folder: Option<PathBuf>,
    files: Vec<SafetensorsFile>,
    tensors: BTreeMap<String, TensorInfo>,
    nbytes: usize,
    sharded: bool,
    config: Option<Value>,
    unlisted: Vec<String>,
}

impl Checkpoint {
    /// Opens a checkpoint: a `.safetensors` file, or a folder holding `model.safetensors` or
    /// shards with `model.safetensors.index.json`.
    ///
    /// Errors: [`Error::NotRegularFile`] for a file that is not a regular file;
    /// [`Error::Corrupt`] for a header that is truncated, corrupt (offsets, shapes, sizes that do
    /// not add up) or names a tensor twice, and for a `config.json` that is not a JSON object;
    /// [`Error::Index`] for an index whose `weight_map` is empty or disagrees with the shards, or
    /// a tensor in two shards; [`Error::NotFound`] for a folder without `model.safetensors` or
    /// an index; [`Error::Io`] when a file cannot be read.
    #[cfg(feature = "files")]
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        // The small files first: a bad config.json fails before megabytes of headers are parsed.
        let folder::Located { folder, names, file_paths, weight_map, config } = folder::locate(&path)?;
        let mut files = Vec::new();
        let mut entries: Vec<(String, TensorInfo)> = Vec::new();
        for (i, fp) in file_paths.iter().enumerate() {
            let (file, tensors) = SafetensorsFile::open(fp, i)?;
            entries.extend(tensors);
            files.push(file);
        }
        let entries = sorted_unique(entries, &files)?;
        if let Some(map) = &weight_map {
            folder::check_index(&entries, map, &names)?;
        }
        let nbytes = total_bytes(&path, &entries)?;
        let unlisted = match &folder {
            Some(dir) => folder::unlisted_safetensors(dir, &names)?,
            None => Vec::new(),
        };
        let tensors = entries.into_iter().collect();
        let sharded = weight_map.is_some();
        Ok(Self { path, folder, files, tensors, nbytes, sharded, config, unlisted })
    }

    /// Reads a checkpoint held in memory: the bytes of one safetensors file (a
    /// `model.safetensors` fetched over HTTP, say) and, optionally, the text of its
    /// `config.json`, whose `quantization_config` says how llmcompressor's and bitsandbytes'
    /// layers are quantized (files written by this crate also record it in their metadata).
    ///
    /// The bytes are checked as a file's are, by the same parser (a truncated or corrupt header,
    /// offsets past the end, a name given twice: [`Error::Corrupt`]; a `config_json` that is not
    /// a JSON object: [`Error::Corrupt`]), and every reading method then works as on a file; tensors
    /// are read from the bytes in place. `bytes` is kept as given (a `Vec<u8>`, `Box<[u8]>`,
    /// `Arc<[u8]>` or `&'static [u8]` is not copied). Messages name the bytes `<bytes>` and the
    /// config `<config.json text>`; [`Checkpoint::path`] is `<bytes>`.
    pub fn from_bytes(bytes: impl AsRef<[u8]> + Send + Sync + 'static, config_json: Option<&str>) -> Result<Self> {
        let path = PathBuf::from(BYTES_NAME);
        // The small text first, as a folder's config.json is read before its headers.
        let config = match config_json {
            Some(text) => Some(config_json::parse_config(text.as_bytes(), Path::new(CONFIG_TEXT_NAME))?),
            None => None,
        };
        let (file, entries) = SafetensorsFile::from_bytes(&path, Box::new(bytes))?;
        let files = vec![file];
        let entries = sorted_unique(entries, &files)?;
        let nbytes = total_bytes(&path, &entries)?;
        let tensors = entries.into_iter().collect();
        Ok(Self { path, folder: None, files, tensors, nbytes, sharded: false, config, unlisted: Vec::new() })
    }

    /// The `.safetensors` files in the checkpoint's folder that it does not read, sorted
    /// naturally (`layer.2` before `layer.10`): shards missing from `model.safetensors.index.json`, a
    /// `model.safetensors` beside an index (the index wins), or any other safetensors file
    /// beside `model.safetensors`. Their tensors are not part of the checkpoint. Empty when
    /// opened from a file or from bytes.
    pub fn unlisted_files(&self) -> &[String] {
        &self.unlisted
    }

    /// The path it was opened from; `<bytes>` for a checkpoint in memory
    /// ([`Checkpoint::from_bytes`]), the name its messages give it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder, when opened from one (`None` for a single file or bytes).
    pub fn folder(&self) -> Option<&Path> {
        self.folder.as_deref()
    }

    /// Whether the tensors are split into shards listed by `model.safetensors.index.json`.
    pub fn is_sharded(&self) -> bool {
        self.sharded
    }

    /// The safetensors files, in order; `[<bytes>]` for a checkpoint in memory.
    pub fn files(&self) -> Vec<&Path> {
        self.files.iter().map(SafetensorsFile::path).collect()
    }

    /// The `__metadata__` of the first file.
    pub fn metadata(&self) -> Option<&HashMap<String, String>> {
        self.files.first().and_then(SafetensorsFile::metadata)
    }

    /// The `__metadata__` of file `i`.
    #[cfg(feature = "files")]
    pub(crate) fn file_metadata(&self, i: usize) -> Option<&HashMap<String, String>> {
        self.files.get(i).and_then(SafetensorsFile::metadata)
    }

    /// `config.json`, when the folder has one (for a checkpoint in memory, when its text was
    /// given).
    pub fn config(&self) -> Option<&Value> {
        self.config.as_ref()
    }

    /// The `quantization_config` of `config.json`, when present.
    pub fn quantization_config(&self) -> Option<&Value> {
        self.config.as_ref()?.get("quantization_config")
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// All tensors with their infos, sorted by name.
    pub fn tensors(&self) -> impl Iterator<Item = (&str, &TensorInfo)> {
        self.tensors.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The info of one tensor.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    fn require(&self, name: &str) -> Result<&TensorInfo> {
        self.tensors.get(name).ok_or_else(|| {
            Error::NotFound(format!("`{}` has no tensor `{name}`{}", self.path.display(), self.tensor_hint(name)))
        })
    }

    /// Total bytes of tensor data.
    pub fn nbytes(&self) -> usize {
        self.nbytes
    }

    /// Opens file `i` again for its data (a new handle, not kept by the checkpoint), checking it
    /// is still the file whose header was validated at open: same size, same header bytes.
    #[cfg(feature = "files")]
    pub(crate) fn open_reader(&self, i: usize) -> Result<FileReader> {
        self.files[i].open_reader()
    }

    /// Reads bytes `within` of a tensor (offsets inside the tensor's data) of the file `reader`
    /// reads, which must be the tensor's file, into `buf`.
    #[cfg(feature = "files")]
    pub(crate) fn read_tensor<'b>(
        &self,
        reader: &FileReader,
        info: &TensorInfo,
        within: Range<usize>,
        buf: &'b mut ReadBuf,
    ) -> Result<&'b [u8]> {
        reader.read_into(self.tensor_range(info, within)?, buf)
    }

    /// The bytes of the file of `info` that hold bytes `within` of its data.
    fn tensor_range(&self, info: &TensorInfo, within: Range<usize>) -> Result<Range<usize>> {
        if within.start > within.end || within.end > info.nbytes() {
            return Err(Error::Corrupt(format!(
                "bytes {within:?} are outside a tensor of {} bytes of `{}`",
                info.nbytes(),
                self.files[info.file].path().display()
            )));
        }
        Ok(info.range.start + within.start..info.range.start + within.end)
    }

    /// A tensor's bytes: in place for a checkpoint in memory, else read into a buffer of their
    /// own (through the file's kept reader).
    pub(crate) fn tensor_data(&self, name: &str) -> Result<TensorData<'_>> {
        let info = self.require(name)?;
        self.files[info.file].read(self.tensor_range(info, 0..info.nbytes())?)
    }

    /// The raw little-endian bytes of a tensor (a copy the caller owns).
    ///
    /// From a file, the file's size is checked before the read, and a read that comes up short
    /// is an error: a file that another program truncated, extended or rewrote is an
    /// [`Error::Corrupt`].
    pub fn bytes(&self, name: &str) -> Result<Vec<u8>> {
        let info = self.require(name)?;
        self.files[info.file].read_vec(self.tensor_range(info, 0..info.nbytes())?)
    }

    /// A float tensor (F32, F16, BF16) converted to f32 (exactly).
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>> {
        let info = self.require(name)?;
        floats_to_f32(info.dtype, &self.tensor_data(name)?).ok_or_else(|| {
            Error::Unsupported(format!("tensor `{name}` is {}, not a float tensor (F32, F16 or BF16)", info.dtype))
        })
    }
}

/// Sorts a checkpoint's tensors by name, refusing a name given twice (in one header, or in two
/// shards of `files`). One sort for all files: the index is then checked in one merge pass, and
/// the map is built in bulk (inserting a million names one by one took seconds).
fn sorted_unique(
    mut entries: Vec<(String, TensorInfo)>,
    files: &[SafetensorsFile],
) -> Result<Vec<(String, TensorInfo)>> {
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
        let (name, a, b) = (&w[0].0, w[0].1.file.min(w[1].1.file), w[0].1.file.max(w[1].1.file));
        return Err(if a == b {
            Error::Corrupt(format!(
                "`{}` has a corrupt safetensors header: tensor `{name}` appears twice",
                files[a].path().display()
            ))
        } else {
            Error::Index(format!(
                "tensor `{name}` is in both `{}` and `{}`",
                files[a].path().display(),
                files[b].path().display()
            ))
        });
    }
    Ok(entries)
}

/// The bytes of all tensors of the checkpoint at `path`.
fn total_bytes(path: &Path, entries: &[(String, TensorInfo)]) -> Result<usize> {
    entries.iter().try_fold(0usize, |sum, (_, t)| sum.checked_add(t.nbytes())).ok_or_else(|| {
        Error::Corrupt(format!(
            "the tensors of `{}` add up to more bytes than this platform can address",
            path.display()
        ))
    })
}
