//! How the decoder's linear layers run: dense f32 (the baseline) or int8-wgpu's int8 layers with
//! a quantization scheme and an activation dtype.

use int8_wgpu::{ActivationQuant, DType, Granularity, QuantScheme};

use crate::Result;

/// How the linear layers of the transformer blocks hold their weights and run.
///
/// A Q8_0 embedding table is looked up as stored (int8 and its scales, values bit-identical to
/// its f32 dequantization) in every mode but [`WeightMode::F32`] with a tied output, whose
/// dense output projection needs the f32 table anyway; other tables are f32. The tied output
/// projection is the GGUF's Q8_0 `token_embd` as stored (int8, groups of 32, f32 activations)
/// in every int8 mode, and its f32 dequantization in [`WeightMode::F32`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WeightMode {
    /// Dense f32 weights (the GGUF dequantized) and the app's own f32 matmul: the baseline.
    F32,
    /// The GGUF's weights dequantized to f32, then quantized to int8 by the library with
    /// `scheme`; activations in `activation` (F32: W8A32, F16/BF16: W8A16), quantized to int8
    /// at run time as `quant` says (W8A8, LLM.int8()).
    Int8 {
        /// How the weights are quantized.
        scheme: QuantScheme,
        /// The linear layers' input and output dtype.
        activation: DType,
        /// Run-time activation quantization, `None` for float activations.
        quant: Option<ActivationQuant>,
    },
    /// The GGUF's Q8_0 linear tensors as stored (symmetric groups of 32, no requantizing):
    /// only for a file whose linear tensors are Q8_0 (a llama.cpp-requantized file).
    Q8_0 {
        /// The linear layers' input and output dtype.
        activation: DType,
    },
}

impl WeightMode {
    /// W8A16 (bf16 activations) with one symmetric scale per output row.
    pub const W8A16: WeightMode = WeightMode::Int8 {
        scheme: QuantScheme::symmetric(Granularity::PerChannel { axis: 0 }),
        activation: DType::BF16,
        quant: None,
    };

    /// W8A32 with one symmetric scale per output row.
    pub const W8A32: WeightMode = WeightMode::Int8 {
        scheme: QuantScheme::symmetric(Granularity::PerChannel { axis: 0 }),
        activation: DType::F32,
        quant: None,
    };

    /// A mode by its command-line name: `f32`, `w8a16` (bf16 activations), `w8a16-f16`,
    /// `w8a32`, `w8a8`, `llm-int8` (both f32 in and out, int8 inside), `q8_0` (bf16); the int8
    /// modes quantize per output row, or in groups of `group` inputs, symmetric unless `asym`.
    pub fn parse(name: &str, group: Option<usize>, asym: bool) -> Result<Self> {
        let granularity = match group {
            None => Granularity::PerChannel { axis: 0 },
            Some(0) => Granularity::PerTensor,
            Some(size) => Granularity::PerGroup { size },
        };
        let scheme = if asym { QuantScheme::asymmetric(granularity) } else { QuantScheme::symmetric(granularity) };
        let int8 = |activation, quant| WeightMode::Int8 { scheme, activation, quant };
        let mode = match name {
            "f32" => WeightMode::F32,
            "w8a16" | "w8a16-bf16" => int8(DType::BF16, None),
            "w8a16-f16" => int8(DType::F16, None),
            "w8a32" => int8(DType::F32, None),
            "w8a8" => int8(DType::F32, Some(ActivationQuant::per_token())),
            "llm-int8" => int8(DType::F32, Some(ActivationQuant::llm_int8(ActivationQuant::DEFAULT_THRESHOLD)?)),
            "q8_0" => WeightMode::Q8_0 { activation: DType::BF16 },
            _ => {
                return Err(
                    format!("weights `{name}`: use f32, w8a16, w8a16-f16, w8a32, w8a8, llm-int8 or q8_0").into()
                );
            }
        };
        let scheme_given = group.is_some() || asym;
        if scheme_given && matches!(mode, WeightMode::F32 | WeightMode::Q8_0 { .. }) {
            return Err(format!("--group and --asym choose how int8 modes quantize; `{name}` does not quantize").into());
        }
        Ok(mode)
    }

    /// The dtype of the block linear layers' inputs and outputs.
    pub fn activation(&self) -> DType {
        match *self {
            WeightMode::F32 => DType::F32,
            WeightMode::Int8 { activation, .. } | WeightMode::Q8_0 { activation } => activation,
        }
    }
}

impl std::fmt::Display for WeightMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WeightMode::F32 => f.write_str("f32 dense"),
            WeightMode::Q8_0 { activation } => write!(f, "Q8_0 as stored, {activation} activations"),
            WeightMode::Int8 { scheme, activation, quant } => {
                let g = match scheme.granularity {
                    Granularity::PerTensor => "per tensor".to_string(),
                    Granularity::PerChannel { .. } => "per channel".to_string(),
                    Granularity::PerGroup { size } => format!("groups of {size}"),
                };
                let m = if scheme.has_zero_point() { "asymmetric" } else { "symmetric" };
                match quant.map(|q| q.outlier_threshold()) {
                    None if *activation == DType::F32 => write!(f, "int8 W8A32, {m} {g}"),
                    None => write!(f, "int8 W8A16 ({activation}), {m} {g}"),
                    Some(None) => write!(f, "int8 W8A8 ({activation} in and out), {m} {g}"),
                    Some(Some(t)) => write!(f, "int8 LLM.int8() (outliers |x| >= {t}), {m} {g}"),
                }
            }
        }
    }
}
