//! The crate's one error type.

use crate::DType;

/// Everything that can go wrong in this crate.
///
/// Messages are written for the person reading them: they say what was wrong and, where there
/// is one, what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No GPU adapter could be opened.
    #[error(
        "no GPU adapter found for backends {backends} ({detail}). On a Linux machine without a GPU, \
         install Mesa's software drivers (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers` for \
         Vulkan/lavapipe, `libegl1 libgl1-mesa-dri` for GL/llvmpipe); choose a backend with \
         WGPU_BACKEND=vulkan|gl|metal|dx12 and an adapter with WGPU_ADAPTER_NAME"
    )]
    NoAdapter {
        /// The backends that were searched.
        backends: String,
        /// What wgpu reported.
        detail: String,
    },
    /// The adapter refused to open a device.
    #[error("could not open a device on adapter `{adapter}`: {detail}")]
    RequestDevice {
        /// The adapter's name.
        adapter: String,
        /// What wgpu reported.
        detail: String,
    },
    /// A shape is invalid or does not match what the operation needs.
    #[error("shape error: {0}")]
    Shape(String),
    /// A tensor or dimension is empty.
    #[error("empty input: {0} has no elements (zero-size dimension)")]
    Empty(String),
    /// A dtype does not match what the operation needs.
    #[error("dtype mismatch for {what}: expected {expected}, found {found}")]
    DType {
        /// What was being checked.
        what: String,
        /// The dtype that was needed.
        expected: DType,
        /// The dtype that was given.
        found: DType,
    },
    /// An option is invalid: a device option (in [`GpuOptions`](crate::GpuOptions) or
    /// `INT8_WGPU_DISABLE`), an LLM.int8() outlier threshold, or an option the chosen method has none of.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// A quantization scheme does not fit the tensor.
    #[error("invalid quantization scheme: {0}")]
    Scheme(String),
    /// An input holds NaN or an infinity.
    #[error("{what} holds a non-finite value {value} at position {position:?} (flat index {index})")]
    NonFinite {
        /// Which input.
        what: String,
        /// Multi-dimensional position of the first non-finite value.
        position: Vec<usize>,
        /// Flat (row-major) index of that value.
        index: usize,
        /// The value itself.
        value: f32,
    },
    /// The range of a channel does not fit in f32 arithmetic: its scale would overflow, or
    /// dequantizing with it would (scales up to `f32::MAX / 128`, asymmetric `f32::MAX / 256`).
    #[error(
        "the value range of quantization parameter {param} overflows f32 (its scale times the int8 \
         range is infinite); rescale the weights{}",
        if *.symmetric { "" } else { ", or use the symmetric scheme (it allows twice the range)" }
    )]
    RangeOverflow {
        /// Index of the offending scale (channel or group).
        param: usize,
        /// Whether the scheme was symmetric already (then rescaling is the only remedy).
        symmetric: bool,
    },
    /// A scale is outside the range every path can compute with.
    #[error(
        "scale {index} is {value:e}; scales must be positive normal f32 values in [{min:e}, {max:e}] \
         (larger ones overflow when dequantized); the checkpoint or the given scales are corrupt"
    )]
    BadScale {
        /// Index of the scale (channel or group).
        index: usize,
        /// The scale.
        value: f32,
        /// The smallest allowed scale (`f32::MIN_POSITIVE`).
        min: f32,
        /// The largest allowed scale for the scheme's mode.
        max: f32,
    },
    /// A result overflowed its dtype although every input was finite.
    #[error(
        "{what} overflows: finite inputs gave {value} at position {position:?} (flat index {index}); {}",
        overflow_advice(*.dtype)
    )]
    Overflow {
        /// Which result.
        what: String,
        /// The dtype it overflowed.
        dtype: DType,
        /// Multi-dimensional position of the first non-finite result.
        position: Vec<usize>,
        /// Flat (row-major) index of that result.
        index: usize,
        /// The result (±inf or NaN).
        value: f32,
    },
    /// A tensor is too large for the device or for 32-bit indexing.
    #[error("{what} is too large: {size} exceeds the limit {limit}")]
    TooLarge {
        /// What was too large.
        what: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The device could not allocate a buffer. Nothing was left half-made: the call that
    /// allocated returns this, and later calls are unaffected.
    #[error(
        "out of GPU memory: allocating {bytes} bytes for {what} failed; free GPU buffers (drop \
         layers or tensors), use smaller batches, or a device with more memory"
    )]
    OutOfMemory {
        /// What was being allocated.
        what: String,
        /// The size asked for.
        bytes: u64,
    },
    /// wgpu reported an error (validation, out of memory, a failed buffer mapping).
    #[error("GPU error: {0}")]
    Gpu(String),
    /// A tensor, buffer, layer or command encoder belongs to another device than the one it is
    /// used with.
    #[error("wrong device: {0}")]
    WrongDevice(String),
    /// A buffer lacks a usage flag the operation needs (`STORAGE` to bind it, `COPY_SRC` to
    /// read it back).
    #[error("buffer usage: {0}")]
    BufferUsage(String),
    /// An output would overwrite an input of the same operation (the layer's input, its bias,
    /// or another layer's bias), or shares a buffer with one, which wgpu cannot bind both
    /// read-only and writable in one dispatch.
    #[error("aliasing: {0}")]
    Aliasing(String),
    /// An offset into a buffer is not aligned as the device requires: a tensor's offset
    /// ([`GpuTensor::from_buffer_range`](crate::GpuTensor::from_buffer_range)) must be a
    /// multiple of `min_storage_buffer_offset_alignment`, a copy's a multiple of 4 bytes.
    #[error("alignment: {0}")]
    Alignment(String),
    /// A file or folder could not be read or written.
    #[error("{op} `{}`: {source}", path.display())]
    Io {
        /// What was being done (`reading`, `writing`, `creating folder`, ...).
        op: &'static str,
        /// The file or folder.
        path: std::path::PathBuf,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// A tuning file (`Gpu::load_tuning`) or tuning JSON text
    /// ([`Gpu::load_tuning_json`](crate::Gpu::load_tuning_json)) is not valid: not JSON, not
    /// tuning JSON, or an entry is malformed. Nothing was loaded.
    #[error("{} is corrupt: {detail}; delete it and tune again", tuning_source(path))]
    TuningCorrupt {
        /// The file; empty for JSON text (messages then say `tuning JSON text`).
        path: std::path::PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// A tuning file or tuning JSON text was measured on another adapter or driver, or written
    /// in another format version: its choices would not be this device's fastest. Nothing was
    /// loaded.
    #[error(
        "{} does not apply here: {detail}; nothing was loaded: tune on this device and save again",
        tuning_source(path)
    )]
    TuningMismatch {
        /// The file; empty for JSON text (messages then say `tuning JSON text`).
        path: std::path::PathBuf,
        /// What differs.
        detail: String,
    },
    // The checkpoint errors below read `checkpoint error: ...` (all but `Unsupported`, which
    // also covers kernel and driver limits); the variant says which kind of problem it is.
    // Each message names the file or tensor and says what to do.
    /// A checkpoint file is truncated, corrupt, or changed while it was read; or its sizes are
    /// implausible. Re-download or re-export it.
    #[error("checkpoint error: {0}")]
    Corrupt(String),
    /// A path the library reads (a checkpoint's file, a tuning file) is not a regular file (nor
    /// a link to one): a FIFO, socket, device or folder; or a path a tuning file is saved to
    /// holds something other than a regular file (a link included), which is never replaced.
    /// It is refused without being opened, so it never blocks.
    #[error("`{}` is {kind}, not a regular file", path.display())]
    NotRegularFile {
        /// The path.
        path: std::path::PathBuf,
        /// What it is instead: `a FIFO`, `a socket`, `a character device`, `a block device`,
        /// `a folder`, `a symbolic link` or `a special file`.
        kind: &'static str,
    },
    /// The shard index (`model.safetensors.index.json`) is malformed or does not match the
    /// shards: an empty or missing `weight_map`, a shard name that is not a plain file name, a
    /// tensor listed in the wrong shard, missing from the index, or in two shards.
    #[error("checkpoint error: {0}")]
    Index(String),
    /// What was asked for is not in the checkpoint: a tensor or quantized layer name, or the
    /// model file of a folder.
    #[error("checkpoint error: {0}")]
    NotFound(String),
    /// Something well-formed this crate cannot do as asked: a checkpoint tensor of the wrong
    /// dtype, a quantized layer in another layout or bit width, an input already quantized or
    /// whose tensor names would collide with ours; or a kernel or driver limit.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The output cannot be written as asked: it exists (or appeared during the run) without
    /// overwriting allowed, is not a folder, is or holds the input, or could not be moved into
    /// place.
    #[error("checkpoint error: {0}")]
    Output(String),
    /// The run was interrupted: its temporary output folder was removed (by
    /// `quantizer::remove_temp_folders`, typically from a signal
    /// handler), so it wrote no output.
    #[error("checkpoint error: the run was interrupted: its temporary output folder `{}` was removed", folder.display())]
    Interrupted {
        /// The temporary folder that was removed.
        folder: std::path::PathBuf,
    },
    /// An operation on one named tensor of a checkpoint failed, and the error's own message
    /// does not name the tensor (one that does is returned as it is).
    #[error("tensor `{name}`: {source}")]
    Tensor {
        /// The tensor (or layer) name.
        name: String,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
}

