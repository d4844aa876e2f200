//! Errors without blocking: what an error scope catches in a browser is returned by the next
//! awaited readback (src/gpu/scopes.rs), in the words the native call would have used.

use int8_wgpu::{DType, Error, GpuTensor};
use wasm_bindgen_test::wasm_bindgen_test;

use crate::common;

/// A buffer of another device, which natively `GpuTensor::from_buffer` refuses at once, is
/// reported by the next readback here; the readback after it is clean again.
#[wasm_bindgen_test]
async fn a_foreign_buffer_is_reported_by_the_next_readback() {
    let gpu = common::gpu().await;
    let other = common::open(Default::default()).await;
    let foreign = other.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("another device's buffer"),
        size: 16,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mine = GpuTensor::from_host(&gpu, &[1.0f32, 2.0], &[2]).unwrap();
    // Natively an Error::WrongDevice at once; here the probe's error scope is only popped.
    let _wrapped = GpuTensor::from_buffer(&gpu, foreign, &[4], DType::F32).expect("checked at the next readback");
    let e = mine.read_async::<f32>().await.unwrap_err();
    assert!(matches!(&e, Error::WrongDevice(_)), "{e}");
    assert_eq!(mine.read_async::<f32>().await.unwrap(), [1.0, 2.0]);
}
