//! The "no quantization" yardstick: a dense f32 linear layer run by the library's GEMV/GEMM
//! kernels (`shaders/gemv.wgsl`, `shaders/gemm.wgsl`) in their `DENSE` variant, f32 weights, so
//! `int8 vs dense` isolates what the int8 weight costs or saves. The kernels are the library's
//! files; the prelude the library generates for them is copied in `bench/shaders/dense_prelude.wgsl`
//! and below.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use int8_wgpu::gpu::Timing;
use int8_wgpu::{DType, Error, Gpu, GpuQuantizedTensor, GpuTensor, QuantScheme, Result};

use crate::wgpu_util::{Dispatches, entry, grid, layout, module, pipeline, shader_code, storage, zeroed};

const PRELUDE: &str = include_str!("../shaders/dense_prelude.wgsl");
/// The GEMV's own part of its prelude: its sizes and the 16-byte views of `x` and `weights`.
const GEMV_PRELUDE: &str = "const GEMV_WG: u32 = 64u;
const ROWS: u32 = 2u;
const MAX_M: u32 = 8u;
const FAST_WG: u32 = 256u;
const TPR: u32 = 32u;
const MAX_RPT: u32 = 4u;
@group(0) @binding(2) var<storage, read> x4: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> weights4: array<vec4<u32>>;
";
/// The GEMM's own part of its prelude: its tile.
const GEMM_PRELUDE: &str = "const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;
";
const COMMON: &str = include_str!("../../shaders/common.wgsl");
const LINEAR_COMMON: &str = include_str!("../../shaders/linear_common.wgsl");
const GEMV_UNITS: &str = include_str!("../../shaders/gemv_units.wgsl");
const GEMV: &str = include_str!("../../shaders/gemv.wgsl");
const GEMV_REDUCE_SG: &str = include_str!("../../shaders/gemv_reduce_sg.wgsl");
const GEMV_REDUCE_WG: &str = include_str!("../../shaders/gemv_reduce_wg.wgsl");
const GEMM: &str = include_str!("../../shaders/gemm.wgsl");

/// Lane groups per workgroup of the fast GEMV (`FAST_WG / TPR` in the prelude).
const FAST_GROUPS: usize = 256 / 32;
/// Output tile of the GEMM (`TM`, `TN`).
const GEMM_TILE: usize = 64;
/// Workgroups a GPU's GEMV keeps at the least when it picks rows per lane group (the library's
/// rule for its int8 GEMV, `rows_per_group` in `src/gpu/linear/heuristic.rs`).
const GEMV_MIN_WORKGROUPS: usize = 256;
/// The most activation rows one GEMV pass serves (the library's, as `MAX_M` in the prelude).
const GEMV_MAX_ROWS: usize = 8;

/// The fields of the kernels' `Params` (a `u32` each, in this order), as the library declares
/// them (`LinearParams` in `src/gpu/params.rs`); [`params_wgsl`] writes the WGSL struct.
const PARAMS: [&str; 12] =
    ["m", "n", "k", "words_per_row", "row0", "rows", "inner", "channels", "chunk", "has_bias", "xor_mask", "m0"];

/// The WGSL declaration of [`PARAMS`].
fn params_wgsl() -> String {
    let fields: String = PARAMS.iter().map(|f| format!("    {f}: u32,\n")).collect();
    format!("struct Params {{\n{fields}}}\n")
}

/// One dispatch's parameters: the named fields, the others zero.
fn params(values: &[(&str, usize)]) -> [u32; PARAMS.len()] {
    let mut p = [0; PARAMS.len()];
    for &(name, v) in values {
        p[PARAMS.iter().position(|f| *f == name).expect("a field of Params")] = v as u32;
    }
    p
}

/// The GEMV's source: its prelude, the library's helpers, the kernel and its lane reduction.
fn gemv_source(subgroups: bool) -> String {
    let reduce = if subgroups { GEMV_REDUCE_SG } else { GEMV_REDUCE_WG };
    [PRELUDE, &params_wgsl(), GEMV_PRELUDE, COMMON, LINEAR_COMMON, GEMV_UNITS, GEMV, reduce].concat()
}

/// The GEMM's source.
fn gemm_source() -> String {
    [PRELUDE, &params_wgsl(), GEMM_PRELUDE, COMMON, LINEAR_COMMON, GEMM].concat()
}

