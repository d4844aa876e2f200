//! Host side of `ops.wgsl`, the example's own (non-linear) kernels: one pipeline per kernel
//! and variant, compiled once; [`Dispatch`]es with their parameters and bind groups made once
//! and recorded into any compute pass any number of times.
//!
//! This is application code on plain wgpu: it shares int8-wgpu's device ([`Gpu::device`]) and
//! buffers, and nothing here is part of the library. Its core is async (a browser cannot block:
//! `examples/web`); natively the blocking forms (`Kernels::new`, `dispatch`, `storage`,
//! `read_mapped`) block on it, where a popped error scope is ready at once.

use std::collections::HashMap;
use std::sync::Mutex;

use int8_wgpu::{DType, Gpu};
use wgpu::util::DeviceExt;

/// The example's error type: library errors, tokenizer errors and its own messages alike.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// The WGSL source.
pub const SOURCE: &str = include_str!("ops.wgsl");

// The app's buffers and readback, in their own file; `ops::storage` etc. stay their names.
#[path = "buffers.rs"]
mod buffers;
// The blocking forms serve native callers; not every program that includes this file uses both.
#[cfg(not(target_arch = "wasm32"))]
#[allow(unused_imports)]
pub use buffers::{read_mapped, storage};
pub use buffers::{read_mapped_async, settle, storage_async};

/// Threads per workgroup of the 1-D kernels (`WG` in the shader).
const WG: u32 = 64;
/// The dense kernel's outputs per workgroup along each axis (8 x 8 threads of 4 x 4).
const DENSE_TILE: u32 = 32;

/// The uniform every kernel reads (`Params` in the shader; 32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Rows: tokens (batch x seq), or sentences for `l2_normalize`.
    pub m: u32,
    /// Columns: the hidden size, or a dense layer's out features.
    pub n: u32,
    /// Dense: in features. Embed: rows of the position table.
    pub k: u32,
    /// Tokens per (padded) sentence.
    pub seq: u32,
    /// Attention heads.
    pub heads: u32,
    /// Columns per head.
    pub head_dim: u32,
    /// LayerNorm epsilon.
    pub eps: f32,
    /// Attention score scale, 1 / sqrt(head_dim).
    pub scale: f32,
}

/// Binding slots of `ops.wgsl`.
pub mod slot {
    /// The `Params` uniform.
    pub const PARAMS: u32 = 0;
    /// Read-only inputs `in0`..`in4`.
    pub const IN: [u32; 5] = [1, 2, 3, 4, 5];
    /// Read-write outputs `out0`, `out1`.
    pub const OUT: [u32; 2] = [6, 7];
}

/// The kernels of `ops.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Word + token type + position embeddings.
    Embed,
    /// (Residual add +) LayerNorm, optionally also written in the activation dtype.
    LayerNorm,
    /// Attention probabilities: scaled scores, padding mask, softmax.
    AttentionProbs,
    /// Attention context: probabilities times values.
    AttentionContext,
    /// GELU, erf form.
    Gelu,
    /// Mean over each sentence's unmasked tokens.
    MeanPool,
    /// Rows divided by their L2 norm.
    L2Normalize,
    /// Dense f32 linear `x · wᵀ + b` (the f32 baseline's linear layers).
    Dense,
}

impl Kernel {
    /// Every kernel.
    pub const ALL: [Kernel; 8] = [
        Kernel::Embed,
        Kernel::LayerNorm,
        Kernel::AttentionProbs,
        Kernel::AttentionContext,
        Kernel::Gelu,
        Kernel::MeanPool,
        Kernel::L2Normalize,
        Kernel::Dense,
    ];

