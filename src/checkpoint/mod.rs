//! Safetensors checkpoints: reading a single file, a folder or a sharded folder; the
//! compressed-tensors `pack-quantized` layout; loading quantized layers back onto the GPU.
//!
//! # The layout
//!
//! A quantized linear layer `P` (whose float weight was `P.weight`, `[out, in]`) is stored as
//! the tensors that vLLM and transformers read for `format: "pack-quantized"`:
//!
//! | tensor | dtype | shape | content |
//! |---|---|---|---|
//! | `P.weight_packed` | I32 | `[out, ceil(in/4)]` | byte `j` of word `w` = `q[4w+j] + 128` (i.e. `q ^ 0x80`), rows zero-padded |
//! | `P.weight_shape` | I64 | `[2]` | `[out, in]` |
//! | `P.weight_scale` | the weight's dtype | `[out, 1]` per channel, `[out, in/G]` per group, `[1]` per tensor | scales |
//! | `P.weight_zero_point` | I32 / I8 | `[ceil(out/4), n_groups]` packed along dim 0 (`zp + 128`); per tensor I8 `[1]` | asymmetric only |
//!
//! Every other tensor is copied byte for byte. `config.json` gains a `quantization_config`
//! (see [`quantization_config`]).
//!
//! Scales are computed in f32 and exported in the weight's dtype (round to nearest even). For
//! f32 checkpoints the file therefore holds exactly the in-memory quantization; for f16/bf16
//! checkpoints the ints are identical and each scale is the in-memory scale rounded to that
//! dtype ([`exported`] gives the tensor exactly as it is read back).
//!
//! # Loading
//!
//! [`Checkpoint::open`] reads the headers only; tensor data is read per file on first use.
//! [`Checkpoint::linear`] builds a [`QuantizedLinear`] from `P.weight_packed` (ours or any
//! compressed-tensors 8-bit checkpoint, `pack-quantized` or `int-quantized`). Packed words go to
//! the GPU as stored; the kernels read the offset-binary bytes directly.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

mod folder;
mod regular_file;
mod safetensors;
mod writer;

pub use self::folder::{CONFIG_FILE, INDEX_FILE, MODEL_FILE};
use self::folder::{Located, check_index, unlisted_safetensors};
pub(crate) use self::regular_file::file_kind;
use self::safetensors::SafetensorsFile;
pub use self::safetensors::{TensorDtype, TensorInfo, f32_to_bytes, floats_to_f32, to_dtype, to_tensor_dtype};
pub(crate) use self::writer::{OutTensor, write_json, write_safetensors};

use crate::quantized::{pack_rows_xor, unpack_rows_xor};
use crate::{
    DType, Error, Gpu, GpuQuantizedTensor, Granularity, Method, Mode, QuantScheme, QuantizedLinear, QuantizedTensor,
    Result,
};

/// The `__metadata__` key where the quantizer records its method (`w8a16` / `w8a32`).
pub const METHOD_METADATA_KEY: &str = "int8_wgpu.method";

/// What compressed-tensors stores in place of an int8 `q`: `q ^ 0x80` = `q + 128` (offset binary).
const OFFSET_BINARY: u8 = 0x80;

/// How a quantized layer's weight is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackFormat {
    /// compressed-tensors `pack-quantized`: `weight_packed` I32, bytes `q ^ 0x80`.
    PackQuantized,
    /// compressed-tensors `int-quantized`: `weight` I8 `[out, in]`.
    IntQuantized,
}

/// What a quantized layer of a checkpoint is, read from its tensors' headers.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedLayerInfo {
    /// The layer name `P` (tensors are `P.weight_packed`, `P.weight_scale`, ...).
    pub name: String,
    /// `[out, in]`.
    pub shape: [usize; 2],
    /// The scheme, inferred from the scale and zero-point shapes.
    pub scheme: QuantScheme,
    /// The dtype the scales are stored in (the original weight's dtype).
    pub scale_dtype: TensorDtype,
    /// How the int8 weight is stored.
    pub format: PackFormat,
    /// Bytes of all the layer's weight tensors (packed weight, shape, scales, zero points).
    pub nbytes: usize,
}

