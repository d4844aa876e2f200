//! Fused linear layers (GEMV and GEMM paths) against the f64 oracle, every activation dtype.

mod common;

use half::{bf16, f16};
use int8_wgpu::{
    DType, Element, Gpu, GpuOptions, GpuTensor, Granularity, QuantScheme, QuantizedLinear, QuantizedTensor, reference,
};

const SIZES: [usize; 7] = [1, 3, 4, 5, 17, 64, 257];
const BATCHES: [usize; 6] = [1, 2, 7, 8, 9, 33];

fn conv<T: Element>(v: &[f32]) -> Vec<T> {
    v.iter().map(|&x| T::from_f32(x)).collect()
}

/// Builds the layer from CPU-quantized ints, runs it, checks against the oracle.
fn run<T: Element>(gpu: &Gpu, w: &QuantizedTensor, m: usize, bias: bool, seed: u64, ctx: &str) {
    let (n, k) = (w.shape()[0], w.shape()[1]);
    let x: Vec<T> = conv(&common::rand_vec(m * k, seed));
    let b: Option<Vec<T>> = bias.then(|| conv(&common::rand_vec(n, seed + 1)));
    let layer = QuantizedLinear::from_quantized(gpu, w, b.as_deref(), T::DTYPE).unwrap();
    let y = layer.forward_host(&x, &[m, k]).unwrap();
    common::assert_linear_close(&y, &x, w, b.as_deref(), &format!("{} {ctx} m={m}", T::DTYPE));
}

/// Every path, whatever this adapter would pick by itself: both GEMV kernels the options name
/// (whole rows per invocation a word at a time, and lane groups, what a GPU picks), in passes of
/// 8 rows above 8 rows, the tiled GEMM (what a GPU picks from 33 rows), forced by the options,
/// and the adapter's own GEMV in passes (on a CPU adapter, whole rows in 16-byte units).
fn every_path() -> [Gpu; 4] {
    let open = |gemv_rows_per_thread, gemm_min_rows| {
        Gpu::with_options(GpuOptions { gemv_rows_per_thread, gemm_min_rows, ..Default::default() }).unwrap()
    };
    [open(Some(true), Some(usize::MAX)), open(Some(false), Some(usize::MAX)), open(None, Some(9)), open(None, None)]
}

#[test]
fn linear_grid_against_f64() {
    let _ = gpu_or_skip!();
    let paths = every_path();
    let mut seed = 1000;
    for n in SIZES {
        for k in SIZES {
            let mut gran =
                vec![Granularity::PerChannel { axis: 0 }, Granularity::PerTensor, Granularity::PerChannel { axis: 1 }];
            gran.extend([1, 2, 3, 32, 128].iter().filter(|&&g| k % g == 0).map(|&size| Granularity::PerGroup { size }));
            for (i, g) in gran.into_iter().enumerate() {
                seed += 1;
                let s = if seed % 2 == 0 { QuantScheme::symmetric(g) } else { QuantScheme::asymmetric(g) };
                let w = reference::quantize(&common::rand_vec(n * k, seed), &[n, k], s).unwrap();
                // Each batch size meets every shape across the dtypes over the grid.
                let m = BATCHES[(seed as usize + i) % BATCHES.len()];
                // Shapes rotate over the GEMV kernels and the GEMM.
                let gpu = &paths[(seed as usize / 3) % paths.len()];
                let ctx = format!("[{n}, {k}] {s:?}");
                match seed % 3 {
                    0 => run::<f32>(gpu, &w, m, seed % 5 != 0, seed, &ctx),
                    1 => run::<f16>(gpu, &w, m, seed % 5 != 0, seed, &ctx),
                    _ => run::<bf16>(gpu, &w, m, seed % 5 != 0, seed, &ctx),
                }
            }
        }
    }
}

