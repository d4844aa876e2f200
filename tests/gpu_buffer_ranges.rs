//! Tensors over ranges of an application's arena buffer: layers read and write just their
//! ranges, aliasing is judged by range, bad ranges are errors; readback into the app's slice
//! (one reused staging buffer) or onto its encoder; the 16-bit packing.

mod common;

use half::bf16;
use int8_wgpu::{DType, Error, Gpu, GpuTensor, QuantScheme, QuantizedLinear, reference};

const SENTINEL: u32 = 0xDEAD_BEEF;

/// An arena of `slots` aligned slots, every word set to [`SENTINEL`]; returns it and the slot size.
fn arena(gpu: &Gpu, slots: u64) -> (wgpu::Buffer, u64) {
    let align = u64::from(gpu.limits().min_storage_buffer_offset_alignment).max(256);
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let size = slots * align;
    let buffer = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("arena"),
        size,
        usage,
        mapped_at_creation: false,
    });
    gpu.queue().write_buffer(&buffer, 0, bytemuck::cast_slice(&vec![SENTINEL; (size / 4) as usize]));
    (buffer, align)
}

fn words(gpu: &Gpu, buffer: &wgpu::Buffer) -> Vec<u32> {
    let n = (buffer.size() / 4) as usize;
    let all = GpuTensor::from_buffer(gpu, buffer.clone(), &[n], DType::F32).unwrap();
    all.read::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
}

/// A layer reads its input from one arena's range and writes its output into another arena's
/// range: the results equal a forward over whole buffers bit for bit and are within the f64
/// oracle's tolerance; no word outside the output's range changes.
#[test]
fn layers_read_and_write_only_their_ranges() {
    let gpu = gpu_or_skip!();
    let w = reference::quantize(&common::rand_vec(7 * 32, 1), &[7, 32], QuantScheme::default()).unwrap();
    for dtype in [DType::F32, DType::BF16] {
        let layer = QuantizedLinear::from_quantized::<f32>(&gpu, &w, None, dtype).unwrap();
        for rows in [3, 12] {
            let (a, align) = arena(&gpu, 1 + (rows as u64 * 32 * 4).div_ceil(256));
            let (b, _) = arena(&gpu, 3);
            let xf = common::rand_vec(rows * 32, 2);
            let x16: Vec<bf16> = common::to_dtype(&xf);
            let bytes: &[u8] = if dtype == DType::F32 { bytemuck::cast_slice(&xf) } else { bytemuck::cast_slice(&x16) };
            gpu.queue().write_buffer(&a, align, bytes);
            let x = GpuTensor::from_buffer_range(&gpu, a.clone(), align, &[rows, 32], dtype).unwrap();
            let y = GpuTensor::from_buffer_range(&gpu, b.clone(), align, &[rows, 7], dtype).unwrap();
            let before = words(&gpu, &b);
            layer.forward_into(&x, &y).unwrap();
            let whole = match dtype {
                DType::F32 => GpuTensor::from_host(&gpu, &xf, &[rows, 32]).unwrap(),
                _ => GpuTensor::from_host(&gpu, &x16, &[rows, 32]).unwrap(),
            };
            let want = layer.forward(&whole).unwrap().read_f32().unwrap();
            assert_eq!(y.read_f32().unwrap(), want, "{dtype} {rows} rows");
            match dtype {
                DType::F32 => common::assert_linear_close(&y.read::<f32>().unwrap(), &xf, &w, None, "f32 range"),
                _ => common::assert_linear_close(&y.read::<bf16>().unwrap(), &x16, &w, None, "bf16 range"),
            }
            let after = words(&gpu, &b);
            let range = (align / 4) as usize..((align + y.nbytes().next_multiple_of(4) as u64) / 4) as usize;
            for (i, (was, is)) in before.iter().zip(&after).enumerate() {
                if !range.contains(&i) {
                    assert_eq!(was, is, "{dtype} {rows} rows: word {i} outside the output's range {range:?}");
                }
            }
        }
    }
}

/// Quantizing a range of an arena gives the reference's ints and scales.
#[test]
fn quantizing_a_range_equals_the_reference() {
    let gpu = gpu_or_skip!();
    let (a, align) = arena(&gpu, 4);
    let wf = common::rand_vec(6 * 16, 3);
    gpu.queue().write_buffer(&a, 2 * align, bytemuck::cast_slice(&wf));
    let t = GpuTensor::from_buffer_range(&gpu, a, 2 * align, &[6, 16], DType::F32).unwrap();
    assert_eq!(t.read::<f32>().unwrap(), wf);
    let s = QuantScheme::asymmetric(int8_wgpu::Granularity::PerGroup { size: 8 });
    let q = gpu.quantize_tensor(&t, s).unwrap().to_host().unwrap();
    common::assert_same_quantized(&q, &reference::quantize(&wf, &[6, 16], s).unwrap(), "range");
}