/// A safetensors checkpoint: one file, a folder with `model.safetensors`, or a folder of shards
/// listed by `model.safetensors.index.json`; with the folder's `config.json` when present.
///
/// Opening reads and checks every file's header (a truncated or corrupt file is an error here);
/// tensor data is read per file on first use and kept. Every file read must be a regular file
/// (or a link to one): a FIFO, socket, device or folder in its place is an error, and never
/// blocks.
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
    /// Errors ([`Error::Checkpoint`] unless noted): a file that is not a regular file; a header
    /// that is truncated, corrupt (offsets, shapes, sizes that do not add up) or names a tensor
    /// twice; a tensor in two shards; an index whose `weight_map` is empty or disagrees with the
    /// shards; a `config.json` that is not a JSON object; [`Error::Io`] when a file cannot be
    /// read.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        // The small files first: a bad config.json fails before megabytes of headers are parsed.
        let Located { folder, names, file_paths, weight_map, config } = folder::locate(&path)?;
        let mut files = Vec::new();
        let mut entries: Vec<(String, TensorInfo)> = Vec::new();
        for (i, fp) in file_paths.iter().enumerate() {
            let (file, tensors) = SafetensorsFile::open(fp, i)?;
            entries.extend(tensors);
            files.push(file);
        }
        // One sort by name for all files: a name given twice (in one header or in two shards)
        // ends up next to itself, the index is checked in one merge pass, and the map is built
        // in bulk (inserting a million names one by one took seconds).
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
            let (name, a, b) = (&w[0].0, w[0].1.file.min(w[1].1.file), w[0].1.file.max(w[1].1.file));
            return Err(Error::Checkpoint(if a == b {
                format!("`{}` has a corrupt safetensors header: tensor `{name}` appears twice", file_paths[a].display())
            } else {
                format!("tensor `{name}` is in both `{}` and `{}`", file_paths[a].display(), file_paths[b].display())
            }));
        }
        if let Some(map) = &weight_map {
            check_index(&entries, map, &names)?;
        }
        let nbytes = entries.iter().try_fold(0usize, |sum, (_, t)| sum.checked_add(t.nbytes())).ok_or_else(|| {
            Error::Checkpoint(format!(
                "the tensors of `{}` add up to more bytes than this platform can address",
                path.display()
            ))
        })?;
        let unlisted = match &folder {
            Some(dir) => unlisted_safetensors(dir, &names)?,
            None => Vec::new(),
        };
        let tensors = entries.into_iter().collect();
        let sharded = weight_map.is_some();
        Ok(Self { path, folder, files, tensors, nbytes, sharded, config, unlisted })
    }

    /// The `.safetensors` files in the checkpoint's folder that it does not read, sorted
    /// naturally (by [`natural_cmp`]): shards missing from `model.safetensors.index.json`, a
    /// `model.safetensors` beside an index (the index wins), or any other safetensors file
    /// beside `model.safetensors`. Their tensors are not part of the checkpoint. Empty when
    /// opened from a file.
    pub fn unlisted_files(&self) -> &[String] {
        &self.unlisted
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder, when opened from one (`None` for a single file).
    pub fn folder(&self) -> Option<&Path> {
        self.folder.as_deref()
    }

    /// Whether the tensors are split into shards listed by `model.safetensors.index.json`.
    pub fn is_sharded(&self) -> bool {
        self.sharded
    }

    /// The safetensors files, in order.
    pub fn files(&self) -> Vec<&Path> {
        self.files.iter().map(SafetensorsFile::path).collect()
    }

    /// The `__metadata__` of the first file.
    pub fn metadata(&self) -> Option<&HashMap<String, String>> {
        self.files.first().and_then(SafetensorsFile::metadata)
    }

    /// The `__metadata__` of file `i`.
    pub(crate) fn file_metadata(&self, i: usize) -> Option<&HashMap<String, String>> {
        self.files.get(i).and_then(SafetensorsFile::metadata)
    }

    /// `config.json`, when the folder has one.
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
        self.tensors
            .get(name)
            .ok_or_else(|| Error::Checkpoint(format!("`{}` has no tensor `{name}`", self.path.display())))
    }

    /// Total bytes of tensor data.
    pub fn nbytes(&self) -> usize {
        self.nbytes
    }

    /// Reads file `i` whole (not cached), checking it is still the file whose header was
    /// validated at open: same size, same header bytes.
    pub(crate) fn read_file(&self, i: usize) -> Result<Vec<u8>> {
        self.files[i].read()
    }

    /// The bytes of a tensor inside `data`, the contents of its file from `read_file`.
    pub(crate) fn slice<'a>(&self, info: &TensorInfo, data: &'a [u8]) -> &'a [u8] {
        &data[info.range.clone()]
    }

    /// The raw little-endian bytes of a tensor.
    pub fn bytes(&self, name: &str) -> Result<&[u8]> {
        let info = self.require(name)?;
        Ok(&self.files[info.file].data()?[info.range.clone()])
    }

    /// A float tensor (F32, F16, BF16) converted to f32 (exactly).
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>> {
        let info = self.require(name)?;
        floats_to_f32(info.dtype, self.bytes(name)?).ok_or_else(|| {
            Error::Checkpoint(format!("tensor `{name}` is {}, not a float tensor (F32, F16 or BF16)", info.dtype))
        })
    }

    /// The names `P` of the quantized layers (`P.weight_packed`, or an I8 `P.weight` with a
    /// `P.weight_scale`), sorted.
    pub fn quantized_layers(&self) -> Vec<String> {
        self.tensors
            .iter()
            .filter_map(|(name, info)| {
                if let Some(p) = name.strip_suffix(".weight_packed") {
                    return Some(p.to_string());
                }
                let p = name.strip_suffix(".weight")?;
                (info.dtype == TensorDtype::I8 && self.tensors.contains_key(&format!("{p}.weight_scale")))
                    .then(|| p.to_string())
            })
            .collect()
    }

    /// What quantized layer `name` is: shape, scheme, scale dtype, format (headers only).
    pub fn quantized_layer_info(&self, name: &str) -> Result<QuantizedLayerInfo> {
        self.layer_info(name).map_err(|e| e.in_tensor(name))
    }

    fn layer_info(&self, p: &str) -> Result<QuantizedLayerInfo> {
        self.check_num_bits()?;
        let get = |suffix: &str| self.tensors.get(&format!("{p}.{suffix}"));
        let bad = |msg: String| Err(Error::Checkpoint(msg));
        let mut nbytes = 0;
        let (format, out, inn) = if let Some(packed) = get("weight_packed") {
            let Some(shape_t) = get("weight_shape") else {
                return bad(format!("`{p}.weight_packed` has no `{p}.weight_shape`"));
            };
            let dims = self.int_values(&format!("{p}.weight_shape"))?;
            let &[out, inn] = dims.as_slice() else {
                return bad(format!("`{p}.weight_shape` is {dims:?}; a linear weight needs [out, in]"));
            };
            let (out, inn) = (to_dim(out)?, to_dim(inn)?);
            if packed.dtype != TensorDtype::I32 || packed.shape != [out, inn.div_ceil(4)] {
                return bad(format!(
                    "`{p}.weight_packed` is {} {:?}; 8-bit pack-quantized needs I32 [{out}, {}] for weight shape \
                     [{out}, {inn}] (other bit widths are not supported)",
                    packed.dtype,
                    packed.shape,
                    inn.div_ceil(4)
                ));
            }
            nbytes += packed.nbytes() + shape_t.nbytes();
            (PackFormat::PackQuantized, out, inn)
        } else if let Some(w) = get("weight").filter(|w| w.dtype == TensorDtype::I8) {
            let &[out, inn] = w.shape.as_slice() else {
                return bad(format!("`{p}.weight` has shape {:?}; a linear weight needs [out, in]", w.shape));
            };
            nbytes += w.nbytes();
            (PackFormat::IntQuantized, out, inn)
        } else {
            return bad(format!("no quantized layer `{p}` (no `{p}.weight_packed` nor I8 `{p}.weight`)"));
        };
        if out == 0 || inn == 0 {
            return Err(Error::Empty(format!("quantized weight `{p}` of shape [{out}, {inn}]")));
        }
        let Some(scale) = get("weight_scale") else {
            return bad(format!("quantized layer `{p}` has no `{p}.weight_scale`"));
        };
        if to_dtype(scale.dtype).is_none() {
            return bad(format!("`{p}.weight_scale` is {}; scales must be F32, F16 or BF16", scale.dtype));
        }
        nbytes += scale.nbytes();
        let granularity = match (scale.numel(), scale.shape.as_slice()) {
            (1, _) if out > 1 || scale.shape.len() <= 1 => Granularity::PerTensor,
            (n, [o, 1] | [o]) if *o == out && n == out => Granularity::PerChannel { axis: 0 },
            (_, [o, g]) if *o == out && *g > 0 && inn % g == 0 => {
                if *g == 1 {
                    Granularity::PerChannel { axis: 0 }
                } else {
                    Granularity::PerGroup { size: inn / g }
                }
            }
            _ => {
                return bad(format!(
                    "`{p}.weight_scale` has shape {:?}, which fits no scheme for weight [{out}, {inn}] \
                     (expected [1], [{out}, 1] or [{out}, in/group_size])",
                    scale.shape
                ));
            }
        };
        let mode = match get("weight_zero_point") {
            Some(z) => {
                nbytes += z.nbytes();
                Mode::Asymmetric
            }
            None => Mode::Symmetric,
        };
        if mode == Mode::Symmetric
            && self.config_weights().and_then(|w| w.get("symmetric")).and_then(Value::as_bool) == Some(false)
        {
            return bad(format!("config.json says asymmetric but `{p}.weight_zero_point` is missing"));
        }
        Ok(QuantizedLayerInfo {
            name: p.to_string(),
            shape: [out, inn],
            scheme: QuantScheme { mode, granularity },
            scale_dtype: scale.dtype,
            format,
            nbytes,
        })
    }

    fn config_weights(&self) -> Option<&Value> {
        let groups = self.quantization_config()?.get("config_groups")?.as_object()?;
        groups.values().find_map(|g| g.get("weights"))
    }

    fn check_num_bits(&self) -> Result<()> {
        let Some(groups) = self.quantization_config().and_then(|q| q.get("config_groups")).and_then(Value::as_object)
        else {
            return Ok(());
        };
        for (gname, g) in groups {
            let bits = g.get("weights").and_then(|w| w.get("num_bits")).and_then(Value::as_u64);
            if let Some(bits) = bits.filter(|&b| b != 8) {
                return Err(Error::Checkpoint(format!(
                    "config group `{gname}` quantizes weights to {bits} bits; only 8-bit weights are supported"
                )));
            }
        }
        Ok(())
    }

    /// Reads an integer tensor (I8, I16, I32, I64, U8) as i64 values.
    fn int_values(&self, name: &str) -> Result<Vec<i64>> {
        let info = self.require(name)?;
        let b = self.bytes(name)?;
        Ok(match info.dtype {
            TensorDtype::I64 => b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8"))).collect(),
            TensorDtype::I32 => {
                b.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().expect("4")).into()).collect()
            }
            TensorDtype::I16 => {
                b.chunks_exact(2).map(|c| i16::from_le_bytes(c.try_into().expect("2")).into()).collect()
            }
            TensorDtype::I8 => b.iter().map(|&v| (v as i8).into()).collect(),
            TensorDtype::U8 => b.iter().map(|&v| v.into()).collect(),
            d => return Err(Error::Checkpoint(format!("tensor `{name}` is {d}; an integer tensor was expected"))),
        })
    }

    /// Rebuilds quantized layer `name` on the host: ints from the packed bytes (`^ 0x80`),
    /// scales widened to f32, zero points unpacked.
    pub fn quantized_tensor(&self, name: &str) -> Result<QuantizedTensor> {
        self.rebuild(name).map_err(|e| e.in_tensor(name))
    }

    fn rebuild(&self, p: &str) -> Result<QuantizedTensor> {
        let info = self.layer_info(p)?;
        let [out, inn] = info.shape;
        let values: Vec<i8> = match info.format {
            PackFormat::PackQuantized => {
                let words: Vec<u32> = bytemuck::pod_collect_to_vec(self.bytes(&format!("{p}.weight_packed"))?);
                unpack_rows_xor(&words, out, inn, OFFSET_BINARY)
            }
            PackFormat::IntQuantized => bytemuck::cast_slice(self.bytes(&format!("{p}.weight"))?).to_vec(),
        };
        let (scales, zero_points) = self.params(&info)?;
        QuantizedTensor::new(&info.shape, info.scheme, values, scales, zero_points)
    }

    /// Scales (widened to f32) and zero points (unpacked) of a quantized layer.
    fn params(&self, info: &QuantizedLayerInfo) -> Result<(Vec<f32>, Option<Vec<i8>>)> {
        let (p, out) = (&info.name, info.shape[0]);
        let scale_name = format!("{p}.weight_scale");
        let scales = floats_to_f32(info.scale_dtype, self.bytes(&scale_name)?).expect("checked float dtype");
        let layout = info.scheme.layout(&info.shape)?;
        let zero_points = match info.scheme.mode {
            Mode::Symmetric => None,
            Mode::Asymmetric => {
                let zname = format!("{p}.weight_zero_point");
                let z = self.require(&zname)?;
                let (rows, cols) = match info.scheme.granularity {
                    Granularity::PerTensor => (1, 1),
                    _ => (out, layout.num_params() / out),
                };
                let bytes = self.bytes(&zname)?;
                Some(match z.dtype {
                    TensorDtype::I8 if z.numel() == rows * cols => bytemuck::cast_slice(bytes).to_vec(),
                    TensorDtype::I32 if z.numel() == rows.div_ceil(4) * cols => unpack_dim0(bytes, rows, cols),
                    _ => {
                        return Err(Error::Checkpoint(format!(
                            "`{zname}` is {} {:?}; expected I32 [{}, {cols}] (packed along dim 0) or I8 with \
                             {} elements",
                            z.dtype,
                            z.shape,
                            rows.div_ceil(4),
                            rows * cols
                        )));
                    }
                })
            }
        };
        Ok((scales, zero_points))
    }

    /// The method the checkpoint was written with, from the `__metadata__` of its first file;
    /// `None` for a checkpoint without our metadata.
    pub fn method(&self) -> Option<Method> {
        self.metadata()?.get(METHOD_METADATA_KEY)?.parse().ok()
    }

    /// The activation dtype [`Checkpoint::linear`] uses: [`Method::activation_dtype`] of the
    /// recorded method (`w8a16` when none is recorded) for the scale dtype of the quantized
    /// layers, which is the original weights' dtype: f32 for `w8a32`; for `w8a16` the scale dtype
    /// if it is f16 or bf16, else bf16.
    pub fn activation_dtype(&self) -> DType {
        let scale_dtype = self.quantized_layers().first().and_then(|p| self.info(&format!("{p}.weight_scale")));
        // Without a float scale there is no 16-bit dtype to keep: as for an f32 checkpoint.
        let weight_dtype = scale_dtype.and_then(TensorInfo::float_dtype).unwrap_or(DType::F32);
        self.method().unwrap_or_default().activation_dtype(weight_dtype)
    }

    /// Loads quantized layer `name` (with `name.bias` when present) as a GPU layer, with the
    /// activation dtype of [`Checkpoint::activation_dtype`].
    pub fn linear(&self, gpu: &Gpu, name: &str) -> Result<QuantizedLinear> {
        self.linear_with(gpu, name, self.activation_dtype())
    }

    /// Like [`Checkpoint::linear`] with a chosen activation dtype.
    ///
    /// `pack-quantized` words are uploaded as they are in the file: the kernels read the
    /// offset-binary bytes (`q ^ 0x80`) directly ([`GpuQuantizedTensor::from_packed`]).
    pub fn linear_with(&self, gpu: &Gpu, name: &str, activation: DType) -> Result<QuantizedLinear> {
        let build = || -> Result<QuantizedLinear> {
            let info = self.layer_info(name)?;
            let bias_name = format!("{name}.bias");
            let bias = match self.info(&bias_name) {
                Some(_) => Some(self.tensor_f32(&bias_name)?),
                None => None,
            };
            match info.format {
                PackFormat::PackQuantized => {
                    let words: Vec<u32> = bytemuck::pod_collect_to_vec(self.bytes(&format!("{name}.weight_packed"))?);
                    let (scales, zps) = self.params(&info)?;
                    let w = GpuQuantizedTensor::from_packed(
                        gpu,
                        &info.shape,
                        info.scheme,
                        &words,
                        true,
                        &scales,
                        zps.as_deref(),
                    )?;
                    QuantizedLinear::from_gpu(w, bias.as_deref(), activation)
                }
                PackFormat::IntQuantized => {
                    QuantizedLinear::from_quantized(gpu, &self.rebuild(name)?, bias.as_deref(), activation)
                }
            }
        };
        build().map_err(|e| e.in_tensor(name))
    }
}

