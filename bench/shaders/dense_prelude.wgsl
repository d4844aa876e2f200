// The prelude the library writes ahead of gemv.wgsl and gemm.wgsl (src/gpu/params.rs), copied
// here, where the dense yardstick compiles those kernels with f32 weights: the dtype codes, the
// bindings both kernels share (their parameters and each kernel's own part are in dense.rs).
const DT_F32: u32 = 0u;
const DT_F16: u32 = 1u;
const DT_BF16: u32 = 2u;
const WG: u32 = 256u;
@group(0) @binding(0) var<storage, read> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<atomic<u32>>;
@group(0) @binding(2) var<storage, read> x: array<u32>;
@group(0) @binding(3) var<storage, read> weights: array<u32>;
@group(0) @binding(4) var<storage, read> scales: array<f32>;
@group(0) @binding(5) var<storage, read> zps: array<i32>;
@group(0) @binding(6) var<storage, read> bias: array<u32>;
