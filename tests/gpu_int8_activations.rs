//! Int8 activations on the GPU (W8A8, LLM.int8()) against the CPU oracle: the quantized
//! activations bit for bit, the linear bit-equal where no rounding can differ and within the
//! derived bound elsewhere, on every path (GEMV, GEMM, row blocks, packed dot and fallback).

mod common;

use common::to_dtype;
use half::{bf16, f16};
use int8_wgpu::{
    ActivationQuant, DType, Element, Error, Gpu, GpuOptions, GpuQuantizedTensor, GpuTensor, Granularity, QuantScheme,
    QuantizedLinear, QuantizedTensor, reference,
};

const PER_ROW: Granularity = Granularity::PerChannel { axis: 0 };

fn llm(t: f32) -> ActivationQuant {
    ActivationQuant::llm_int8(t).unwrap()
}

/// Activations with the hard cases planted: row 1 all zero (when there is one), a row whose
/// absmax is 127 so the scale is 1 and the values 0.5, -2.5, 3.5 are exact ties, a subnormal,
/// and -9 in column k - 2: the outlier threshold 2.0 finds columns 0, 2, 3 and k - 2.
fn activations(m: usize, k: usize, seed: u64) -> Vec<f32> {
    let mut x = common::rand_vec(m * k, seed);
    if m > 1 {
        x[k..2 * k].fill(0.0);
    }
    let r = m - 1;
    let ties = [127.0, 0.5, -2.5, 3.5, 1e-40];
    for (c, v) in ties.iter().enumerate().take(k) {
        x[r * k + c] = *v;
    }
    if k > 5 {
        x[(m / 2) * k + k - 2] = -9.0;
    }
    x
}

/// The GPU quantizer equals the CPU's for `x` as `T`.
fn check_quantize<T: Element>(gpu: &Gpu, xf: &[f32], m: usize, k: usize, act: ActivationQuant) {
    let x: Vec<T> = to_dtype(xf);
    let ctx = format!("{} [{m}, {k}] {act:?}", T::DTYPE);
    let cpu = reference::quantize_activations(&x, k, act).unwrap();
    let xt = GpuTensor::from_host(gpu, &x, &[m, k]).unwrap();
    common::assert_same_activations(&gpu.quantize_activations(&xt, act).unwrap(), &cpu, &ctx);
}

#[test]
fn quantized_activations_equal_the_reference() {
    let gpu = gpu_or_skip!();
    for (m, k) in [(1, 3), (3, 5), (4, 16), (9, 67), (33, 130)] {
        let xf = activations(m, k, (m * k) as u64);
        // No outliers, some (the planted 127 and -9, for k > 5), and all (no column is all zero
        // except in the zero row, which no column is made of).
        for act in [ActivationQuant::per_token(), llm(2.0), llm(1e-30)] {
            check_quantize::<f32>(&gpu, &xf, m, k, act);
            check_quantize::<f16>(&gpu, &xf, m, k, act);
            check_quantize::<bf16>(&gpu, &xf, m, k, act);
        }
    }
    // More columns than the list kernel has threads (each thread owns a run of columns).
    let (m, k) = (2, 700);
    let xf = activations(m, k, 77);
    check_quantize::<f32>(&gpu, &xf, m, k, llm(0.5));
    // Rows longer than CPU adapters quantize one invocation per row: one workgroup per row.
    let (m, k) = (3, 16400);
    let xf = activations(m, k, 78);
    check_quantize::<bf16>(&gpu, &xf, m, k, ActivationQuant::per_token());
    check_quantize::<f32>(&gpu, &xf, m, k, llm(2.0));
}

/// One linear case: weights, activations, bias and how activations are quantized.
struct Case {
    n: usize,
    k: usize,
    m: usize,
    granularity: Granularity,
    bias: bool,
    act: ActivationQuant,
    offset_binary: bool,
    seed: u64,
}

/// Uploads `q` as the kernels would find it in a checkpoint: plain or offset-binary bytes.
fn upload(gpu: &Gpu, q: &QuantizedTensor, offset_binary: bool) -> GpuQuantizedTensor {
    if !offset_binary {
        return GpuQuantizedTensor::from_host(gpu, q).unwrap();
    }
    let (n, k) = (q.shape()[0], q.shape()[1]);
    let wpr = k.div_ceil(4);
    let mut words = vec![0u32; n * wpr];
    for (i, v) in q.values().iter().enumerate() {
        let (r, c) = (i / k, i % k);
        words[r * wpr + c / 4] |= u32::from((*v as u8) ^ 0x80) << (8 * (c % 4));
    }
    GpuQuantizedTensor::from_packed(gpu, q.shape(), q.scheme(), &words, true, q.scales(), None).unwrap()
}