/// A plain f32 linear layer `y = x · Wᵀ` run by the library's GEMV/GEMM kernels with f32 weights.
pub struct DenseLinear {
    gpu: Gpu,
    n: usize,
    k: usize,
    /// First row, rows and buffer of each row block (each fits one binding).
    blocks: Vec<(usize, usize, wgpu::Buffer)>,
    placeholder: wgpu::Buffer,
    /// The GEMV's weight rows per lane group; `None` picks as the library does.
    rows_per_group: Option<u8>,
    /// The int8 weight of the same shape, only to ask the library whether its layer takes the
    /// GEMM or GEMV passes on a number of rows (`Gpu::linear_kernel`), so both run the same plan.
    int8_twin: GpuQuantizedTensor,
    group_layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
    /// Compiled pipelines by (GEMM, rows per group).
    pipelines: Mutex<HashMap<(bool, u8), Arc<wgpu::ComputePipeline>>>,
}

impl std::fmt::Debug for DenseLinear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DenseLinear").field("n", &self.n).field("k", &self.k).finish_non_exhaustive()
    }
}

impl DenseLinear {
    /// Uploads an f32 weight `[out, in]`; `in` must be a multiple of 16.
    pub fn new(gpu: &Gpu, weight: &[f32], [n, k]: [usize; 2]) -> Result<Self> {
        if n == 0 || k == 0 || !k.is_multiple_of(16) || weight.len() != n * k {
            return Err(Error::Shape(format!("dense weight [{n}, {k}] with {} values (in % 16 == 0)", weight.len())));
        }
        let per = (gpu.max_binding_size() as usize / (4 * k)).min(n);
        if per == 0 {
            let limit = gpu.max_binding_size();
            return Err(Error::TooLarge { what: "one row of the dense weight".into(), size: 4 * k as u64, limit });
        }
        let mut blocks = Vec::new();
        for row0 in (0..n).step_by(per) {
            let rows = per.min(n - row0);
            let data = &weight[row0 * k..(row0 + rows) * k];
            blocks.push((row0, rows, storage(gpu, "int8-wgpu-bench dense", bytemuck::cast_slice(data))?));
        }
        let ro = wgpu::BufferBindingType::Storage { read_only: true };
        let (group_layout, pipeline_layout) =
            layout(gpu, "dense linear", &[(0, ro), (2, ro), (3, ro), (4, ro), (5, ro), (6, ro)]);
        Ok(Self {
            gpu: gpu.clone(),
            n,
            k,
            blocks,
            placeholder: zeroed(gpu, "int8-wgpu-bench placeholder", 16)?,
            rows_per_group: None,
            int8_twin: gpu.quantize(weight, &[n, k], QuantScheme::default())?,
            group_layout,
            pipeline_layout,
            pipelines: Mutex::default(),
        })
    }

    /// The GEMV with `rpt` (1, 2 or 4) weight rows per lane group, rather than the library's pick.
    pub fn with_rows_per_group(mut self, rpt: u8) -> Result<Self> {
        if ![1, 2, 4].contains(&rpt) {
            return Err(Error::InvalidOption(format!("rows per lane group {rpt}: 1, 2 or 4")));
        }
        self.rows_per_group = Some(rpt);
        Ok(self)
    }

    /// Weight rows per lane group of the GEMV: as given, else the library's rule (the most
    /// reuse on a CPU adapter; on a GPU, the most that keeps enough workgroups).
    fn rows_per_group(&self) -> u8 {
        if let Some(r) = self.rows_per_group {
            return r;
        }
        if self.gpu.capabilities().cpu_adapter {
            return 4;
        }
        [4u8, 2]
            .into_iter()
            .find(|&r| self.n.div_ceil(FAST_GROUPS * usize::from(r)) >= GEMV_MIN_WORKGROUPS)
            .unwrap_or(1)
    }

    /// The pipeline of the GEMM (`gemm`) or of the GEMV with `rpt` rows per lane group.
    fn pipeline(&self, gemm: bool, rpt: u8) -> Result<Arc<wgpu::ComputePipeline>> {
        if let Some(p) = self.pipelines.lock().unwrap_or_else(|p| p.into_inner()).get(&(gemm, rpt)) {
            return Ok(p.clone());
        }
        let code = f64::from(shader_code(DType::F32));
        let dt = [("IN_DT", code), ("OUT_DT", code), ("DENSE", 1.0)];
        let p = if gemm {
            let m = module(&self.gpu, "gemm.wgsl (dense)", &gemm_source())?;
            pipeline(&self.gpu, &self.pipeline_layout, &m, "gemm_main", &dt)?
        } else {
            let source = gemv_source(self.gpu.capabilities().subgroup_reductions);
            let m = module(&self.gpu, "gemv.wgsl (dense)", &source)?;
            let constants = [&dt[..], &[("GROUPED", 0.0), ("ASYM", 0.0), ("RPT", f64::from(rpt))]].concat();
            pipeline(&self.gpu, &self.pipeline_layout, &m, "gemv_fast_main", &constants)?
        };
        self.pipelines.lock().unwrap_or_else(|p| p.into_inner()).insert((gemm, rpt), p.clone());
        Ok(p)
    }