    /// The entry point's name.
    pub fn entry(self) -> &'static str {
        match self {
            Kernel::Embed => "embed",
            Kernel::LayerNorm => "layer_norm",
            Kernel::AttentionProbs => "attention_probs",
            Kernel::AttentionContext => "attention_context",
            Kernel::Gelu => "gelu",
            Kernel::MeanPool => "mean_pool",
            Kernel::L2Normalize => "l2_normalize",
            Kernel::Dense => "dense",
        }
    }

    /// The binding slots the entry point uses, besides `PARAMS`: a bind group for a pipeline
    /// with an automatic layout must name exactly these.
    pub fn slots(self) -> &'static [u32] {
        // slot::IN = 1..=5, slot::OUT = 6, 7 (literals: a returned slice must be constant).
        match self {
            Kernel::Embed => &[1, 2, 3, 4, 5, 6],
            Kernel::LayerNorm => &[1, 2, 3, 4, 6, 7],
            Kernel::AttentionProbs => &[1, 2, 4, 6],
            Kernel::AttentionContext => &[1, 3, 6],
            Kernel::Gelu | Kernel::L2Normalize => &[1, 6],
            Kernel::MeanPool => &[1, 4, 6],
            Kernel::Dense => &[1, 2, 3, 6],
        }
    }
}

/// Override constants of a pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Variant {
    /// dtype of inputs that are a linear layer's output (`IN_DT`).
    pub in_dt: DType,
    /// dtype of outputs that are a linear layer's input (`OUT_DT`).
    pub out_dt: DType,
    /// LayerNorm adds an f32 residual first (`HAS_RES`).
    pub residual: bool,
    /// LayerNorm also writes its result in `out_dt` (`WRITE_ACT`).
    pub write_act: bool,
}

impl Default for Variant {
    fn default() -> Self {
        Self { in_dt: DType::F32, out_dt: DType::F32, residual: false, write_act: false }
    }
}

fn dtype_code(d: DType) -> f64 {
    match d {
        DType::F32 => 0.0,
        DType::F16 => 1.0,
        DType::BF16 => 2.0,
    }
}

/// One recorded kernel launch: pipeline, bind group (parameters included) and grid, all made
/// once.
#[derive(Debug)]
pub struct Dispatch {
    pipeline: wgpu::ComputePipeline,
    group: wgpu::BindGroup,
    grid: [u32; 3],
}

impl Dispatch {
    /// Records the launch into a compute pass.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.group, &[]);
        pass.dispatch_workgroups(self.grid[0], self.grid[1], self.grid[2]);
    }
}

/// The compiled shader, its pipelines (made on first use of each kernel and variant) and two
/// placeholder buffers for bindings a variant does not use.
pub struct Kernels {
    gpu: Gpu,
    module: wgpu::ShaderModule,
    pipelines: Mutex<HashMap<(Kernel, Variant), wgpu::ComputePipeline>>,
    /// Placeholders: one bound read-only, one read-write (one buffer in both would be a usage
    /// conflict within a dispatch).
    unused_in: wgpu::Buffer,
    unused_out: wgpu::Buffer,
}

