//! The device's read limit: the fastest of several kernels that only read a buffer, timed in
//! the same run as the kernels they are a yardstick for.
//!
//! One read kernel is not the limit: which access pattern reads fastest depends on the device
//! (and on a shared VM, on the day). Nor is one timing: on a loaded machine a read comes out
//! slow, never fast, and a limit that came out low makes every kernel look close to it. So the
//! limit is the fastest round of every pattern of `bench/shaders/read_limit.wgsl` over several
//! rounds ([`ReadLimit::estimate`]), quoted with that pattern's spread over the rounds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use int8_wgpu::gpu::Timing;
use int8_wgpu::{Error, Gpu, Result};

use crate::wgpu_util::{self, Dispatches, entry, grid, layout, read_bytes, zeroed};

const SOURCE: &str = include_str!("../shaders/read_limit.wgsl");

/// Bytes of one uniform window (`WINDOW_UNITS` vec4s in the shader).
const WINDOW: u64 = 64 << 10;
/// Threads per workgroup of the storage kernels (`WG` in the shader).
const WG: u64 = 256;
/// Workgroups per uniform window: the shader needs a divisor of 4096 / 64. Two read fastest
/// on lavapipe (2 cores; 1, 2, 8, 32 and 64 tried). Eight windows per dispatch, bound at eight
/// bindings and picked by a switch in the loop, read 2-4x slower than one, so one it is.
const WINDOW_GROUPS: u32 = 2;

/// One read pattern of the read-limit kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReadKernel {
    /// Storage buffer, one `vec4<u32>` per thread per step, grid-stride (the old roofline).
    Vec4Strided,
    /// Storage buffer, four `vec4<u32>` per thread per step, each a grid apart.
    Vec4X4,
    /// Storage buffer, a contiguous run of `vec4<u32>` per thread.
    Vec4Blocked,
    /// Storage buffer, a contiguous run per thread read four neighbouring `vec4<u32>` (64
    /// bytes) per step.
    Vec4BlockedX4,
    /// Storage buffer, one `u32` per thread per step, grid-stride.
    U32Strided,
    /// Uniform buffer: 64 KiB windows bound one after another, one dispatch each.
    UniformWindows,
}

impl ReadKernel {
    /// Every pattern, in the order the benches print them.
    pub const ALL: [ReadKernel; 6] = [
        ReadKernel::Vec4Strided,
        ReadKernel::Vec4X4,
        ReadKernel::Vec4Blocked,
        ReadKernel::Vec4BlockedX4,
        ReadKernel::U32Strided,
        ReadKernel::UniformWindows,
    ];

    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            ReadKernel::Vec4Strided => "storage vec4 strided",
            ReadKernel::Vec4X4 => "storage 4 x vec4 strided",
            ReadKernel::Vec4Blocked => "storage vec4 blocked",
            ReadKernel::Vec4BlockedX4 => "storage 4 x vec4 blocked",
            ReadKernel::U32Strided => "storage u32 strided",
            ReadKernel::UniformWindows => "uniform 64 KiB windows",
        }
    }

    fn entry(self) -> &'static str {
        match self {
            ReadKernel::Vec4Strided => "vec4_strided",
            ReadKernel::Vec4X4 => "vec4_x4",
            ReadKernel::Vec4Blocked => "vec4_blocked",
            ReadKernel::Vec4BlockedX4 => "vec4_blocked_x4",
            ReadKernel::U32Strided => "u32_strided",
            ReadKernel::UniformWindows => "uniform_windows",
        }
    }

    fn uniform(self) -> bool {
        self == ReadKernel::UniformWindows
    }
}

/// The read limit taken from several timed rounds of every pattern ([`ReadLimit::estimate`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReadLimitEstimate {
    /// The pattern whose fastest round was the fastest of all.
    pub kernel: ReadKernel,
    /// The limit: GB/s of that round.
    pub gb_per_s: f64,
    /// GB/s of the same pattern's median round.
    pub median: f64,
    /// GB/s of the same pattern's slowest round: far below the limit, the machine was busy.
    pub slowest: f64,
    /// Rounds of the pattern the figures are taken over.
    pub rounds: usize,
}

/// A buffer of `bytes` pseudo-random bytes on the device and the read kernels over it (built
/// without wgpu's bounds checks, which the kernels' indexing makes unnecessary).
pub struct ReadLimit {
    gpu: Gpu,
    bytes: u64,
    /// Storage bindings of at most the device's limit, each a whole number of windows (the
    /// last padded with zeros, which the storage kernels do not read).
    blocks: Vec<(wgpu::Buffer, u64)>,
    /// XOR of every u32 word of the data.
    xor: u32,
    module: wgpu::ShaderModule,
    storage_layout: (wgpu::BindGroupLayout, wgpu::PipelineLayout),
    uniform_layout: (wgpu::BindGroupLayout, wgpu::PipelineLayout),
    /// Each kernel's timing dispatches, made at its first [`ReadLimit::time`]: the benches time
    /// a kernel dozens of times, and lavapipe compiles a pipeline in tens of milliseconds.
    timed: Mutex<HashMap<ReadKernel, Arc<(Dispatches, wgpu::Buffer)>>>,
}