/// Orders names with their digit runs compared as numbers, so `layer.2` comes before
/// `layer.10`.
///
/// ```
/// use int8_wgpu::checkpoint::natural_cmp;
/// let mut v = ["layer.10.w", "layer.2.w", "layer.1.w"];
/// v.sort_by(|a, b| natural_cmp(a, b));
/// assert_eq!(v, ["layer.1.w", "layer.2.w", "layer.10.w"]);
/// ```
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    // Walks both names run by run (a maximal run of ASCII digits, or of anything else) without
    // allocating: sorting a million names called this some 20 million times.
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let run_end = |s: &[u8], start: usize| {
        let digit = s[start].is_ascii_digit();
        s[start..].iter().position(|c| c.is_ascii_digit() != digit).map_or(s.len(), |n| start + n)
    };
    let (mut i, mut j) = (0, 0);
    while i < x.len() && j < y.len() {
        let (ei, ej) = (run_end(x, i), run_end(y, j));
        let (ra, rb) = (&x[i..ei], &y[j..ej]);
        let ord = if ra[0].is_ascii_digit() && rb[0].is_ascii_digit() {
            // As numbers of any length: without leading zeros, the longer is larger.
            fn trim(r: &[u8]) -> &[u8] {
                &r[r.iter().position(|&c| c != b'0').unwrap_or(r.len())..]
            }
            let (na, nb) = (trim(ra), trim(rb));
            na.len().cmp(&nb.len()).then_with(|| na.cmp(nb))
        } else {
            ra.cmp(rb)
        };
        if ord.is_ne() {
            return ord;
        }
        (i, j) = (ei, ej);
    }
    // Equal runs so far: the name with runs left is larger; equal names-as-numbers ("01" and
    // "1") are ordered bytewise so the order stays total.
    (i < x.len()).cmp(&(j < y.len())).then_with(|| a.cmp(b))
}