#[test]
fn every_batch_size_and_dtype() {
    let _ = gpu_or_skip!();
    let paths = every_path();
    for (i, s) in [
        QuantScheme::symmetric(Granularity::PerChannel { axis: 0 }),
        QuantScheme::asymmetric(Granularity::PerChannel { axis: 0 }),
        QuantScheme::symmetric(Granularity::PerGroup { size: 32 }),
        QuantScheme::asymmetric(Granularity::PerGroup { size: 32 }),
    ]
    .into_iter()
    .enumerate()
    {
        let w = reference::quantize(&common::rand_vec(17 * 64, 50 + i as u64), &[17, 64], s).unwrap();
        for m in BATCHES {
            for (gpu, path) in paths.iter().zip(["rows passes", "lanes passes", "gemm", "default passes"]) {
                let ctx = format!("{s:?} {path}");
                run::<f32>(gpu, &w, m, true, m as u64, &ctx);
                run::<f16>(gpu, &w, m, true, m as u64, &ctx);
                run::<bf16>(gpu, &w, m, false, m as u64, &ctx);
            }
        }
    }
}

#[test]
fn batch_shapes_and_chaining_stay_on_gpu() {
    let gpu = gpu_or_skip!();
    let s = QuantScheme::default();
    let w1 = reference::quantize(&common::rand_vec(64 * 17, 1), &[64, 17], s).unwrap();
    let w2 = reference::quantize(&common::rand_vec(5 * 64, 2), &[5, 64], s).unwrap();
    let l1 = QuantizedLinear::from_quantized::<f32>(&gpu, &w1, None, DType::F32).unwrap();
    let l2 = QuantizedLinear::from_quantized::<f32>(&gpu, &w2, None, DType::F32).unwrap();
    let x = common::rand_vec(2 * 3 * 17, 3);
    let xt = GpuTensor::from_host(&gpu, &x, &[2, 3, 17]).unwrap();
    let h = l1.forward(&xt).unwrap();
    assert_eq!(h.shape(), [2, 3, 64]);
    let y = l2.forward(&h).unwrap();
    assert_eq!(y.shape(), [2, 3, 5]);
    let y = y.read::<f32>().unwrap();
    // Reference: the same chain on the CPU path.
    let h_cpu = reference::linear(&x, &w1, None).unwrap();
    assert_eq!(h.read::<f32>().unwrap().len(), h_cpu.len());
    common::assert_linear_close(&y, &h_cpu, &w2, None, "chained");
    // forward_into reuses a buffer; a second run with other inputs overwrites it.
    let out = GpuTensor::zeros(&gpu, &[2, 3, 64], DType::F32).unwrap();
    l1.forward_into(&xt, &out).unwrap();
    common::assert_linear_close(&out.read::<f32>().unwrap(), &x, &w1, None, "forward_into");
}

#[test]
fn forward_into_reused_16bit_buffer_is_cleared() {
    let gpu = gpu_or_skip!();
    let w = reference::quantize(&common::rand_vec(5 * 8, 4), &[5, 8], QuantScheme::default()).unwrap();
    let l = QuantizedLinear::from_quantized::<f32>(&gpu, &w, None, DType::BF16).unwrap();
    let out = GpuTensor::zeros(&gpu, &[3, 5], DType::BF16).unwrap();
    for seed in [5, 6] {
        let x: Vec<bf16> = conv(&common::rand_vec(3 * 8, seed));
        l.forward_into(&GpuTensor::from_host(&gpu, &x, &[3, 8]).unwrap(), &out).unwrap();
        common::assert_linear_close(&out.read::<bf16>().unwrap(), &x, &w, None, "reuse");
    }
}

