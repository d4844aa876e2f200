// Bindings and helpers shared by the fused linear kernels (gemv.wgsl, gemm.wgsl).
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