fn to_dim(v: i64) -> Result<usize> {
    usize::try_from(v).map_err(|_| Error::Checkpoint(format!("negative dimension {v} in weight_shape")))
}

/// The tensor exactly as a checkpoint stores it when its scales are exported in `scale_dtype`:
/// same ints and zero points, each scale rounded to `scale_dtype` (round to nearest even).
///
/// A scale below f16's range (a row of an f16 model whose weights are all below about 4e-6 in
/// magnitude) would round to 0, which no loader can use: it is exported as f16's smallest
/// positive value, 2⁻²⁴, instead. bf16 has f32's range and never underflows.
pub fn exported(q: &QuantizedTensor, scale_dtype: DType) -> Result<QuantizedTensor> {
    let scales = q
        .scales()
        .iter()
        .map(|&s| match (scale_dtype, scale_dtype.round(s)) {
            (DType::F16, 0.0) => half::f16::from_bits(1).to_f32(),
            (_, r) => r,
        })
        .collect();
    QuantizedTensor::new(q.shape(), q.scheme(), q.values().to_vec(), scales, q.zero_points().map(<[i8]>::to_vec))
}

/// Packs an int8 matrix `[rows, cols]` along dim 0 (compressed-tensors' zero-point layout):
/// word `[w, c]` holds `z[4w+j, c] ^ 0x80` in byte `j`; shape `[ceil(rows/4), cols]`.
pub(crate) fn pack_dim0(values: &[i8], rows: usize, cols: usize) -> Vec<u32> {
    let mut out = vec![0u32; rows.div_ceil(4) * cols];
    for r in 0..rows {
        for c in 0..cols {
            out[(r / 4) * cols + c] |= u32::from(values[r * cols + c] as u8 ^ OFFSET_BINARY) << (8 * (r % 4));
        }
    }
    out
}