#[test]
fn from_float_quantizes_on_gpu_like_the_cpu() {
    let gpu = gpu_or_skip!();
    let wf = common::rand_vec(33 * 64, 8);
    let b = common::rand_vec(33, 9);
    for s in [QuantScheme::default(), QuantScheme::asymmetric(Granularity::PerGroup { size: 32 })] {
        let layer = QuantizedLinear::from_float(&gpu, &wf, [33, 64], Some(&b), s, DType::F32).unwrap();
        let cpu = reference::quantize(&wf, &[33, 64], s).unwrap();
        common::assert_same_quantized(&layer.weight().to_host().unwrap(), &cpu, "from_float");
        let x = common::rand_vec(2 * 64, 10);
        let y = layer.forward_host(&x, &[2, 64]).unwrap();
        common::assert_linear_close(&y, &x, &cpu, Some(&b), "from_float");
        // The CPU path (f32, same formula) stays within the same tolerance.
        common::assert_linear_close(&reference::linear(&x, &cpu, Some(&b)).unwrap(), &x, &cpu, Some(&b), "cpu path");
    }
}

#[test]
fn tolerance_is_tight_enough_to_catch_a_wrong_scale() {
    // A test that cannot fail is a defect: a 1-ulp-of-scale error must already break it.
    let w = reference::quantize(&common::rand_vec(4 * 64, 12), &[4, 64], QuantScheme::default()).unwrap();
    let x = common::rand_vec(64, 13);
    let mut bad = w.scales().to_vec();
    bad[1] *= 1.0 + 1e-3;
    let wb = QuantizedTensor::new(w.shape(), w.scheme(), w.values().to_vec(), bad, None).unwrap();
    let y = reference::linear(&x, &wb, None).unwrap();
    let r = std::panic::catch_unwind(|| common::assert_linear_close(&y, &x, &w, None, "bad"));
    assert!(r.is_err(), "a 0.1% scale error went unnoticed");
}

#[test]
fn fast_gemv_variants() {
    let default = gpu_or_skip!();
    eprintln!("subgroup reductions: {}", default.capabilities().subgroup_reductions);
    // Every rows-per-lane-group variant, whatever this adapter would pick by itself.
    for rpt in [1u8, 2, 4] {
        let options =
            GpuOptions { gemv_rows_per_group: Some(rpt), gemv_rows_per_thread: Some(false), ..Default::default() };
        let gpu = Gpu::with_options(options).unwrap();
        // k % 16 == 0 takes the vectorised GEMV; groups of 16 and 48 are whole 16-element units.
        // [70, 1088]: 68 units per row, so some lanes take a second two-unit step and some stop
        // half-way through one; 70 rows leave partial lane groups for every variant.
        for (n, k) in [(1, 16), (9, 48), (33, 96), (70, 1088)] {
            for s in unit_schemes(k) {
                let w = reference::quantize(&common::rand_vec(n * k, (n * k) as u64), &[n, k], s).unwrap();
                for m in [1, 3, 8] {
                    let ctx = format!("fast rpt={rpt} [{n}, {k}] {s:?}");
                    run::<f32>(&gpu, &w, m, true, m as u64, &ctx);
                    run::<f16>(&gpu, &w, m, false, m as u64, &ctx);
                    run::<bf16>(&gpu, &w, m, true, m as u64, &ctx);
                }
            }
        }
    }
    assert!(matches!(
        Gpu::with_options(GpuOptions { gemv_rows_per_group: Some(3), ..Default::default() }),
        Err(int8_wgpu::Error::InvalidOption(_))
    ));
}

#[test]
fn rows16_gemv() {
    let gpu = gpu_or_skip!();
    // The adapter's own GEMV: on a CPU adapter, whole rows per invocation in 16-byte units.
    // 1030 rows: one activation row takes eight weight rows per invocation (a tail of six); from
    // 259 rows, passes of 2-8 rows take sixteen (tails of three and six).
    for (n, k) in [(1, 16), (9, 48), (33, 96), (70, 1088), (259, 384), (1030, 32)] {
        for s in unit_schemes(k) {
            let w = reference::quantize(&common::rand_vec(n * k, (n * k) as u64), &[n, k], s).unwrap();
            let wg = int8_wgpu::GpuQuantizedTensor::from_host(&gpu, &w).unwrap();
            for m in [1, 2, 3, 8, 12] {
                let ctx = format!("{} [{n}, {k}] {s:?}", gpu.linear_kernel(&wg, DType::F32, None, m));
                run::<f32>(&gpu, &w, m, true, m as u64, &ctx);
                run::<f16>(&gpu, &w, m, false, m as u64, &ctx);
                run::<bf16>(&gpu, &w, m, true, m as u64, &ctx);
            }
        }
    }
}