impl Kernels {
    /// Compiles `ops.wgsl` on the device; a shader the device rejects is an error, not a
    /// panic. Blocks on [`Kernels::new_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(gpu: &Gpu) -> Result<Self> {
        pollster::block_on(Self::new_async(gpu))
    }

    /// Async form of [`Kernels::new`].
    pub async fn new_async(gpu: &Gpu) -> Result<Self> {
        let device = gpu.device();
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("minilm app kernels"),
            source: wgpu::ShaderSource::Wgsl(SOURCE.into()),
        });
        if let Some(e) = scope.pop().await {
            return Err(format!("compiling ops.wgsl: {e}").into());
        }
        let placeholder = |label| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        Ok(Self {
            gpu: gpu.clone(),
            module,
            pipelines: Mutex::default(),
            unused_in: placeholder("minilm unused input"),
            unused_out: placeholder("minilm unused output"),
        })
    }

    /// The device these kernels run on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    async fn pipeline(&self, kernel: Kernel, v: Variant) -> Result<wgpu::ComputePipeline> {
        let cached = self.pipelines.lock().unwrap_or_else(|p| p.into_inner()).get(&(kernel, v)).cloned();
        if let Some(p) = cached {
            return Ok(p);
        }
        let device = self.gpu.device();
        let constants = [
            ("IN_DT", dtype_code(v.in_dt)),
            ("OUT_DT", dtype_code(v.out_dt)),
            ("HAS_RES", f64::from(u8::from(v.residual))),
            ("WRITE_ACT", f64::from(u8::from(v.write_act))),
        ];
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.entry()),
            layout: None,
            module: &self.module,
            entry_point: Some(kernel.entry()),
            compilation_options: wgpu::PipelineCompilationOptions { constants: &constants, ..Default::default() },
            cache: None,
        });
        if let Some(e) = scope.pop().await {
            return Err(format!("compiling kernel {} {v:?}: {e}", kernel.entry()).into());
        }
        self.pipelines.lock().unwrap_or_else(|p| p.into_inner()).insert((kernel, v), pipeline.clone());
        Ok(pipeline)
    }

    /// Prepares a launch of `kernel` over `threads` (1-D kernels), `rows` workgroups
    /// (`LayerNorm`, `L2Normalize`) or the `[m, n]` output (`Dense`), as `params` say, with
    /// `buffers` at their slots. Slots the kernel uses but `buffers` omits get a placeholder.
    /// Blocks on [`Kernels::dispatch_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn dispatch(
        &self,
        kernel: Kernel,
        variant: Variant,
        params: Params,
        buffers: &[(u32, &wgpu::Buffer)],
    ) -> Result<Dispatch> {
        pollster::block_on(self.dispatch_async(kernel, variant, params, buffers))
    }

    /// Async form of [`Kernels::dispatch`].
    pub async fn dispatch_async(
        &self,
        kernel: Kernel,
        variant: Variant,
        params: Params,
        buffers: &[(u32, &wgpu::Buffer)],
    ) -> Result<Dispatch> {
        for (s, _) in buffers {
            if !kernel.slots().contains(s) {
                return Err(format!("kernel {} has no binding {s}", kernel.entry()).into());
            }
        }
        let pipeline = self.pipeline(kernel, variant).await?;
        let device = self.gpu.device();
        let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("minilm params"),
            contents: bytemuck::bytes_of(&params),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let mut entries = vec![wgpu::BindGroupEntry { binding: slot::PARAMS, resource: uniform.as_entire_binding() }];
        for &s in kernel.slots() {
            let buffer = match buffers.iter().find(|(b, _)| *b == s) {
                Some((_, b)) => *b,
                None if slot::OUT.contains(&s) => &self.unused_out,
                None => &self.unused_in,
            };
            entries.push(wgpu::BindGroupEntry { binding: s, resource: buffer.as_entire_binding() });
        }
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.entry()),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        if let Some(e) = scope.pop().await {
            return Err(format!("binding kernel {}: {e}", kernel.entry()).into());
        }
        let groups = match kernel {
            Kernel::LayerNorm | Kernel::L2Normalize => params.m,
            Kernel::Dense => {
                let grid = [params.n.div_ceil(DENSE_TILE), params.m.div_ceil(DENSE_TILE), 1];
                return Ok(Dispatch { pipeline, group, grid: self.checked(grid)? });
            }
            Kernel::Embed | Kernel::AttentionContext => (params.m * (params.n / 2)).div_ceil(WG),
            Kernel::Gelu => (params.m * params.n).div_ceil(2 * WG),
            Kernel::AttentionProbs => (params.m * params.heads).div_ceil(WG),
            Kernel::MeanPool => ((params.m / params.seq.max(1)) * params.n).div_ceil(WG),
        };
        // Workgroup counts above the per-dimension limit continue along y (`flat` in the shader).
        let max = self.gpu.limits().max_compute_workgroups_per_dimension.max(1);
        let grid = if groups <= max { [groups.max(1), 1, 1] } else { [max, groups.div_ceil(max), 1] };
        Ok(Dispatch { pipeline, group, grid: self.checked(grid)? })
    }

    fn checked(&self, grid: [u32; 3]) -> Result<[u32; 3]> {
        let max = self.gpu.limits().max_compute_workgroups_per_dimension;
        if grid.iter().any(|&g| g > max) {
            return Err(format!("a launch of {grid:?} workgroups exceeds the device's {max} per dimension").into());
        }
        Ok(grid)
    }
}