fn unpack_dim0(bytes: &[u8], rows: usize, cols: usize) -> Vec<i8> {
    let words: Vec<u32> = bytemuck::pod_collect_to_vec(bytes);
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            out.push(((words[(r / 4) * cols + c] >> (8 * (r % 4))) as u8 ^ OFFSET_BINARY) as i8);
        }
    }
    out
}

fn words_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// The compressed-tensors tensors of one quantized layer: `(suffix, tensor)` pairs, suffixes
/// `weight_packed`, `weight_shape`, `weight_scale` and (asymmetric) `weight_zero_point`.
///
/// Scales are written in `scale_dtype`. Only per-tensor, per-channel along axis 0 and per-group
/// schemes of 2-D weights have a compressed-tensors layout.
pub(crate) fn layer_tensors(
    q: &QuantizedTensor,
    scale_dtype: DType,
) -> Result<Vec<(&'static str, OutTensor<'static>)>> {
    let &[out, inn] = q.shape() else {
        return Err(Error::Shape(format!("a linear weight must be 2-D [out, in], found {:?}", q.shape())));
    };
    let scale_shape = match q.scheme().granularity {
        Granularity::PerTensor => vec![1],
        Granularity::PerChannel { axis: 0 } => vec![out, 1],
        Granularity::PerGroup { size } => vec![out, inn / size],
        Granularity::PerChannel { axis } => {
            return Err(Error::Scheme(format!(
                "per-channel along axis {axis} has no compressed-tensors layout; use axis 0 (one scale per output row)"
            )));
        }
    };
    let mut v = vec![
        (
            "weight_packed",
            OutTensor {
                dtype: TensorDtype::I32,
                shape: vec![out, inn.div_ceil(4)],
                data: Cow::Owned(words_bytes(&pack_rows_xor(q.values(), out, inn, OFFSET_BINARY))),
            },
        ),
        (
            "weight_shape",
            OutTensor {
                dtype: TensorDtype::I64,
                shape: vec![2],
                data: Cow::Owned([out as i64, inn as i64].iter().flat_map(|d| d.to_le_bytes()).collect()),
            },
        ),
        (
            "weight_scale",
            OutTensor {
                dtype: to_tensor_dtype(scale_dtype),
                shape: scale_shape.clone(),
                data: Cow::Owned(f32_to_bytes(q.scales(), scale_dtype)),
            },
        ),
    ];
    if let Some(z) = q.zero_points() {
        let t = match q.scheme().granularity {
            Granularity::PerTensor => {
                OutTensor { dtype: TensorDtype::I8, shape: vec![1], data: Cow::Owned(vec![z[0] as u8]) }
            }
            _ => {
                let cols = scale_shape[1];
                OutTensor {
                    dtype: TensorDtype::I32,
                    shape: vec![out.div_ceil(4), cols],
                    data: Cow::Owned(words_bytes(&pack_dim0(z, out, cols))),
                }
            }
        };
        v.push(("weight_zero_point", t));
    }
    Ok(v)
}