/// llvmpipe stops a shader invocation's loops after 65535 iterations in all, silently: on a CPU
/// adapter the library's own choice stays right at 2^17 inputs (sixteen weight rows per
/// invocation, no loop inside the loop over k), and a kernel that would pass the limit
/// (word-at-a-time rows, 8 activation rows, 32768 inputs) is an error rather than wrong sums.
/// A GPU runs both.
#[test]
fn long_rows_stay_exact_or_are_refused() {
    let gpu = gpu_or_skip!();
    let s = QuantScheme::default();
    let w = reference::quantize(&common::rand_vec(16 * (1 << 17), 3), &[16, 1 << 17], s).unwrap();
    run::<bf16>(&gpu, &w, 8, true, 4, "2^17 inputs");
    let rows = Gpu::with_options(GpuOptions { gemv_rows_per_thread: Some(true), ..Default::default() }).unwrap();
    let w = reference::quantize(&common::rand_vec(4 * 32768, 5), &[4, 32768], s).unwrap();
    let layer = QuantizedLinear::from_quantized::<f32>(&rows, &w, None, DType::F32).unwrap();
    let x = common::rand_vec(8 * 32768, 6);
    match layer.forward_host(&x, &[8, 32768]) {
        Err(int8_wgpu::Error::Unsupported(e)) => {
            assert!(
                rows.capabilities().cpu_adapter
                    && e.contains("65535")
                    && e.contains("gemv_rows_per_thread = true chose it"),
                "{e}"
            )
        }
        Ok(y) => {
            assert!(!rows.capabilities().cpu_adapter, "a CPU adapter ran past its loop limit");
            common::assert_linear_close(&y, &x, &w, None, "word rows, 32768 inputs");
        }
        Err(e) => panic!("{e}"),
    }
}

/// Symmetric and asymmetric schemes whose scale segments are whole 16-element units of a row
/// of `k` (k % 16 == 0): per channel, per tensor, groups of 16 and groups of 32 (or k).
fn unit_schemes(k: usize) -> Vec<QuantScheme> {
    [
        Granularity::PerChannel { axis: 0 },
        Granularity::PerTensor,
        Granularity::PerGroup { size: 16 },
        Granularity::PerGroup { size: if k.is_multiple_of(32) { 32 } else { k } },
    ]
    .into_iter()
    .flat_map(|g| [QuantScheme::symmetric(g), QuantScheme::asymmetric(g)])
    .collect()
}

#[test]
fn adopts_an_application_device() {
    let gpu = gpu_or_skip!();
    // An app opens its own device (here: the same adapter kind) and hands it over.
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default())).expect("adapter");
    let (device, queue) = pollster::block_on(adapter.request_device(&Default::default())).expect("device");
    let app = int8_wgpu::Gpu::from_device(device, queue);
    assert!(!app.same_device(&gpu));
    let w = reference::quantize(&common::rand_vec(9 * 32, 90), &[9, 32], QuantScheme::default()).unwrap();
    let layer = QuantizedLinear::from_quantized::<f32>(&app, &w, None, DType::F16).unwrap();
    let x: Vec<f16> = conv(&common::rand_vec(2 * 32, 91));
    common::assert_linear_close(&layer.forward_host(&x, &[2, 32]).unwrap(), &x, &w, None, "app device");
    // A tensor from another device is refused, not misused.
    let foreign = GpuTensor::from_host(&gpu, &x, &[2, 32]).unwrap();
    assert!(matches!(layer.forward(&foreign), Err(int8_wgpu::Error::WrongDevice(_))));
}
