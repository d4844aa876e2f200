//! GGUF files, llama.cpp's model format: metadata, the tokenizer, and tensors as this library's
//! types.
//!
//! [`Gguf::from_bytes`] reads a file already in memory (any target, the browser included);
//! `Gguf::open` reads one from disk (feature `files`), whole, with no memory map. Versions 2
//! and 3, little-endian. Every count, length, dimension and offset is checked against the bytes
//! there are: a truncated or corrupt file is an `Error::Corrupt`, never a panic or an
//! allocation sized by an unchecked count.
//!
//! Tensors: [`Gguf::tensor_q8_0`] gives a Q8_0 tensor as a [`QuantizedTensor`] (symmetric groups
//! of 32 along the input axis, the blocks' f16 scales widened to f32, the ints as stored: no
//! requantizing, so it dequantizes to llama.cpp's values); [`Gguf::tensor_f32`] gives F32, F16,
//! BF16 and the dequantized Q8_0, Q4_0 and Q4_1; [`Gguf::tensor_float`] a float tensor in its
//! own dtype. GGUF lists dimensions innermost first; [`TensorInfo::shape`] reverses them into
//! this library's row-major order, so a linear layer's weight is `[out, in]`.
//!
//! ```
//! # fn main() -> Result<(), int8_wgpu::Error> {
//! // The smallest file: magic, version 3, no tensors, no metadata.
//! let mut bytes = b"GGUF".to_vec();
//! bytes.extend(3u32.to_le_bytes());
//! bytes.extend([0u8; 16]);
//! let gguf = int8_wgpu::gguf::Gguf::from_bytes(bytes)?;
//! assert_eq!((gguf.version(), gguf.tensors().len()), (3, 0));
//! # Ok(())
//! # }
//! ```

mod cursor;
#[cfg(feature = "files")]
mod file;
mod header;
mod llama;
mod metadata;
mod tensors;
mod types;
mod value;

pub use header::TensorInfo;
pub use llama::LlamaParams;
pub use metadata::Tokenizer;
pub use types::GgmlType;
pub use value::Value;

use crate::{DType, Element, Error, QuantizedTensor, Result};

/// A GGUF file, read and checked, held in memory.
pub struct Gguf {
    bytes: Vec<u8>,
    header: header::Header,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("version", &self.header.version)
            .field("bytes", &self.bytes.len())
            .field("metadata", &self.header.metadata.len())
            .field("tensors", &self.header.tensors.len())
            .finish()
    }
}

impl Gguf {
    /// Reads a GGUF file from its bytes, checking its header, metadata and tensor layout
    /// (tensor data is decoded when asked for).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        let header = header::parse(&bytes)?;
        Ok(Gguf { bytes, header })
    }

    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.header.version
    }

    /// The alignment of the tensors' data (`general.alignment`, 32 if absent).
    pub fn alignment(&self) -> u64 {
        self.header.alignment
    }

    /// Where the data section starts, in bytes from the start of the file.
    pub fn data_offset(&self) -> u64 {
        self.header.data_offset
    }

    /// Every tensor, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    /// The tensor named `name`; absent is an [`Error::NotFound`].
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo> {
        match self.header.names.get(name) {
            Some(&i) => Ok(&self.header.tensors[i]),
            None => Err(Error::NotFound(format!("the GGUF file has no tensor `{name}`"))),
        }
    }

    /// The tensor's data as stored (little-endian, its ggml type's layout).
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8]> {
        let t = self.tensor(name)?;
        // The header check put every tensor inside `bytes`, so these fit in usize.
        let start = t.offset() as usize;
        Ok(&self.bytes[start..start + t.nbytes() as usize])
    }

    /// The tensor's values as f32, row-major in [`TensorInfo::shape`]: F32 as stored, F16 and
    /// BF16 widened exactly, Q8_0, Q4_0 and Q4_1 dequantized as llama.cpp's reference
    /// `dequantize_row_*` does (`q · d`, `(q − 8) · d`, `q · d + m`, in f32, no fused
    /// multiply-add). Other types are an [`Error::Unsupported`] naming the type.
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>> {
        tensors::to_f32(self.tensor(name)?, self.tensor_bytes(name)?)
    }

    /// An F32, F16 or BF16 tensor in its own dtype, bit for bit, row-major in
    /// [`TensorInfo::shape`] (`T` = `f32`, `half::f16` or `half::bf16`); a tensor of another
    /// type is an [`Error::DType`] (F32/F16/BF16) or [`Error::Unsupported`].
    pub fn tensor_float<T: Element>(&self, name: &str) -> Result<Vec<T>> {
        let t = self.tensor(name)?;
        let found = match t.ggml_type() {
            GgmlType::F32 => DType::F32,
            GgmlType::F16 => DType::F16,
            GgmlType::BF16 => DType::BF16,
            other => {
                return Err(Error::Unsupported(format!("GGUF tensor `{name}` is {other}, not a float type")));
            }
        };
        if found != T::DTYPE {
            return Err(Error::DType { what: format!("GGUF tensor `{name}`"), expected: T::DTYPE, found });
        }
        let mut v: Vec<T> = bytemuck::pod_collect_to_vec(self.tensor_bytes(name)?);
        if cfg!(target_endian = "big") {
            v.iter_mut().for_each(|x| bytemuck::bytes_of_mut(x).reverse());
        }
        Ok(v)
    }

    /// A Q8_0 tensor as int8 weights without requantizing: symmetric groups of 32 along the
    /// last axis of [`TensorInfo::shape`], one scale per block (its f16 `d` widened to f32),
    /// the ints as stored, so [`QuantizedTensor::dequantize`] equals llama.cpp's
    /// `dequantize_row_q8_0` value for value.
    ///
    /// Blocks outside this library's scale contract are written another way with the same
    /// values: `d = 0` as scale 1 and ints 0 (llama.cpp's −0 for a negative int is +0 here),
    /// `d < 0` as `−d` and `−q`. A negative `d` with an int −128 is an
    /// [`Error::Unsupported`] (128 does not fit int8), an infinite or NaN `d`
    /// [`Error::Corrupt`], another type [`Error::Unsupported`].
    pub fn tensor_q8_0(&self, name: &str) -> Result<QuantizedTensor> {
        tensors::q8_0(self.tensor(name)?, self.tensor_bytes(name)?)
    }
}
