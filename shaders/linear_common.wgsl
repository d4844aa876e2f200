// Bindings and helpers shared by the fused linear kernels (gemv.wgsl, gemv_rows.wgsl, gemm.wgsl,
// linear_a8.wgsl).
// y[m, n] = Σ_segments s * (Σ_k x[m,k] q[n,k] − z Σ_k x[m,k]) + bias[n]; x, bias and y in IN_DT.

// Params (LinearParams in src/gpu/params.rs) and the bindings p, out, x, weights, scales, zps
// and bias come from the host's prelude.

// Element i of this pass's activation rows.
fn load_x(i: u32) -> f32 {
    let e = p.m0 * p.k + i;
    return decode(x[word_index(e, IN_DT)], e, IN_DT);
}

fn weight_q(local_row: u32, k: u32) -> i32 {
    return byte_at(weights[local_row * p.words_per_row + (k >> 2u)] ^ p.xor_mask, k & 3u);
}

fn store_y(m: u32, local_row: u32, acc: f32) {
    let n = p.row0 + local_row;
    var v = acc;
    if p.has_bias != 0u {
        v += decode(bias[word_index(n, IN_DT)], n, IN_DT);
    }
    store_out((p.m0 + m) * p.n + n, v);
}

// Four packed int8 as floats, byte j of the word in lane j.
fn unpack_i8x4(w: u32) -> vec4<f32> {
    return vec4<f32>((vec4<i32>(bitcast<i32>(w)) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
}

// Two words of 16-bit activations as four floats.
fn halves4(a: u32, b: u32) -> vec4<f32> {
    return vec4<f32>(decode(a, 0u, IN_DT), decode(a, 1u, IN_DT), decode(b, 0u, IN_DT), decode(b, 1u, IN_DT));
}

// The output tile of a tiled-GEMM workgroup, tm activation rows by tn weight rows, tiles
// ordered weight-rows-fastest: its first activation row (x) and first weight row (y).
fn tile_origin(wid: vec3<u32>, nwg: vec3<u32>, tm: u32, tn: u32) -> vec2<u32> {
    let tiles_n = (p.rows + tn - 1u) / tn;
    let unit = flat_group(wid, nwg);
    return vec2<u32>((unit / tiles_n) * tm, (unit % tiles_n) * tn);
}

// Offsets, in 16-byte units, of the four weight rows from local row r0 of this block (the
// row-per-invocation GEMVs in 16-byte units); rows past the end repeat the last one, whose sums
// are never stored.
fn row_bases(r0: u32) -> vec4<u32> {
    let last = vec4<u32>(p.rows - 1u);
    return min(vec4<u32>(r0) + vec4<u32>(0u, 1u, 2u, 3u), last) * (p.words_per_row / 4u);
}

// row_bases for the sixteen weight rows from local row r0 (the wide row GEMVs).
fn wide_bases(r0: u32) -> array<vec4<u32>, 4> {
    return array<vec4<u32>, 4>(row_bases(r0), row_bases(r0 + 4u), row_bases(r0 + 8u), row_bases(r0 + 12u));
}
