// int8 -> f32 / f16 / bf16 (OUT_DT): `scale * (q - zp)`, bit-equal to the CPU reference in f32.

// Params (DequantizeParams in src/gpu/params.rs) and the bindings p, out, weights, scales and
// zps come from the host's prelude.

@compute @workgroup_size(WG)
fn dequantize_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * WG + gid.x;
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
