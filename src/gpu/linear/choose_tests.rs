//! Unit tests of `choose.rs`: the kernel each device, weight, row count and activation
//! quantization gets, pinned case by case (what the twin weight-only and int8-activation
//! pipelines chose before they became one), with no device needed.

use super::*;

/// A CPU adapter (lavapipe, llvmpipe) and a GPU with subgroups, neither with options.
fn cpu() -> DeviceFacts {
    DeviceFacts { cpu: true, packed_dot: true, ..Default::default() }
}
fn gpu() -> DeviceFacts {
    DeviceFacts { cpu: false, subgroups: true, packed_dot: true, ..Default::default() }
}

/// A symmetric `[n, k]` weight with one scale per row.
fn w(n: usize, k: usize) -> WeightFacts {
    WeightFacts { n, k, inner: k, zero_point: false }
}

fn per_token() -> Option<ActivationQuant> {
    Some(ActivationQuant::per_token())
}

/// The library's choice for `m` rows: (kernel, entry point, rows per pass).
fn pick(f: DeviceFacts, w: WeightFacts, m: usize, act: Option<ActivationQuant>) -> (LinearKernel, Kernel, usize) {
    let c = try_pick(f, w, m, act, None).unwrap();
    (c.kernel, c.entry, c.pass)
}

fn try_pick(
    f: DeviceFacts,
    w: WeightFacts,
    m: usize,
    act: Option<ActivationQuant>,
    tuned: Option<LinearKernel>,
) -> Result<Choice> {
    let kernel = choose_kernel(&f, &w, m, act.is_some(), tuned);
    resolve(&f, &w, m, DType::F32, act, kernel, Chooser::Library).expect("the choice suits the weight")
}

#[test]
fn float_activations_on_a_cpu_adapter() {
    use {Kernel as E, LinearKernel as K};
    // 16-byte rows; one activation row from 1024 outputs takes eight weight rows per invocation.
    assert_eq!(pick(cpu(), w(1536, 384), 1, None), (K::GemvRows16, E::GemvRows16One, 1));
    assert_eq!(pick(cpu(), w(384, 1536), 1, None), (K::GemvRows16, E::GemvRows16, 1));
    // Passes of several rows: sixteen weight rows above 256 outputs or past the four-row reach.
    assert_eq!(pick(cpu(), w(1536, 384), 8, None), (K::GemvRows16Wide, E::GemvRows16Wide, 8));
    assert_eq!(pick(cpu(), w(1536, 384), 20, None), (K::GemvRows16Wide, E::GemvRows16Wide, 8));
    assert_eq!(pick(cpu(), w(200, 384), 8, None), (K::GemvRows16, E::GemvRows16, 8));
    assert_eq!(pick(cpu(), w(200, 70000), 8, None), (K::GemvRows16Wide, E::GemvRows16Wide, 8));
    // Rows of words, then any row.
    assert_eq!(pick(cpu(), w(33, 20), 3, None), (K::GemvRows, E::GemvRows, 3));
    assert_eq!(pick(cpu(), w(5, 17), 12, None), (K::GemvGeneric, E::Gemv, 8));
}

#[test]
fn float_activations_on_a_gpu() {
    use {Kernel as E, LinearKernel as K};
    let lanes = |rows_per_group| K::GemvLanes { rows_per_group };
    // Lane groups keep at least 256 workgroups; the GEMM from 33 rows.
    assert_eq!(pick(gpu(), w(4096, 4096), 1, None), (lanes(2), E::GemvFast, 1));
    assert_eq!(pick(gpu(), w(16384, 4096), 32, None), (lanes(4), E::GemvFast, 8));
    assert_eq!(pick(gpu(), w(4096, 4096), 33, None), (K::Gemm, E::Gemm, 33));
    assert_eq!(pick(gpu(), w(64, 1000), 1, None), (K::GemvGeneric, E::Gemv, 1));
    // Scale groups and zero points reach the pipeline variant.
    let grouped = WeightFacts { inner: 16, zero_point: true, ..w(33, 64) };
    let c = try_pick(gpu(), grouped, 1, None, None).unwrap();
    assert_eq!(c.kernel, lanes(1));
    assert!(c.variant.grouped && c.variant.asym && c.variant.subgroups && c.variant.rpt == 1);
    let c = try_pick(cpu(), grouped, 1, None, None).unwrap();
    assert!(c.kernel == K::GemvRows16 && c.variant.asym && !c.variant.grouped);
}

#[test]
fn options_then_tuning_then_the_heuristic() {
    use LinearKernel as K;
    let t = |f: DeviceFacts, m, tuned| choose_kernel(&f, &w(33, 64), m, false, Some(tuned));
    assert_eq!(t(cpu(), 12, K::Gemm), K::Gemm);
    assert_eq!(t(cpu(), 1, K::GemvGeneric), K::GemvGeneric);
    // gemm_min_rows decides GEMM or passes; the tuned GEMV still serves a pass.
    let gemm9 = DeviceFacts { gemm_min_rows: Some(9), ..cpu() };
    assert_eq!(t(gemm9, 12, K::GemvGeneric), K::Gemm);
    assert_eq!(t(gemm9, 8, K::GemvGeneric), K::GemvGeneric);
    let never = DeviceFacts { gemm_min_rows: Some(usize::MAX), ..cpu() };
    assert_eq!(t(never, 12, K::Gemm), K::GemvRows16);
    // The GEMV options name the GEMV.
    let rows = DeviceFacts { gemv_rows_per_thread: Some(true), ..cpu() };
    assert_eq!(t(rows, 1, K::GemvGeneric), K::GemvRows);
    // A tuned kernel that does not suit the weight (or its activations) is passed over.
    assert_eq!(choose_kernel(&cpu(), &w(33, 20), 1, false, Some(K::GemvRows16)), K::GemvRows);
    assert_eq!(choose_kernel(&cpu(), &w(33, 64), 1, true, Some(K::GemvRows16)), K::A8Rows16);
}

