//! Host side of `ops.wgsl`, the decoder's own (non-linear) kernels: one pipeline per kernel and
//! variant, compiled once; [`Dispatch`]es with their parameters and bind groups made once and
//! recorded into any compute pass any number of times.
//!
//! Application code on plain wgpu: it shares int8-wgpu's device ([`Gpu::device`]) and buffers.

use std::collections::HashMap;
use std::sync::Mutex;

use int8_wgpu::{DType, Gpu};
use wgpu::util::DeviceExt;

use crate::Result;

/// The WGSL source.
pub const SOURCE: &str = include_str!("ops.wgsl");

/// Threads per workgroup of the 1-D kernels (`WG` in the shader).
const WG: u32 = 64;
/// The dense kernel's outputs per workgroup along each axis (8 x 8 threads of 4 x 4).
const DENSE_TILE: u32 = 32;

/// The uniform every kernel reads (`Params` in the shader; 32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Rows: tokens in the pass.
    pub m: u32,
    /// Columns: the hidden size, or a dense layer's out features.
    pub n: u32,
    /// Dense: in features. Attention: rows of the KV cache.
    pub k: u32,
    /// Query heads.
    pub heads: u32,
    /// Key/value heads.
    pub kv_heads: u32,
    /// Columns per head.
    pub head_dim: u32,
    /// RMSNorm epsilon.
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
    /// Read-write outputs `out0`..`out2`.
    pub const OUT: [u32; 3] = [6, 7, 8];
}

/// The kernels of `ops.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Token embedding lookup in an f32 table.
    Embed,
    /// Token embedding lookup in a Q8_0 table (int8 and a scale per 32 values).
    EmbedQ8,
    /// (Residual add +) RMSNorm.
    RmsNorm,
    /// RoPE on queries and keys; keys and values into the KV cache.
    RopeKv,
    /// Causal grouped-query attention over the KV cache.
    Attention,
    /// silu(gate) · up.
    Swiglu,
    /// Dense f32 `x · wᵀ` (the f32 baseline's linear layers).
    Dense,
}

impl Kernel {
    /// The entry point's name.
    pub fn entry(self) -> &'static str {
        match self {
            Kernel::Embed => "embed",
            Kernel::EmbedQ8 => "embed_q8",
            Kernel::RmsNorm => "rms_norm",
            Kernel::RopeKv => "rope_kv",
            Kernel::Attention => "attention",
            Kernel::Swiglu => "swiglu",
            Kernel::Dense => "dense",
        }
    }

    /// The binding slots the entry point uses, besides `PARAMS`: a bind group for a pipeline
    /// with an automatic layout must name exactly these.
    pub fn slots(self) -> &'static [u32] {
        match self {
            Kernel::Embed | Kernel::Swiglu | Kernel::Dense => &[1, 2, 6],
            Kernel::EmbedQ8 => &[1, 2, 3, 6],
            Kernel::RmsNorm => &[1, 2, 6, 7],
            Kernel::RopeKv => &[1, 2, 3, 4, 5, 6, 7, 8],
            Kernel::Attention => &[1, 2, 3, 4, 6, 7],
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
    /// RMSNorm adds a linear layer's output into the residual stream first (`HAS_RES`).
    pub residual: bool,
}

impl Default for Variant {
    fn default() -> Self {
        Self { in_dt: DType::F32, out_dt: DType::F32, residual: false }
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
    /// panic.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let device = gpu.device();
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("llm kernels"),
            source: wgpu::ShaderSource::Wgsl(SOURCE.into()),
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
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
            unused_in: placeholder("llm unused input"),
            unused_out: placeholder("llm unused output"),
        })
    }

    fn pipeline(&self, kernel: Kernel, v: Variant) -> Result<wgpu::ComputePipeline> {
        let mut cache = self.pipelines.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = cache.get(&(kernel, v)) {
            return Ok(p.clone());
        }
        let device = self.gpu.device();
        let constants = [
            ("IN_DT", dtype_code(v.in_dt)),
            ("OUT_DT", dtype_code(v.out_dt)),
            ("HAS_RES", f64::from(u8::from(v.residual))),
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
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(format!("compiling kernel {} {v:?}: {e}", kernel.entry()).into());
        }
        cache.insert((kernel, v), pipeline.clone());
        Ok(pipeline)
    }

    /// Prepares a launch of `kernel` as `params` say, with `buffers` at their slots. Slots the
    /// kernel uses but `buffers` omits get a placeholder.
    pub fn dispatch(
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
        let pipeline = self.pipeline(kernel, variant)?;
        let device = self.gpu.device();
        let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("llm params"),
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
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(format!("binding kernel {}: {e}", kernel.entry()).into());
        }
        let groups = match kernel {
            Kernel::RmsNorm => params.m,
            Kernel::Attention => params.m * params.heads,
            Kernel::Embed | Kernel::EmbedQ8 => (params.m * params.n).div_ceil(WG),
            Kernel::Swiglu => (params.m * params.n).div_ceil(2 * WG),
            Kernel::RopeKv => (params.m * params.heads * (params.head_dim / 2)).div_ceil(WG),
            Kernel::Dense => {
                let grid = [params.n.div_ceil(DENSE_TILE), params.m.div_ceil(DENSE_TILE), 1];
                return Ok(Dispatch { pipeline, group, grid: self.checked(grid)? });
            }
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

/// Creates an application storage buffer (`STORAGE | COPY_SRC | COPY_DST`) of `size` bytes,
/// zeroed, or holding `contents`; refuses sizes over the device's binding limit.
pub fn storage(gpu: &Gpu, label: &str, size: u64, contents: Option<&[u8]>) -> Result<wgpu::Buffer> {
    let limit = gpu.max_binding_size();
    let size = size.div_ceil(4).max(1) * 4;
    if size > limit {
        return Err(format!("{label} needs {size} bytes in one binding; this device binds at most {limit}").into());
    }
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let device = gpu.device();
    let scope = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let buffer = match contents {
        Some(bytes) if bytes.len() as u64 == size => {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents: bytes, usage })
        }
        Some(bytes) => {
            let mut padded = bytes.to_vec();
            padded.resize(size as usize, 0);
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: &padded,
                usage,
            })
        }
        None => {
            device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage, mapped_at_creation: false })
        }
    };
    if let Some(e) = pollster::block_on(scope.pop()) {
        return Err(format!("allocating {size} bytes for {label}: {e}").into());
    }
    Ok(buffer)
}

/// Reads `size` bytes of a `MAP_READ` buffer after the work submitted so far; waits.
pub fn read_mapped(gpu: &Gpu, staging: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    staging.map_async(wgpu::MapMode::Read, ..size, move |r| {
        let _ = tx.send(r);
    });
    gpu.synchronize()?;
    rx.recv().map_err(|_| "the readback mapping was dropped (device lost?)")??;
    let bytes = staging.get_mapped_range(..size)?.to_vec();
    staging.unmap();
    Ok(bytes)
}
