// int8 -> f32 / f16 / bf16 (OUT_DT): `scale * (q - zp)`, bit-equal to the CPU reference in f32.

struct Params {
    channels: u32,
    inner: u32,
    cols: u32,
    words_per_row: u32,
    row0: u32,
    rows: u32,
    xor_mask: u32, // 0x80808080 when bytes are stored offset-binary (q + 128)
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> weights: array<u32>;
@group(0) @binding(3) var<storage, read> scales: array<f32>;
@group(0) @binding(4) var<storage, read> zps: array<i32>;

@compute @workgroup_size(256)
fn dequantize_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 256u + gid.x;
    if i >= p.rows * p.cols {
        return;
    }
    let r = i / p.cols;
    let c = i % p.cols;
    let q = byte_at(weights[r * p.words_per_row + (c >> 2u)] ^ p.xor_mask, c & 3u);
    let e = (p.row0 + r) * p.cols + c;
    let pi = param_of(e, p.inner, p.channels);
    store_out(e, scales[pi] * f32(q - zps[pi]));
}