impl std::fmt::Debug for ReadLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadLimit").field("bytes", &self.bytes).field("bindings", &self.blocks.len()).finish()
    }
}

impl ReadLimit {
    /// Uploads `bytes` (rounded up to 16) of pseudo-random data, in as many bindings as needed.
    pub fn new(gpu: &Gpu, bytes: u64) -> Result<Self> {
        let bytes = bytes.max(16).next_multiple_of(16);
        // Whole windows per block where the binding limit allows, so no window straddles two.
        // At most 4 GiB per binding, so unit and word counts fit the kernels' u32 indices.
        let limit = gpu.max_binding_size().min(1 << 32);
        let per = if limit >= WINDOW { limit / WINDOW * WINDOW } else { (limit / 16 * 16).max(16) };
        let mut blocks = Vec::new();
        let mut xor = 0u32;
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut left = bytes;
        while left > 0 {
            let b = left.min(per);
            let size = if per.is_multiple_of(WINDOW) { b.next_multiple_of(WINDOW) } else { b };
            let mut words = vec![0u32; (size / 4) as usize];
            for w in &mut words[..(b / 4) as usize] {
                // xorshift64: data with no pattern a driver could compress or skip.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *w = (state >> 32) as u32;
                xor ^= *w;
            }
            let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST;
            blocks.push((wgpu_util::buffer(gpu, "int8-wgpu read limit", bytemuck::cast_slice(&words), usage)?, b));
            left -= b;
        }
        let device = gpu.device();
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some("read_limit.wgsl"),
            source: wgpu::ShaderSource::Wgsl(SOURCE.into()),
        };
        // Without wgpu's injected bounds checks and loop bounding: the limit is what the device
        // can read, not what checked code can (the checks cost these kernels 1-15 % on lavapipe;
        // the library's own kernels keep them).
        let checks = wgpu::ShaderRuntimeChecks {
            bounds_checks: false,
            force_loop_bounding: false,
            ..wgpu::ShaderRuntimeChecks::checked()
        };
        // SAFETY: every index is in bounds and every loop ends, by construction and by the
        // bindings `prepare` makes: the storage kernels index `data` below `p.units` (`words`
        // below `4 * p.units`), which is the bound block's data size / 16; `uniform_windows`
        // indexes below `(wg + 1) * 4096 / nwg.x <= 4096`, the window's length, with
        // WINDOW_GROUPS dividing 4096 / 64. Each loop's index grows by at least 1 per step to a
        // bound below 2^32 - stride, so it cannot wrap.
        let module = unsafe { device.create_shader_module_trusted(desc, checks) };
        let storage = wgpu::BufferBindingType::Storage { read_only: true };
        let storage_layout = layout(gpu, "read_limit.wgsl", &[(0, wgpu::BufferBindingType::Uniform), (2, storage)]);
        let uniform_layout = layout(gpu, "read_limit.wgsl", &[(2, wgpu::BufferBindingType::Uniform)]);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("compiling read_limit.wgsl: {e}")));
        }
        let timed = Mutex::default();
        Ok(Self { gpu: gpu.clone(), bytes, blocks, xor, module, storage_layout, uniform_layout, timed })
    }

    /// Bytes read per iteration.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The patterns this device can run: all but the uniform windows where a uniform binding
    /// of 64 KiB is over the device's limit, or a storage binding is under it.
    pub fn kernels(&self) -> Vec<ReadKernel> {
        let windows = self.gpu.limits().max_uniform_buffer_binding_size >= WINDOW
            && self.blocks.iter().all(|(b, _)| b.size().is_multiple_of(WINDOW));
        ReadKernel::ALL.into_iter().filter(|k| windows || !k.uniform()).collect()
    }

    /// Times `iters` full reads with `kernel`, recorded into one pass.
    pub fn time(&self, kernel: ReadKernel, iters: u32) -> Result<Timing> {
        let prepared = {
            let mut timed = self.timed.lock().unwrap_or_else(|p| p.into_inner());
            match timed.get(&kernel) {
                Some(p) => p.clone(),
                None => {
                    let p = Arc::new(self.prepare(kernel, false)?);
                    timed.insert(kernel, p.clone());
                    p
                }
            }
        };
        prepared.0.time(&self.gpu, iters)
    }

    /// Reads the buffer once with `kernel` in its checking variant and returns the XOR of every
    /// word it read, for tests to compare with [`ReadLimit::expected_xor`].
    pub fn xor(&self, kernel: ReadKernel) -> Result<u32> {
        let (prepared, sink) = self.prepare(kernel, true)?;
        prepared.run(&self.gpu);
        let b = read_bytes(&self.gpu, &sink, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The XOR of every u32 word of the data, computed on the host.
    pub fn expected_xor(&self) -> u32 {
        self.xor
    }

    /// Read bandwidth in GB/s of one iteration taking `per_iter`.
    pub fn gb_per_s(&self, per_iter: Duration) -> f64 {
        self.bytes as f64 / per_iter.as_secs_f64() / 1e9
    }

    /// The read limit from `timings`, each pattern's time per full read in each round: the
    /// fastest round of any pattern, with that pattern's median and slowest round. `None`
    /// without a timing.
    pub fn estimate(&self, timings: &[(ReadKernel, Vec<Duration>)]) -> Option<ReadLimitEstimate> {
        let (kernel, rounds) = timings
            .iter()
            .filter(|(_, t)| !t.is_empty())
            .min_by_key(|(_, t)| t.iter().min().copied().unwrap_or(Duration::MAX))?;
        let mut sorted = rounds.clone();
        sorted.sort();
        Some(ReadLimitEstimate {
            kernel: *kernel,
            gb_per_s: self.gb_per_s(sorted[0]),
            median: self.gb_per_s(sorted[sorted.len() / 2]),
            slowest: self.gb_per_s(sorted[sorted.len() - 1]),
            rounds: sorted.len(),
        })
    }

    /// Times every pattern [`ReadLimit::kernels`] offers for `rounds` rounds of `iters` reads
    /// each, interleaved (so a busy spell weighs on all alike), and returns the estimate.
    pub fn measure(&self, iters: u32, rounds: usize) -> Result<ReadLimitEstimate> {
        let kernels = self.kernels();
        let mut timings: Vec<(ReadKernel, Vec<Duration>)> = kernels.iter().map(|&k| (k, Vec::new())).collect();
        for _ in 0..rounds.max(1) {
            for (kernel, t) in &mut timings {
                t.push(self.time(*kernel, iters)?.per_iter);
            }
        }
        self.estimate(&timings).ok_or_else(|| Error::Gpu("no read kernel can run on this device".into()))
    }

    /// The pipeline and dispatches of one full read, and the sink it writes to.
    fn prepare(&self, kernel: ReadKernel, check: bool) -> Result<(Dispatches, wgpu::Buffer)> {
        if !self.kernels().contains(&kernel) {
            return Err(Error::Gpu(format!("{} cannot run on this device", kernel.name())));
        }
        let gpu = &self.gpu;
        let device = gpu.device();
        let (group_layout, pipeline_layout) =
            if kernel.uniform() { &self.uniform_layout } else { &self.storage_layout };
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.entry()),
            layout: Some(pipeline_layout),
            module: &self.module,
            entry_point: Some(kernel.entry()),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &[("CHECK", f64::from(u8::from(check)))],
                ..Default::default()
            },
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("compiling {}: {e}", kernel.entry())));
        }
        let sink = zeroed(gpu, "int8-wgpu read limit sink", 16)?;
        let bind = |entries: &[wgpu::BindGroupEntry]| {
            device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: group_layout, entries })
        };
        let mut groups = Vec::new();
        for (buffer, bytes) in &self.blocks {
            if kernel.uniform() {
                for offset in (0..buffer.size()).step_by(WINDOW as usize) {
                    let window = wgpu::BufferBinding { buffer, offset, size: wgpu::BufferSize::new(WINDOW) };
                    let g =
                        bind(&[entry(1, sink.as_entire_binding()), entry(2, wgpu::BindingResource::Buffer(window))]);
                    groups.push((g, (WINDOW_GROUPS, 1)));
                }
            } else {
                let units = (bytes / 16) as u32;
                let uniform = wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST;
                let params = wgpu_util::buffer(
                    gpu,
                    "int8-wgpu read limit params",
                    bytemuck::bytes_of(&[units, 0, 0, 0]),
                    uniform,
                )?;
                let g = bind(&[
                    entry(0, params.as_entire_binding()),
                    entry(1, sink.as_entire_binding()),
                    entry(2, buffer.as_entire_binding()),
                ]);
                // Enough workgroups to fill any device, each thread reading about 16 units.
                let workgroups = u64::from(units).div_ceil(WG * 16).clamp(1, 4096) as u32;
                groups.push((g, grid(gpu, workgroups)));
            }
        }
        Ok((Dispatches { pipeline: Arc::new(pipeline), groups }, sink))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The read kernels parse, validate and translate for every backend, on any machine.
    #[test]
    fn read_limit_kernels_translate() {
        let module = naga::front::wgsl::parse_str(SOURCE).unwrap_or_else(|e| panic!("{}", e.emit_to_string(SOURCE)));
        let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("read_limit.wgsl: {e:?}"));
        for kernel in ReadKernel::ALL {
            for check in [false, true] {
                let ctx = format!("{} check={check}", kernel.entry());
                let constants: naga::back::PipelineConstants =
                    [("CHECK".to_string(), f64::from(u8::from(check)))].into_iter().collect();
                crate::translate::translate_for_every_backend(
                    &module,
                    &info,
                    kernel.entry(),
                    &constants,
                    None,
                    true,
                    &ctx,
                );
            }
        }
    }
}
