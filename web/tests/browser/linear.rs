//! W8A32 and W8A16 (f16, bf16) linear layers on WebGPU within the native suite's f64-oracle
//! bound, on the kernel the heuristic picks and on the others options can force there.

use half::{bf16, f16};
use int8_wgpu::{Element, Gpu, GpuOptions, GpuTensor, Granularity, QuantScheme, QuantizedLinear, reference};
use wasm_bindgen_test::{console_log, wasm_bindgen_test};

use crate::common::{self, to_dtype};

const ROWS: [usize; 4] = [1, 3, 8, 33];

/// One layer `[n, k]` of scheme `s` run on `rows` rows of `T`; the kernel that ran, for the log.
async fn run<T: Element>(gpu: &Gpu, n: usize, k: usize, s: QuantScheme, rows: usize, seed: u64) -> String {
    let w = reference::quantize(&common::rand_vec(n * k, seed), &[n, k], s).unwrap();
    let bias: Vec<T> = to_dtype(&common::rand_vec(n, seed + 1));
    let x: Vec<T> = to_dtype(&common::rand_vec(rows * k, seed + 2));
    let layer = QuantizedLinear::from_quantized(gpu, &w, Some(&bias), T::DTYPE).unwrap();
    let kernel = gpu.linear_kernel(layer.weight(), T::DTYPE, None, rows).to_string();
    let ctx = format!("{} [{n}, {k}] {s:?} {rows} rows, {kernel}", T::DTYPE);
    let xt = GpuTensor::from_host(gpu, &x, &[rows, k]).unwrap();
    let y: Vec<T> = layer.forward(&xt).unwrap().read_async().await.unwrap_or_else(|e| panic!("{ctx}: {e}"));
    common::assert_linear_close(&y, &x, &w, Some(&bias), &ctx);
    kernel
}

/// Every row count and dtype through `gpu` on a few shapes and schemes; the kernels that ran.
async fn grid(gpu: &Gpu) -> Vec<String> {
    // (264, 64): past 256 outputs, where CPU adapters take the wide row GEMV for several rows.
    let shapes = [(24, 64), (40, 96), (7, 33), (264, 64)];
    let mut kernels = Vec::new();
    let mut seed = 0;
    for (n, k) in shapes {
        let mut schemes = vec![
            QuantScheme::symmetric(Granularity::PerChannel { axis: 0 }),
            QuantScheme::asymmetric(Granularity::PerTensor),
        ];
        if k % 32 == 0 {
            schemes.push(QuantScheme::asymmetric(Granularity::PerGroup { size: 32 }));
        }
        for s in schemes {
            for rows in ROWS {
                seed += 10;
                kernels.push(run::<f32>(gpu, n, k, s, rows, seed).await);
                kernels.push(run::<f16>(gpu, n, k, s, rows, seed).await);
                kernels.push(run::<bf16>(gpu, n, k, s, rows, seed).await);
            }
        }
    }
    kernels.sort();
    kernels.dedup();
    kernels
}

#[wasm_bindgen_test]
async fn the_heuristics_kernels_are_within_the_bound() {
    let gpu = common::gpu().await;
    let picked = grid(&gpu).await;
    console_log!("heuristic picked: {picked:?}");
    if gpu.capabilities().cpu_adapter {
        for kernel in ["rows16", "rows16/wide"] {
            assert!(picked.iter().any(|k| k == kernel), "{kernel} never ran: {picked:?}");
        }
    }
}

/// The GEMV's lane groups (1, 2, 4 rows each), which reduce in workgroup memory here (wgpu's
/// WebGPU backend offers no subgroups), the row-per-invocation GEMV and the GEMM from 9 rows.
#[wasm_bindgen_test]
async fn the_forced_kernels_are_within_the_bound() {
    let mut all = Vec::new();
    for rows_per_group in [1, 2, 4] {
        let options = GpuOptions {
            gemv_rows_per_thread: Some(false),
            gemv_rows_per_group: Some(rows_per_group),
            gemm_min_rows: Some(9),
            ..Default::default()
        };
        all.extend(grid(&common::open(options).await).await);
    }
    let rows = GpuOptions { gemv_rows_per_thread: Some(true), gemm_min_rows: Some(64), ..Default::default() };
    all.extend(grid(&common::open(rows).await).await);
    all.sort();
    all.dedup();
    console_log!("forced: {all:?}");
    for kernel in ["gemm", "lanes/1", "lanes/2", "lanes/4", "rows"] {
        assert!(all.iter().any(|k| k == kernel), "{kernel} never ran: {all:?}");
    }
}
