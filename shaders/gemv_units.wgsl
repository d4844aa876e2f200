// 16-element units of the activations, shared by the vectorised GEMVs (gemv.wgsl's lane groups,
// gemv_rows.wgsl's gemv_rows16_main): both read x through its 16-byte view x4 (prelude).

// Sixteen activations from element i (a multiple of 16) of this pass's rows.
fn load_x16(e: u32) -> array<vec4<f32>, 4> {
    return load_x16_at(p.m0 * p.k + e);
}

// Sixteen activations from element i (a multiple of 16) of the whole activation buffer.
fn load_x16_at(i: u32) -> array<vec4<f32>, 4> {
    if IN_DT == DT_F32 {
        let b = i / 4u;
        return array<vec4<f32>, 4>(bitcast<vec4<f32>>(x4[b]), bitcast<vec4<f32>>(x4[b + 1u]), bitcast<vec4<f32>>(x4[b + 2u]), bitcast<vec4<f32>>(x4[b + 3u]));
    }
    let lo = x4[i / 8u];
    let hi = x4[i / 8u + 1u];
    return array<vec4<f32>, 4>(halves4(lo.x, lo.y), halves4(lo.z, lo.w), halves4(hi.x, hi.y), halves4(hi.z, hi.w));
}

fn dot16(a: array<vec4<f32>, 4>, b: array<vec4<f32>, 4>) -> f32 {
    return (dot(a[0], b[0]) + dot(a[1], b[1])) + (dot(a[2], b[2]) + dot(a[3], b[3]));
}