/// Bad ranges are errors: a misaligned offset, a range past the end (or overflowing u64).
#[test]
fn bad_ranges_are_errors() {
    let gpu = gpu_or_skip!();
    let (a, align) = arena(&gpu, 2);
    let min = u64::from(gpu.limits().min_storage_buffer_offset_alignment);
    let misaligned = if min >= 8 { min / 2 } else { 2 };
    let e = GpuTensor::from_buffer_range(&gpu, a.clone(), misaligned, &[4], DType::F32).unwrap_err();
    assert!(matches!(&e, Error::Alignment(m) if m.contains("min_storage_buffer_offset_alignment")), "{e}");
    let e = GpuTensor::from_buffer_range(&gpu, a.clone(), align, &[align as usize / 4 + 1], DType::F32).unwrap_err();
    assert!(matches!(&e, Error::Shape(m) if m.contains("from offset")), "{e}");
    let e = GpuTensor::from_buffer_range(&gpu, a.clone(), 2 * align, &[1], DType::F32).unwrap_err();
    assert!(matches!(e, Error::Shape(_)), "{e}");
    let e = GpuTensor::from_buffer_range(&gpu, a.clone(), u64::MAX / align * align, &[1], DType::F32).unwrap_err();
    assert!(matches!(e, Error::Shape(_)), "{e}");
    // The last whole slot is fine, and odd 16-bit counts own their last word.
    let t = GpuTensor::from_buffer_range(&gpu, a, align, &[align as usize / 2 - 1], DType::BF16).unwrap();
    assert_eq!(t.binding().size.map(u64::from), Some(align));
}

/// Outputs are judged by range: overlapping a layer's bias or its input is refused; sharing a
/// buffer with the input or the layer's own bias is refused too (wgpu binds a buffer read-only
/// or writable per dispatch); another layer's bias in the same arena at a disjoint range is fine.
#[test]
fn aliasing_is_judged_by_range() {
    let gpu = gpu_or_skip!();
    let w = reference::quantize(&common::rand_vec(4 * 8, 4), &[4, 8], QuantScheme::default()).unwrap();
    let (a, align) = arena(&gpu, 4);
    let bias = [1.0f32, -2.0, 3.0, -4.0];
    gpu.queue().write_buffer(&a, 0, bytemuck::cast_slice(&bias));
    let bias_t = GpuTensor::from_buffer_range(&gpu, a.clone(), 0, &[4], DType::F32).unwrap();
    let biased = QuantizedLinear::from_quantized::<f32>(&gpu, &w, None, DType::F32).unwrap().with_bias(bias_t).unwrap();
    let plain = QuantizedLinear::from_quantized::<f32>(&gpu, &w, None, DType::F32).unwrap();
    let xf = common::rand_vec(8, 5);
    let x = GpuTensor::from_host(&gpu, &xf, &[1, 8]).unwrap();
    let at =
        |offset, shape: &[usize]| GpuTensor::from_buffer_range(&gpu, a.clone(), offset, shape, DType::F32).unwrap();

    // Over the bias: refused for any layer, the bias kept.
    for layer in [&biased, &plain] {
        let e = layer.forward_into(&x, &at(0, &[1, 4])).unwrap_err();
        assert!(matches!(&e, Error::Aliasing(m) if m.contains("bias")), "{e}");
    }
    // Another layer's bias in the same arena, disjoint: fine.
    let y = at(align, &[1, 4]);
    plain.forward_into(&x, &y).unwrap();
    common::assert_linear_close(&y.read::<f32>().unwrap(), &xf, &w, None, "next to a bias");
    // Sharing a buffer with the layer's own bias, disjoint: wgpu's rule, refused clearly.
    let e = biased.forward_into(&x, &y).unwrap_err();
    assert!(matches!(&e, Error::Aliasing(m) if m.contains("another buffer")), "{e}");
    // Input and output in one arena: overlapping, or disjoint.
    gpu.queue().write_buffer(&a, 2 * align, bytemuck::cast_slice(&xf));
    let xa = at(2 * align, &[1, 8]);
    let e = plain.forward_into(&xa, &at(2 * align, &[1, 4])).unwrap_err();
    assert!(matches!(&e, Error::Aliasing(m) if m.contains("overlaps the input")), "{e}");
    let e = plain.forward_into(&xa, &at(3 * align, &[1, 4])).unwrap_err();
    assert!(matches!(&e, Error::Aliasing(m) if m.contains("another buffer")), "{e}");
    assert_eq!(at(0, &[4]).read::<f32>().unwrap(), bias);
    // The bias's range is free again once its layer is gone.
    drop(biased);
    plain.forward_into(&x, &at(0, &[1, 4])).unwrap();
}

