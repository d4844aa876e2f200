// Bindings and helpers shared by the fused linear kernels (gemv.wgsl, gemm.wgsl).
// y[m, n] = Σ_segments s * (Σ_k x[m,k] q[n,k] − z Σ_k x[m,k]) + bias[n]; x, bias and y in IN_DT.

struct Params {
    m: u32,             // activation rows in this pass
    n: u32,             // out_features (row stride of y)
    k: u32,             // in_features
    words_per_row: u32, // packed weight row stride
    row0: u32,          // first weight row in this block
    rows: u32,          // weight rows in this block
    inner: u32,         // ParamLayout: scale of element e is (e / inner) % channels
    channels: u32,
    chunk: u32,         // gemv: elements of k per thread task
    has_bias: u32,
    xor_mask: u32,      // 0x80808080 when bytes are stored offset-binary (q + 128, compressed-tensors)
    m0: u32,            // first activation row of this pass (GEMV passes of 8 rows)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> x: array<u32>;
@group(0) @binding(3) var<storage, read> weights: array<u32>;
@group(0) @binding(4) var<storage, read> scales: array<f32>;
@group(0) @binding(5) var<storage, read> zps: array<i32>;
@group(0) @binding(6) var<storage, read> bias: array<u32>;

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