/// The compressed-tensors release whose `pack-quantized` layout and config this crate writes,
/// recorded as the config's `version` as compressed-tensors itself does (transformers 5.23 with
/// compressed-tensors 0.20 was checked loading our files).
pub const COMPRESSED_TENSORS_VERSION: &str = "0.20.1";

/// The `quantization_config` written into `config.json`: exactly the keys compressed-tensors
/// parsers expect for 8-bit int weights with float activations, and no others — plus the cheap
/// ones llmcompressor writes: `version`, and `zp_dtype` for asymmetric schemes.
///
/// ```
/// use int8_wgpu::{checkpoint::quantization_config, QuantScheme};
/// let c = quantization_config(QuantScheme::default(), &["lm_head".into()]).unwrap();
/// assert_eq!(c["format"], "pack-quantized");
/// assert_eq!(c["config_groups"]["group_0"]["weights"]["strategy"], "channel");
/// ```
pub fn quantization_config(scheme: QuantScheme, ignore: &[String]) -> Result<Value> {
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
    Ok(json!({
        "quant_method": "compressed-tensors",
        "version": COMPRESSED_TENSORS_VERSION,
        "format": "pack-quantized",
        "quantization_status": "compressed",
        "config_groups": {
            "group_0": {
                "targets": ["Linear"],
                "weights": weights,
                "input_activations": null,
            }
        },
        "ignore": ignore,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dim0_packing_round_trips() {
        let z: Vec<i8> = (0..5 * 3).map(|i| (i * 37 % 256) as u8 as i8).collect();
        let w = pack_dim0(&z, 5, 3);
        assert_eq!(w.len(), 2 * 3);
        assert_eq!(w[0] & 0xFF, u32::from(z[0] as u8 ^ 0x80));
        assert_eq!((w[0] >> 8) & 0xFF, u32::from(z[3] as u8 ^ 0x80));
        assert_eq!(unpack_dim0(&words_bytes(&w), 5, 3), z);
    }

    #[test]
    fn f16_scales_that_underflow_export_as_the_smallest_f16() {
        let w = [3e-6f32, -1e-6, 0.5, 0.25];
        let q = crate::reference::quantize(&w, &[2, 2], QuantScheme::default()).unwrap();
        assert_eq!(DType::F16.round(q.scales()[0]), 0.0, "the case this test is about");
        let e = exported(&q, DType::F16).unwrap();
        assert_eq!(e.scales()[0], 2f32.powi(-24));
        assert_eq!(e.scales()[1], DType::F16.round(q.scales()[1]));
        assert_eq!(e.values(), q.values());
    }

    #[test]
    fn config_keys_are_exactly_the_specified_ones() {
        let c = quantization_config(QuantScheme::asymmetric(Granularity::PerGroup { size: 32 }), &[]).unwrap();
        let keys: Vec<&String> = c.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 6);
        assert_eq!(c["version"], COMPRESSED_TENSORS_VERSION);
        let w = &c["config_groups"]["group_0"]["weights"];
        assert_eq!(w["group_size"], 32);
        assert_eq!(w["symmetric"], false);
        assert_eq!(w["zp_dtype"], "torch.int8");
        assert_eq!(w.as_object().unwrap().len(), 8);
        let sym = quantization_config(QuantScheme::default(), &[]).unwrap();
        assert!(sym["config_groups"]["group_0"]["weights"].get("zp_dtype").is_none(), "symmetric: no zp_dtype");
        assert!(quantization_config(QuantScheme::symmetric(Granularity::PerChannel { axis: 1 }), &[]).is_err());
    }
}