/// What to do about an [`Error::Overflow`] in `dtype`.
fn overflow_advice(dtype: DType) -> &'static str {
    match dtype {
        DType::F16 => "scale the inputs down or use an activation dtype with more range (bf16 or f32 instead of f16)",
        DType::BF16 | DType::F32 => {
            "scale the inputs down: the result or a partial sum is beyond about 3.4e38, the range of bf16 and f32"
        }
    }
}

// Checkpoint files and the quantizer's are what name paths; checkpoints (files or bytes) name tensors.
impl Error {
    /// Wraps an I/O error with the operation and the path it concerned.
    #[cfg(feature = "files")]
    pub(crate) fn io(op: &'static str, path: impl Into<std::path::PathBuf>, source: std::io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }

    /// Attaches a tensor name to an error, unless its message already names the tensor (as
    /// `` `name` `` or one of its tensors `` `name.…` ``): the name is said once.
    pub(crate) fn in_tensor(self, name: &str) -> Self {
        match self {
            e @ Error::Tensor { .. } => e,
            e if names_tensor(&e.to_string(), name) => e,
            e => Error::Tensor { name: name.to_string(), source: Box::new(e) },
        }
    }
}

/// How tuning errors name where the tuning came from: `tuning file `path``, or `tuning JSON
/// text` for an empty path ([`crate::Gpu::load_tuning_json`]).
pub(crate) fn tuning_source(path: &std::path::Path) -> String {
    if path.as_os_str().is_empty() { "tuning JSON text".into() } else { format!("tuning file `{}`", path.display()) }
}

fn names_tensor(message: &str, name: &str) -> bool {
    message.contains(&format!("`{name}`")) || message.contains(&format!("`{name}."))
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The advice of an overflow fits its dtype: more range for f16, none to gain beyond f32.
    #[test]
    fn overflow_advice_fits_the_dtype() {
        let e = |dtype| Error::Overflow { what: "y".into(), dtype, position: vec![0], index: 0, value: f32::INFINITY };
        assert!(e(DType::F16).to_string().contains("bf16 or f32 instead of f16"));
        for dtype in [DType::BF16, DType::F32] {
            let m = e(dtype).to_string();
            assert!(!m.contains("instead of f16") && m.contains("scale the inputs down"), "{m}");
        }
    }
}