    fn prepare(&self, x: &GpuTensor, y: &GpuTensor) -> Result<Dispatches> {
        if !x.gpu().same_device(&self.gpu) {
            return Err(Error::WrongDevice("the dense layer's input is on another device".into()));
        }
        if x.dtype() != DType::F32 || !x.numel().is_multiple_of(self.k) || y.numel() != x.numel() / self.k * self.n {
            return Err(Error::Shape("dense linear takes f32 [m, in] and writes f32 [m, out]".into()));
        }
        let m = x.numel() / self.k;
        // The same kernel choice as the int8 layer: GEMV passes of 8 rows below the GEMM.
        let gemm = self.gpu.linear_kernel(&self.int8_twin, DType::F32, None, m).is_gemm();
        let rpt = self.rows_per_group();
        let pipeline = self.pipeline(gemm, rpt)?;
        let pass = if gemm { m } else { GEMV_MAX_ROWS };
        let mut groups = Vec::new();
        for m0 in (0..m).step_by(pass) {
            let rows = (m - m0).min(pass);
            for (row0, block_rows, weights) in &self.blocks {
                let params = params(&[
                    ("m", rows),
                    ("n", self.n),
                    ("k", self.k),
                    ("words_per_row", self.k),
                    ("row0", *row0),
                    ("rows", *block_rows),
                    ("inner", 1),
                    ("channels", 1),
                    ("m0", m0),
                ]);
                let u = storage(&self.gpu, "int8-wgpu-bench dense params", bytemuck::cast_slice(&params))?;
                let ph = &self.placeholder;
                let bound = [(0, &u), (1, y.buffer()), (2, x.buffer()), (3, weights), (4, ph), (5, ph), (6, ph)];
                let entries: Vec<_> = bound.iter().map(|(b, buf)| entry(*b, buf.as_entire_binding())).collect();
                let g = self.gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
                    label: None,
                    layout: &self.group_layout,
                    entries: &entries,
                });
                let workgroups = if gemm {
                    block_rows.div_ceil(GEMM_TILE) * rows.div_ceil(GEMM_TILE)
                } else {
                    block_rows.div_ceil(FAST_GROUPS * usize::from(rpt))
                };
                groups.push((g, grid(&self.gpu, workgroups as u32)));
            }
        }
        Ok(Dispatches { pipeline, groups })
    }

    /// Runs the layer on `x` (`[m, in]` f32) into a new `[m, out]` tensor.
    pub fn forward(&self, x: &GpuTensor) -> Result<GpuTensor> {
        let y = GpuTensor::zeros(&self.gpu, &[x.numel() / self.k, self.n], DType::F32)?;
        self.prepare(x, &y)?.run(&self.gpu);
        Ok(y)
    }

    /// Times `iters` forwards recorded into one pass.
    pub fn time_forward(&self, x: &GpuTensor, iters: u32) -> Result<Timing> {
        let y = GpuTensor::zeros(&self.gpu, &[x.numel() / self.k, self.n], DType::F32)?;
        self.prepare(x, &y)?.time(&self.gpu, iters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both dense kernels parse, validate and translate for every backend, on any machine.
    #[test]
    fn dense_kernels_translate() {
        for (source, entry, subgroups) in [
            (gemv_source(false), "gemv_fast_main", false),
            (gemv_source(true), "gemv_fast_main", true),
            (gemm_source(), "gemm_main", false),
        ] {
            let module =
                naga::front::wgsl::parse_str(&source).unwrap_or_else(|e| panic!("{}", e.emit_to_string(&source)));
            let info =
                naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
                    .validate(&module)
                    .unwrap_or_else(|e| panic!("{entry}: {e:?}"));
            let mut constants: naga::back::PipelineConstants = [("IN_DT", 0.0), ("OUT_DT", 0.0), ("DENSE", 1.0)]
                .into_iter()
                .map(|(n, v)| (n.to_string(), v))
                .collect();
            if entry == "gemv_fast_main" {
                constants.extend([("GROUPED".to_string(), 0.0), ("ASYM".to_string(), 0.0), ("RPT".to_string(), 4.0)]);
            }
            let bindings: Vec<(u32, bool)> = (0..7).map(|b| (b, b == 1)).collect();
            crate::translate::translate_for_every_backend(
                &module,
                &info,
                entry,
                &constants,
                Some(&bindings),
                !subgroups,
                &format!("dense {entry} subgroups={subgroups}"),
            );
        }
    }
}