/// `read_into` equals `read`, reuses one staging buffer (no buffer made for a read no larger
/// than the largest so far), and checks dtype, length and usage.
#[test]
fn read_into_reuses_its_staging_buffer() {
    let _ = gpu_or_skip!();
    // A device of its own: other tests' buffers would show in the shared one's counts.
    let gpu = Gpu::new().unwrap();
    let (a, align) = arena(&gpu, 2);
    let v: Vec<bf16> = common::to_dtype(&common::rand_vec(33, 6));
    let mut bytes = bytemuck::cast_slice::<bf16, u8>(&v).to_vec();
    bytes.resize(68, 0);
    gpu.queue().write_buffer(&a, align, &bytes);
    let t = GpuTensor::from_buffer_range(&gpu, a, align, &[33], DType::BF16).unwrap();
    let small = GpuTensor::from_host(&gpu, &[7.0f32, 8.0], &[2]).unwrap();
    let mut out = vec![bf16::ZERO; 33];
    t.read_into(&mut out).unwrap();
    assert_eq!(out, v);
    assert_eq!(out, t.read::<bf16>().unwrap());
    let before = gpu.resource_counts();
    for _ in 0..3 {
        t.read_into(&mut out).unwrap();
        let mut two = [0.0f32; 2];
        small.read_into(&mut two).unwrap();
        assert_eq!(two, [7.0, 8.0]);
    }
    assert_eq!(gpu.resource_counts(), before, "reads through the kept staging buffer");
    assert!(matches!(t.read_into(&mut [0.0f32; 33]), Err(Error::DType { .. })));
    assert!(matches!(t.read_into(&mut [bf16::ZERO; 32]), Err(Error::Shape(_))));
    let storage_only = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 16,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let t = GpuTensor::from_buffer(&gpu, storage_only, &[4], DType::F32).unwrap();
    assert!(matches!(t.read_into(&mut [0.0f32; 4]), Err(Error::BufferUsage(m)) if m.contains("COPY_SRC")));
}

/// `copy_to` records a copy of the tensor's range onto the app's encoder, which shows the
/// 16-bit packing: element 2i in the low half of word i. Bad targets are errors.
#[test]
fn copy_to_writes_the_packed_words_into_the_apps_buffer() {
    let gpu = gpu_or_skip!();
    let v = [bf16::from_f32(1.0), bf16::from_f32(-2.0), bf16::from_f32(0.5)];
    let t = GpuTensor::from_host(&gpu, &v, &[3]).unwrap();
    let make = |size, usage| {
        gpu.device().create_buffer(&wgpu::BufferDescriptor { label: None, size, usage, mapped_at_creation: false })
    };
    let target = make(16, wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ);
    let mut enc = gpu.device().create_command_encoder(&Default::default());
    t.copy_to(&mut enc, &target, 8).unwrap();
    gpu.queue().submit([enc.finish()]);
    target.map_async(wgpu::MapMode::Read, .., |r| r.unwrap());
    gpu.synchronize().unwrap();
    let got: Vec<u32> = bytemuck::pod_collect_to_vec(&target.get_mapped_range(..).unwrap());
    let bits = |i: usize| u32::from(v[i].to_bits());
    assert_eq!(got[2..], [bits(0) | bits(1) << 16, bits(2)]);

    let mut enc = gpu.device().create_command_encoder(&Default::default());
    let e = t.copy_to(&mut enc, &make(16, wgpu::BufferUsages::COPY_DST), 2).unwrap_err();
    assert!(matches!(e, Error::Alignment(_)), "{e}");
    let e = t.copy_to(&mut enc, &make(16, wgpu::BufferUsages::COPY_DST), 12).unwrap_err();
    assert!(matches!(e, Error::Shape(_)), "{e}");
    let e = t.copy_to(&mut enc, &make(16, wgpu::BufferUsages::MAP_READ), 0).unwrap_err();
    assert!(matches!(&e, Error::BufferUsage(m) if m.contains("COPY_DST")), "{e}");
    let e = t.copy_to(&mut enc, t.buffer(), 0).unwrap_err();
    assert!(matches!(e, Error::Aliasing(_)), "{e}");
}

/// A binding a layer kept from an earlier forward is checked again once another layer's bias
/// takes its output's range: the output is then refused, not written over the bias.
#[test]
fn a_kept_binding_is_checked_again_when_a_bias_takes_its_output() {
    let gpu = gpu_or_skip!();
    let w = reference::quantize(&common::rand_vec(8 * 16, 3), &[8, 16], QuantScheme::default()).unwrap();
    let layer = QuantizedLinear::from_quantized::<f32>(&gpu, &w, None, DType::F32).unwrap();
    let x = GpuTensor::from_host(&gpu, &common::rand_vec(16, 4), &[1, 16]).unwrap();
    let y = GpuTensor::zeros(&gpu, &[1, 8], DType::F32).unwrap();
    layer.forward_into(&x, &y).unwrap();
    let before = y.read::<f32>().unwrap();
    let _other = QuantizedLinear::from_quantized::<f32>(&gpu, &w, None, DType::F32)
        .unwrap()
        .with_bias(y.reshape(&[8]).unwrap())
        .unwrap();
    let e = layer.forward_into(&x, &y).unwrap_err();
    assert!(matches!(e, Error::Aliasing(_)), "{e}");
    assert_eq!(y.read::<f32>().unwrap(), before, "the refused forward wrote nothing");
}