/// Runs `case` through `forward_host` with activations of type `T` and checks it; returns the
/// output bits for cross-path comparisons.
fn check_linear<T: Element>(gpu: &Gpu, c: &Case, path: &str) -> Vec<u32> {
    let Case { n, k, m, .. } = *c;
    let q =
        reference::quantize(&common::rand_vec(n * k, c.seed), &[n, k], QuantScheme::symmetric(c.granularity)).unwrap();
    let x: Vec<T> = to_dtype(&activations(m, k, c.seed + 1));
    let b: Option<Vec<T>> = c.bias.then(|| to_dtype(&common::rand_vec(n, c.seed + 2)));
    let layer = QuantizedLinear::from_gpu(upload(gpu, &q, c.offset_binary), b.as_deref(), T::DTYPE)
        .unwrap()
        .with_activation_quant(c.act)
        .unwrap();
    let y = layer.forward_host(&x, &[m, k]).unwrap();
    let ctx = format!(
        "{path} {} [{n}, {k}] m={m} {:?} bias={} {:?} offset_binary={}",
        T::DTYPE,
        c.granularity,
        c.bias,
        c.act,
        c.offset_binary
    );
    common::assert_a8_close(&y, &x, &q, b.as_deref(), c.act, &ctx);
    assert_eq!(
        layer.last_outlier_columns().unwrap(),
        reference::outlier_columns(&x, k, c.act),
        "{ctx}: last_outlier_columns (gpu, then cpu)"
    );
    y.iter().map(|v| v.to_f32().to_bits()).collect()
}

fn check_linear_dtype(gpu: &Gpu, dtype: DType, c: &Case, path: &str) -> Vec<u32> {
    match dtype {
        DType::F32 => check_linear::<f32>(gpu, c, path),
        DType::F16 => check_linear::<f16>(gpu, c, path),
        DType::BF16 => check_linear::<bf16>(gpu, c, path),
    }
}

fn open(options: GpuOptions) -> Gpu {
    Gpu::with_options(options).unwrap()
}

/// Every dtype, quantization mode, bias and weight layout, on the GEMV (8-row passes above 8
/// rows) and on the GEMM forced from 9 rows.
#[test]
fn linear_matches_the_reference_on_both_paths() {
    let _ = gpu_or_skip!();
    let gemv = open(GpuOptions { gemm_min_rows: Some(usize::MAX), ..Default::default() });
    let gemm = open(GpuOptions { gemm_min_rows: Some(9), ..Default::default() });
    let int8_gemm = |gpu: &Gpu, k: usize, m: usize| {
        let w = gpu.quantize(&vec![0.5f32; k], &[1, k], QuantScheme::symmetric(PER_ROW)).unwrap();
        gpu.linear_kernel(&w, DType::F32, Some(ActivationQuant::per_token()), m).is_gemm()
    };
    assert!(!int8_gemm(&gemv, 64, 20) && int8_gemm(&gemm, 64, 9) && !int8_gemm(&gemm, 67, 8));
    let mut seed = 300;
    for (n, k) in [(5, 4), (33, 67), (70, 64)] {
        for act in [ActivationQuant::per_token(), llm(2.0), llm(1e-30)] {
            for (i, granularity) in [PER_ROW, Granularity::PerTensor].into_iter().enumerate() {
                for dtype in [DType::F32, DType::F16, DType::BF16] {
                    seed += 1;
                    let bias = seed % 2 == 0;
                    let offset_binary = seed % 3 == 0;
                    for (gpu, path, m) in [(&gemv, "gemv", [1, 8, 20][i]), (&gemm, "gemm", [9, 20][i])] {
                        let c = Case { n, k, m, granularity, bias, act, offset_binary, seed };
                        check_linear_dtype(gpu, dtype, &c, path);
                    }
                }
            }
        }
    }
}

/// `dot4I8Packed` and the sign-extended fallback give the same bits on both paths.
#[test]
fn packed_dot_and_fallback_give_identical_bits() {
    let default = gpu_or_skip!();
    eprintln!("default device uses packed dot: {}", default.capabilities().packed_dot);
    for gemm_min_rows in [Some(usize::MAX), Some(9)] {
        let packed = open(GpuOptions { packed_dot: Some(true), gemm_min_rows, ..Default::default() });
        let fallback = open(GpuOptions { packed_dot: Some(false), gemm_min_rows, ..Default::default() });
        assert!(packed.capabilities().packed_dot && !fallback.capabilities().packed_dot);
        // k = 72 takes the word-at-a-time GEMV, k = 64 the one in 16-byte units.
        for (m, act, bias, k) in
            [(3, ActivationQuant::per_token(), false, 72), (17, llm(2.0), true, 72), (5, llm(2.0), true, 64)]
        {
            let c = Case { n: 37, k, m, granularity: PER_ROW, bias, act, offset_binary: m > 4, seed: 900 + m as u64 };
            for dtype in [DType::F32, DType::BF16] {
                let a = check_linear_dtype(&packed, dtype, &c, "packed dot");
                let b = check_linear_dtype(&fallback, dtype, &c, "fallback");
                assert_eq!(a, b, "{dtype} m={m} {act:?} gemm from {gemm_min_rows:?}: packed dot vs fallback bits");
            }
        }
    }
}

