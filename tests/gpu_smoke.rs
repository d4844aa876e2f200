mod common;
use int8_wgpu::*;

#[test]
fn smoke() {
    let gpu = gpu_or_skip!();
    let x = common::rand_vec(64 * 257, 1);
    let s = QuantScheme::asymmetric(Granularity::PerGroup { size: 257 });
    let g = gpu.quantize(&x, &[64, 257], s).unwrap().to_host().unwrap();
    let c = reference::quantize(&x, &[64, 257], s).unwrap();
    common::assert_same_quantized(&g, &c, "smoke");
    let layer = QuantizedLinear::from_quantized::<f32>(&gpu, &c, None, DType::F32).unwrap();
    for m in [1, 3, 9, 40] {
        let xa = common::rand_vec(m * 257, 2);
        let y = layer.forward_host(&xa, &[m, 257]).unwrap();
        common::assert_linear_close(&y, &xa, &c, None, "smoke");
    }
}
