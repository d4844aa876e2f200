//! The recording API in a page: the page's own WGSL kernel and our layer in one submission.

use int8_wgpu::{DType, GpuTensor, QuantScheme, QuantizedLinear, reference};
use wasm_bindgen_test::wasm_bindgen_test;

use crate::common;

/// The page's kernel doubles `x` in place, our layer reads it, all in one encoder and one
/// submission; the output equals the layer on the doubled input.
#[wasm_bindgen_test]
async fn a_page_kernel_and_our_layer_in_one_submission() {
    let gpu = common::gpu().await;
    let device = gpu.device();
    let w = reference::quantize(&common::rand_vec(16 * 8, 43), &[16, 8], QuantScheme::default()).unwrap();
    let layer = QuantizedLinear::from_quantized::<f32>(&gpu, &w, None, DType::F32).unwrap();
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("page kernel"),
        source: wgpu::ShaderSource::Wgsl(
            "@group(0) @binding(0) var<storage, read_write> v: array<f32>;
             @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) i: vec3<u32>) {
                 if i.x < arrayLength(&v) { v[i.x] = 2.0 * v[i.x]; }
             }"
            .into(),
        ),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("page kernel"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let xf = common::rand_vec(3 * 8, 44);
    let x = GpuTensor::from_host(&gpu, &xf, &[3, 8]).unwrap();
    let y = GpuTensor::zeros(&gpu, &[3, 16], DType::F32).unwrap();
    let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[wgpu::BindGroupEntry { binding: 0, resource: wgpu::BindingResource::Buffer(x.binding()) }],
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    }
    layer.encode(&mut encoder, &x, &y).unwrap();
    gpu.queue().submit([encoder.finish()]);
    let got: Vec<f32> = y.read_async().await.unwrap();
    let doubled: Vec<f32> = xf.iter().map(|v| 2.0 * v).collect();
    assert_eq!(x.read_async::<f32>().await.unwrap(), doubled, "the page kernel ran first");
    common::assert_linear_close(&got, &doubled, &w, None, "page kernel then layer");
}
