//! W8A8 and LLM.int8() on WebGPU: quantized activations (ints, row scales, outlier columns) bit
//! for bit against the CPU reference, layer outputs within the native suite's bound.

use half::{bf16, f16};
use int8_wgpu::{
    ActivationQuant, Element, Gpu, GpuOptions, GpuTensor, Granularity, QuantScheme, QuantizedLinear, reference,
};
use wasm_bindgen_test::{console_log, wasm_bindgen_test};

use crate::common::{self, to_dtype};

fn llm(t: f32) -> ActivationQuant {
    ActivationQuant::llm_int8(t).unwrap()
}

/// Activations with the hard cases planted (as tests/gpu_int8_activations.rs): a zero row, a
/// row whose absmax is 127 so 0.5, -2.5, 3.5 are exact ties, a subnormal, and -9 in column k - 2.
fn activations(m: usize, k: usize, seed: u64) -> Vec<f32> {
    let mut x = common::rand_vec(m * k, seed);
    if m > 1 {
        x[k..2 * k].fill(0.0);
    }
    let r = m - 1;
    for (c, v) in [127.0, 0.5, -2.5, 3.5, 1e-40].iter().enumerate().take(k) {
        x[r * k + c] = *v;
    }
    if k > 5 {
        x[(m / 2) * k + k - 2] = -9.0;
    }
    x
}

async fn check_quantize<T: Element>(gpu: &Gpu, xf: &[f32], m: usize, k: usize, act: ActivationQuant) {
    let x: Vec<T> = to_dtype(xf);
    let ctx = format!("{} [{m}, {k}] {act:?}", T::DTYPE);
    let cpu = reference::quantize_activations(&x, k, act).unwrap();
    let xt = GpuTensor::from_host(gpu, &x, &[m, k]).unwrap();
    let got = gpu.quantize_activations_async(&xt, act).await.unwrap_or_else(|e| panic!("{ctx}: {e}"));
    common::assert_same_activations(&got, &cpu, &ctx);
}

#[wasm_bindgen_test]
async fn quantized_activations_equal_the_reference() {
    let gpu = common::gpu().await;
    for (m, k) in [(1, 3), (3, 5), (8, 16), (9, 67), (33, 130)] {
        let xf = activations(m, k, (m * k) as u64);
        for act in [ActivationQuant::per_token(), llm(2.0), llm(1e-30)] {
            check_quantize::<f32>(&gpu, &xf, m, k, act).await;
            check_quantize::<f16>(&gpu, &xf, m, k, act).await;
            check_quantize::<bf16>(&gpu, &xf, m, k, act).await;
        }
    }
}

/// One W8A8 / LLM.int8() layer on `rows` rows; the kernel that ran.
async fn run<T: Element>(
    gpu: &Gpu,
    (n, k, s): (usize, usize, QuantScheme),
    rows: usize,
    act: ActivationQuant,
    bias: bool,
) -> String {
    let w = reference::quantize(&common::rand_vec(n * k, (n * k + rows) as u64), &[n, k], s).unwrap();
    let b: Option<Vec<T>> = bias.then(|| to_dtype(&common::rand_vec(n, 5)));
    let x: Vec<T> = to_dtype(&activations(rows, k, rows as u64));
    let layer =
        QuantizedLinear::from_quantized(gpu, &w, b.as_deref(), T::DTYPE).unwrap().with_activation_quant(act).unwrap();
    let kernel = gpu.linear_kernel(layer.weight(), T::DTYPE, Some(act), rows).to_string();
    let ctx = format!("{} [{n}, {k}] {s:?} {rows} rows {act:?} bias {bias}, {kernel}", T::DTYPE);
    let xt = GpuTensor::from_host(gpu, &x, &[rows, k]).unwrap();
    let y: Vec<T> = layer.forward(&xt).unwrap().read_async().await.unwrap_or_else(|e| panic!("{ctx}: {e}"));
    common::assert_a8_close(&y, &x, &w, b.as_deref(), act, &ctx);
    let outliers = layer.last_outlier_columns_async().await.unwrap();
    let want = if act.outlier_threshold().is_some() { reference::outlier_columns(&x, k, act) } else { Vec::new() };
    assert_eq!(outliers, want, "{ctx}: outlier columns");
    kernel
}

async fn grid(gpu: &Gpu) -> Vec<String> {
    let per_row = QuantScheme::symmetric(Granularity::PerChannel { axis: 0 });
    let per_tensor = QuantScheme::symmetric(Granularity::PerTensor);
    // (264, 1024) at 3 and 8 rows: where CPU adapters take the wide int8 GEMV.
    let layers = [
        ((24, 64, per_row), &[1usize, 3, 8, 33][..]),
        ((24, 64, per_tensor), &[1, 3, 8, 33]),
        ((9, 130, per_row), &[1, 3, 8, 33]),
        ((264, 1024, per_row), &[3, 8]),
    ];
    let mut kernels = Vec::new();
    for (layer, rows) in layers {
        for &m in rows {
            for act in [ActivationQuant::per_token(), llm(2.0)] {
                for bias in [false, true] {
                    kernels.push(run::<f32>(gpu, layer, m, act, bias).await);
                    kernels.push(run::<f16>(gpu, layer, m, act, bias).await);
                    kernels.push(run::<bf16>(gpu, layer, m, act, bias).await);
                }
            }
        }
    }
    kernels.sort();
    kernels.dedup();
    kernels
}

/// The heuristic's kernels with `dot4I8Packed` (which Tint compiles natively), then the GEMM
/// from 9 rows and the sign-extended-bytes fallback.
#[wasm_bindgen_test]
async fn int8_activation_layers_are_exact_or_within_the_bound() {
    let gpu = common::gpu().await;
    let mut all = grid(&gpu).await;
    console_log!("a8 heuristic picked: {all:?}");
    if gpu.capabilities().cpu_adapter {
        for kernel in ["a8/rows", "a8/rows16", "a8/rows16/wide"] {
            assert!(all.iter().any(|k| k == kernel), "{kernel} never ran: {all:?}");
        }
    }
    let forced = GpuOptions { gemm_min_rows: Some(9), packed_dot: Some(false), ..Default::default() };
    all.extend(grid(&common::open(forced).await).await);
    all.sort();
    all.dedup();
    console_log!("a8 kernels run: {all:?}");
    assert!(all.iter().any(|k| k == "a8/gemm"), "{all:?}");
}