/// Weights split into row blocks (a device with a 4 KiB binding limit) take one activation
/// quantization and one matmul dispatch per block.
#[test]
fn linear_across_row_blocks() {
    let _ = gpu_or_skip!();
    for gemm_min_rows in [Some(usize::MAX), Some(9)] {
        let gpu = open(GpuOptions { max_storage_buffer_binding_size: Some(4096), gemm_min_rows, ..Default::default() });
        // Packed rows of 96 B: 42 rows per block; 10 f32 rows of x (3840 B) still fit one binding.
        let (n, k) = (100, 96);
        for (m, act) in [(3, ActivationQuant::per_token()), (10, llm(2.0))] {
            let c = Case { n, k, m, granularity: PER_ROW, bias: true, act, offset_binary: false, seed: 500 };
            let q = reference::quantize(&common::rand_vec(n * k, 500), &[n, k], QuantScheme::symmetric(PER_ROW));
            assert_eq!(GpuQuantizedTensor::from_host(&gpu, &q.unwrap()).unwrap().num_blocks(), 3);
            check_linear_dtype(&gpu, DType::F32, &c, &format!("blocks, gemm from {gemm_min_rows:?}"));
            check_linear_dtype(&gpu, DType::F16, &c, &format!("blocks, gemm from {gemm_min_rows:?}"));
        }
    }
}

/// Passes of 3 rows or more over more than 256 output rows and 1024 inputs, which CPU adapters
/// run with sixteen weight rows per invocation (`a8_rows16_wide_main`) for W8A8: passes of 3 to
/// 8 rows (13 rows: 7 and 6), a tail of twelve rows (300 = 18 x 16 + 12), both products with the
/// same bits, row blocks; and every column an outlier (LLM.int8(), which CPU adapters run with
/// four rows: sixteen would meet llvmpipe's loop limit).
#[test]
fn wide_passes_match_the_reference() {
    let _ = gpu_or_skip!();
    let gemv = |packed_dot, max_storage_buffer_binding_size| {
        open(GpuOptions {
            gemm_min_rows: Some(usize::MAX),
            packed_dot: Some(packed_dot),
            max_storage_buffer_binding_size,
            ..Default::default()
        })
    };
    let (packed, fallback) = (gemv(true, None), gemv(false, None));
    let cases = [
        (3, ActivationQuant::per_token(), PER_ROW),
        (8, ActivationQuant::per_token(), Granularity::PerTensor),
        (13, ActivationQuant::per_token(), PER_ROW),
        (5, llm(1e-30), PER_ROW),
    ];
    for (i, (m, act, granularity)) in cases.into_iter().enumerate() {
        let c = Case {
            n: 300,
            k: 1024,
            m,
            granularity,
            bias: i % 2 == 0,
            act,
            offset_binary: i > 1,
            seed: 1000 + i as u64,
        };
        for dtype in [DType::F32, DType::BF16] {
            let a = check_linear_dtype(&packed, dtype, &c, "wide, packed dot");
            let b = check_linear_dtype(&fallback, dtype, &c, "wide, fallback");
            assert_eq!(a, b, "{dtype} m={m} {act:?}: packed dot vs fallback bits");
        }
    }
    // A 512 KiB binding limit: rows of 1 KiB in blocks of 512 and 188.
    let blocks = gemv(true, Some(512 << 10));
    let (n, k) = (700, 1024);
    let c = Case {
        n,
        k,
        m: 4,
        granularity: PER_ROW,
        bias: true,
        act: ActivationQuant::per_token(),
        offset_binary: false,
        seed: 1100,
    };
    let q = reference::quantize(&common::rand_vec(n * k, c.seed), &[n, k], QuantScheme::symmetric(PER_ROW));
    assert_eq!(GpuQuantizedTensor::from_host(&blocks, &q.unwrap()).unwrap().num_blocks(), 2);
    check_linear_dtype(&blocks, DType::F16, &c, "wide, row blocks");
}

