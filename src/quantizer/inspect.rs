//! What `int8-wgpu inspect` prints about a checkpoint: its tensors, the files it does not read,
//! and its memory footprint, as float and as int8 (for a float checkpoint, an estimate of what
//! the default quantization would make of it).

use std::collections::HashMap;
use std::fmt;

use super::Quantizer;
use super::report::{describe_scheme, format_bytes};
use crate::checkpoint::{self, Checkpoint, INDEX_FILE, MODEL_FILE, PackFormat, TensorDtype};
use crate::{ActivationQuant, DType, Error, Method, QuantScheme, Result};

/// A checkpoint's tensors and memory footprint, as `int8-wgpu inspect` prints them (its
/// [`Display`](fmt::Display)).
///
/// ```no_run
/// use int8_wgpu::checkpoint::Checkpoint;
/// use int8_wgpu::quantizer::Inspection;
/// # fn main() -> Result<(), int8_wgpu::Error> {
/// println!("{}", Inspection::new(&Checkpoint::open("all-MiniLM-L6-v2")?)?);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Inspection {
    /// Every tensor, in natural name order.
    tensors: Vec<Row>,
    /// How many safetensors files the checkpoint reads.
    files: usize,
    /// The safetensors files beside them that it does not read, with why.
    unlisted: Vec<(String, String)>,
    footprint: Footprint,
}

/// One tensor: name, shape, dtype, the scheme of a quantized weight, bytes.
#[derive(Clone, Debug)]
struct Row {
    name: String,
    shape: Vec<usize>,
    dtype: TensorDtype,
    scheme: Option<QuantScheme>,
    bytes: usize,
}

/// Bytes of the linear weights and of the whole model, before and after quantization.
#[derive(Clone, Debug)]
enum Footprint {
    /// A float checkpoint, and an estimate of the default quantization (symmetric per channel,
    /// default excludes) of its `layers` planned layers.
    Float { layers: usize, linear: [usize; 2], model: [usize; 2] },
    /// A quantized checkpoint, and what its `layers` quantized layers were as float.
    Quantized {
        layers: usize,
        format: String,
        method: Option<Method>,
        activation: DType,
        /// How the layers quantize their activations.
        a8: Option<ActivationQuant>,
        linear: [usize; 2],
        model: [usize; 2],
    },
    /// Already quantized (as `quantize` says: `why`), with no layer in a layout this crate reads.
    Unreadable { why: String, model: usize },
}

impl Inspection {
    /// Inspects an open checkpoint: headers, and the `weight_shape` tensors of its quantized
    /// layers. Errors: a quantized layer that [`Checkpoint::quantized_layer_info`] refuses.
    pub fn new(ckpt: &Checkpoint) -> Result<Self> {
        let layers = ckpt.quantized_layers();
        let mut infos = HashMap::new();
        for l in &layers {
            infos.insert(l.clone(), ckpt.quantized_layer_info(l)?);
        }
        let mut tensors: Vec<Row> = ckpt
            .tensors()
            .map(|(name, t)| {
                // The scheme goes on the tensor that holds the ints.
                let layer = name.strip_suffix(".weight_packed").or_else(|| name.strip_suffix(".weight"));
                let scheme = match layer.and_then(|l| infos.get(l)) {
                    Some(i) if i.format == PackFormat::PackQuantized && name.ends_with(".weight_packed") => {
                        Some(i.scheme)
                    }
                    Some(i)
                        if matches!(i.format, PackFormat::IntQuantized | PackFormat::BitsAndBytes)
                            && name.ends_with(".weight") =>
                    {
                        Some(i.scheme)
                    }
                    _ => None,
                };
                Row { name: name.to_string(), shape: t.shape.clone(), dtype: t.dtype, scheme, bytes: t.nbytes() }
            })
            .collect();
        tensors.sort_by(|a, b| checkpoint::natural_cmp(&a.name, &b.name));
        let unlisted = ckpt
            .unlisted_files()
            .iter()
            .map(|f| {
                let why =
                    if ckpt.is_sharded() { format!("not in `{INDEX_FILE}`") } else { format!("not `{MODEL_FILE}`") };
                (f.clone(), why)
            })
            .collect();
        // Quantized or not as `quantize` sees it, which refuses every input that is.
        let footprint = match super::checks::already_quantized(ckpt) {
            None => float_footprint(ckpt)?,
            Some(_) if !layers.is_empty() => quantized_footprint(ckpt, infos.values())?,
            Some(why) => Footprint::Unreadable { why, model: ckpt.nbytes() },
        };
        Ok(Self { tensors, files: ckpt.files().len(), unlisted, footprint })
    }
}

/// Shapes come from the file: every size is checked arithmetic, an error on overflow.
fn overflow(what: &str) -> Error {
    Error::Corrupt(format!("the size estimate of {what} overflows; the checkpoint's shapes are implausible"))
}