#[test]
fn a_float_kernel_forced_past_the_loop_limit_is_refused() {
    let rows = DeviceFacts { gemv_rows_per_thread: Some(true), ..cpu() };
    let e = try_pick(rows, w(8, 20000), 8, None, None).unwrap_err().to_string();
    assert!(e.contains("gemv_rows_main") && e.contains("gemv_rows_per_thread = true chose it"), "{e}");
    // Tuned, without options.
    let e = try_pick(cpu(), w(8, 20000), 8, None, Some(LinearKernel::GemvRows)).unwrap_err().to_string();
    assert!(e.contains("the tuned choice"), "{e}");
    // GPUs have no such limit.
    assert!(try_pick(DeviceFacts { cpu: false, ..rows }, w(8, 20000), 8, None, None).is_ok());
}

#[test]
fn int8_activations() {
    use {Kernel as E, LinearKernel as K};
    // CPU adapters: 16-byte units, sixteen weight rows from 3 rows at large layers.
    assert_eq!(pick(cpu(), w(4096, 4096), 3, per_token()), (K::A8Rows16Wide, E::A8Rows16Wide, 3));
    assert_eq!(pick(cpu(), w(4096, 4096), 2, per_token()), (K::A8Rows16, E::A8Rows16, 2));
    assert_eq!(pick(cpu(), w(1536, 384), 8, per_token()), (K::A8Rows16, E::A8Rows16, 8));
    // Rows of words: the int8 GEMM from 64 rows.
    assert_eq!(pick(cpu(), w(384, 1036), 64, per_token()), (K::A8Gemm, E::A8Gemm, 64));
    assert_eq!(pick(cpu(), w(384, 1036), 63, per_token()), (K::A8Rows, E::A8Rows, 8));
    // A tuned wide kernel runs one row as its four-row form, under its own name.
    let c = try_pick(cpu(), w(4096, 4096), 1, per_token(), Some(K::A8Rows16Wide)).unwrap();
    assert_eq!((c.kernel, c.entry, c.pass), (K::A8Rows16Wide, E::A8Rows16, 1));
    assert!(c.variant.packed_dot && c.act == per_token());
    // GPUs: the GEMM from 33 rows, no wide kernel.
    assert_eq!(pick(gpu(), w(4096, 4096), 33, per_token()), (K::A8Gemm, E::A8Gemm, 33));
    assert_eq!(pick(gpu(), w(4096, 4096), 3, per_token()), (K::A8Rows16, E::A8Rows16, 3));
}

#[test]
fn int8_activations_within_the_loop_limit() {
    use {Kernel as E, LinearKernel as K};
    let llm = Some(ActivationQuant::llm_int8(6.0).unwrap());
    // Word rows past 65536 inputs: no GEMV pass fits, the int8 GEMM runs them.
    assert_eq!(pick(cpu(), w(5, 70004), 2, per_token()), (K::A8Gemm, E::A8Gemm, 2));
    assert!(a8_gemm_past_loop_limit(&cpu(), [5, 70004], 2) && !a8_gemm_past_loop_limit(&cpu(), [5, 70000], 2));
    assert_eq!(pick(cpu(), w(5, 70000), 2, per_token()), (K::A8Rows16, E::A8Rows16, 2));
    // Fewer rows per pass; the wide kernel gives way to the four-row one for LLM.int8().
    assert_eq!(pick(cpu(), w(5, 131072), 8, per_token()), (K::A8Rows16Wide, E::A8Rows16Wide, 8));
    assert_eq!(pick(cpu(), w(5, 131072), 8, llm), (K::A8Rows16, E::A8Rows16, 1));
    assert_eq!(pick(cpu(), w(5, 40004), 8, per_token()), (K::A8Rows, E::A8Rows, 4));
    // GPUs keep the chosen kernel and passes of 8.
    assert_eq!(pick(gpu(), w(5, 131072), 8, llm), (K::A8Rows16, E::A8Rows16, 8));
    // A GEMV that gemm_min_rows keeps rows on is refused where it cannot run.
    let never = DeviceFacts { gemm_min_rows: Some(usize::MAX), ..cpu() };
    let e = try_pick(never, w(3, 70004), 9, per_token(), None).unwrap_err().to_string();
    assert!(e.contains("a8_rows_main") && e.contains("gemm_min_rows = 18446744073709551615"), "{e}");
    assert!(try_pick(never, w(3, 70004), 8, per_token(), None).is_ok_and(|c| c.kernel == K::A8Gemm));
}