#[test]
fn unsupported_weights_and_non_finite_inputs_are_errors() {
    let gpu = gpu_or_skip!();
    let wf = common::rand_vec(8 * 32, 60);
    for s in [
        QuantScheme::asymmetric(PER_ROW),
        QuantScheme::symmetric(Granularity::PerGroup { size: 16 }),
        QuantScheme::symmetric(Granularity::PerChannel { axis: 1 }),
    ] {
        let layer = QuantizedLinear::from_float(&gpu, &wf, [8, 32], None::<&[f32]>, s, DType::F32).unwrap();
        let r = layer.with_activation_quant(ActivationQuant::per_token());
        assert!(matches!(r, Err(Error::Scheme(_))), "{s:?}: expected Error::Scheme, found {r:?}");
    }
    let layer =
        QuantizedLinear::from_float(&gpu, &wf, [8, 32], None::<&[f32]>, QuantScheme::symmetric(PER_ROW), DType::F32)
            .unwrap()
            .with_activation_quant(llm(6.0))
            .unwrap();
    let mut x = common::rand_vec(2 * 32, 61);
    x[40] = f32::NAN;
    let r = layer.forward_host(&x, &[2, 32]);
    assert!(matches!(r, Err(Error::NonFinite { index: 40, .. })), "expected NonFinite at 40, found {r:?}");
    // A finite result beyond f16's range is an overflow, as for weight-only layers.
    let big = QuantizedLinear::from_float(
        &gpu,
        &[1.0f32; 32],
        [1, 32],
        None::<&[f32]>,
        QuantScheme::symmetric(PER_ROW),
        DType::F16,
    )
    .unwrap()
    .with_activation_quant(ActivationQuant::per_token())
    .unwrap();
    let r = big.forward_host(&[f16::from_f32(60000.0); 32], &[1, 32]);
    assert!(matches!(r, Err(Error::Overflow { .. })), "expected Overflow, found {r:?}");
}

/// A threshold below every activation makes every column an outlier: the layer is then the
/// float product of x and the dequantized weights, and still matches the reference.
#[test]
fn an_all_outlier_batch_matches_the_reference() {
    let gpu = gpu_or_skip!();
    let c =
        Case { n: 9, k: 20, m: 3, granularity: PER_ROW, bias: true, act: llm(1e-30), offset_binary: false, seed: 70 };
    check_linear_dtype(&gpu, DType::F32, &c, "all outliers");
    let x = GpuTensor::from_host(&gpu, &common::rand_vec(3 * 20, 71), &[3, 20]).unwrap();
    let q = gpu.quantize_activations(&x, llm(1e-30)).unwrap();
    assert_eq!(q.outlier_columns, (0..20).collect::<Vec<_>>());
    assert!(q.values.iter().all(|&v| v == 0) && q.scales.iter().all(|&s| s == 1.0), "{q:?}");
}

/// The hot loop of an int8-activation layer creates no GPU object after its first call (the
/// scratch buffers belong to the per-rows plan), on GEMV passes and on the GEMM, and repeats
/// its bits.
#[test]
fn forward_into_creates_nothing_after_the_first_call() {
    let _ = gpu_or_skip!();
    for gemm_min_rows in [Some(usize::MAX), Some(9)] {
        let gpu = open(GpuOptions { gemm_min_rows, ..Default::default() });
        let q =
            reference::quantize(&common::rand_vec(24 * 32, 80), &[24, 32], QuantScheme::symmetric(PER_ROW)).unwrap();
        let layer = QuantizedLinear::from_quantized(&gpu, &q, Some(&common::rand_vec(24, 81)), DType::BF16)
            .unwrap()
            .with_activation_quant(llm(2.0))
            .unwrap();
        let x = GpuTensor::from_host(&gpu, &to_dtype::<bf16>(&activations(20, 32, 82)), &[20, 32]).unwrap();
        let y = GpuTensor::zeros(&gpu, &[20, 24], DType::BF16).unwrap();
        layer.forward_into(&x, &y).unwrap();
        let first: Vec<bf16> = y.read().unwrap();
        let before = gpu.resource_counts();
        for _ in 0..50 {
            layer.forward_into(&x, &y).unwrap();
        }
        gpu.synchronize().unwrap();
        assert_eq!(gpu.resource_counts(), before, "gemm from {gemm_min_rows:?}: objects created by 50 forwards");
        assert_eq!(y.read::<bf16>().unwrap(), first, "gemm from {gemm_min_rows:?}: repeated forwards");
        // The planted 127, -2.5, 3.5 and -9 (|x| >= 2) mark columns 0, 2, 3 and k - 2.
        assert_eq!(layer.last_outlier_columns().unwrap(), [0, 2, 3, 30], "planted outliers");
    }
}