/// What the default quantization would make of a float checkpoint.
fn float_footprint(ckpt: &Checkpoint) -> Result<Footprint> {
    let selection = Quantizer::new(ckpt.path(), "").select(ckpt)?;
    let (mut before, mut after) = (0usize, 0usize);
    for name in &selection.targets {
        let t = ckpt.info(name).expect("planned");
        let (out, inn) = (t.shape[0], t.shape[1]);
        // Packed rows of ceil(in/4) words, one scale per row, the [2] I64 weight_shape.
        let int8 = inn
            .div_ceil(4)
            .checked_mul(4)
            .and_then(|row| row.checked_mul(out))
            .and_then(|packed| packed.checked_add(out.checked_mul(t.dtype.bitsize() / 8)?))
            .and_then(|b| b.checked_add(16));
        before = before.checked_add(t.nbytes()).ok_or_else(|| overflow("the linear weights"))?;
        after = int8.and_then(|b| after.checked_add(b)).ok_or_else(|| overflow(&format!("`{name}`")))?;
    }
    let total = ckpt.nbytes();
    let model =
        total.checked_sub(before).and_then(|rest| rest.checked_add(after)).ok_or_else(|| overflow("the model"))?;
    Ok(Footprint::Float { layers: selection.targets.len(), linear: [before, after], model: [total, model] })
}

/// What a quantized checkpoint's layers were as float.
fn quantized_footprint<'a>(
    ckpt: &Checkpoint,
    infos: impl ExactSizeIterator<Item = &'a checkpoint::QuantizedLayerInfo>,
) -> Result<Footprint> {
    let layers = infos.len();
    let (mut float, mut stored) = (0usize, 0usize);
    for i in infos {
        let layer = i.shape[0].checked_mul(i.shape[1]).and_then(|n| n.checked_mul(i.scale_dtype.bitsize() / 8));
        float = layer.and_then(|b| float.checked_add(b)).ok_or_else(|| overflow(&format!("`{}`", i.name)))?;
        stored = stored.checked_add(i.nbytes).ok_or_else(|| overflow("the quantized layers"))?;
    }
    let format = ckpt
        .quantization_config()
        .map(|q| {
            let get = |k: &str| q.get(k).and_then(|v| v.as_str());
            match (get("quant_method"), get("format")) {
                (m, Some(f)) => format!("{}, {f}", m.unwrap_or("?")),
                // bitsandbytes configs have no format.
                (m, None) => m.unwrap_or("?").to_string(),
            }
        })
        .unwrap_or_else(|| "no quantization_config".into());
    let total = ckpt.nbytes();
    let model =
        total.checked_sub(stored).and_then(|rest| rest.checked_add(float)).ok_or_else(|| overflow("the model"))?;
    Ok(Footprint::Quantized {
        layers,
        format,
        method: ckpt.method(),
        activation: ckpt.activation_dtype(),
        a8: ckpt.activation_quant()?,
        linear: [float, stored],
        model: [model, total],
    })
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.tensors.iter().map(|t| t.name.len()).max().unwrap_or(6).max(6);
        writeln!(f, "{:<w$}  {:>14}  {:>5}  {:>12}  {:>10}", "tensor", "shape", "dtype", "scheme", "bytes")?;
        for t in &self.tensors {
            writeln!(
                f,
                "{:<w$}  {:>14}  {:>5}  {:>12}  {:>10}",
                t.name,
                format!("{:?}", t.shape),
                t.dtype.to_string(),
                t.scheme.map(describe_scheme).unwrap_or_default(),
                format_bytes(t.bytes)
            )?;
        }
        writeln!(f)?;
        writeln!(f, "{} tensors in {} file(s)", self.tensors.len(), self.files)?;
        for (file, why) in &self.unlisted {
            writeln!(
                f,
                "warning: `{file}` is in the folder but {why}: it is not read, its tensors are not listed above"
            )?;
        }
        match &self.footprint {
            Footprint::Float { layers, linear, model } => {
                writeln!(f, "not quantized; int8 estimate: symmetric per channel, default excludes")?;
                writeln!(f, "{:<20} {:>10} {:>12}", "", "now", "as int8")?;
                footprint_row(f, &format!("linear weights ({layers})"), *linear)?;
                writeln!(f)?;
                footprint_row(f, "model", *model)
            }
            Footprint::Quantized { layers, format, method, activation, a8, linear, model } => {
                let method = method.map_or("not recorded".into(), |m| m.to_string());
                let a8_note = match a8.map(|a| a.outlier_threshold()) {
                    None => String::new(),
                    Some(None) => " quantized to int8 per token".to_string(),
                    Some(Some(t)) => format!(" quantized to int8 per token, columns with |x| >= {t} kept"),
                };
                let s = if *layers == 1 { "" } else { "s" };
                writeln!(
                    f,
                    "{layers} quantized linear layer{s} ({format}; method {method}, activations {activation}{a8_note})"
                )?;
                writeln!(f, "{:<20} {:>10} {:>12}", "", "as float", "now")?;
                footprint_row(f, &format!("linear weights ({layers})"), *linear)?;
                writeln!(f)?;
                footprint_row(f, "model", *model)
            }
            Footprint::Unreadable { why, model } => {
                writeln!(
                    f,
                    "already quantized ({why}), but no layer is in a layout this crate reads (compressed-tensors \
                     8-bit pack-quantized or int-quantized, bitsandbytes 8-bit)"
                )?;
                write!(f, "{:<20} {:>10}", "model", format_bytes(*model))
            }
        }
    }
}

/// One footprint line, `label  before  after  (ratio)x smaller` (or `same size`), without its line end (the last
/// line of the inspection has none).
fn footprint_row(f: &mut fmt::Formatter<'_>, label: &str, [before, after]: [usize; 2]) -> fmt::Result {
    let ratio = match (before, after) {
        (0, 0) => "no weights".to_string(),
        (_, 0) => "-".to_string(),
        _ => super::report::size_change(before, after),
    };
    write!(f, "{label:<20} {:>10} {:>12}   {ratio}", format_bytes(before), format_bytes(after))
}
