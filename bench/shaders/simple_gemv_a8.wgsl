// The simple int8-activation GEMV (benches only): the yardstick the library's W8A8 matmul is
// timed against, not a contender. simple_gemv.wgsl's design with int8 on both sides: each
// invocation owns 4 weight rows and walks them a u32 word (4 int8) at a time, `dot4I8Packed`
// with the activation row's word into i32 accumulators, 8 activation rows at a time inside the
// word loop (each weight word read once per 8 rows); no workgroup memory, no barriers. Then
// y[m, r] = (s_x[m] · f32(acc)) · s_w[r] in f32: reference::linear_a8 without bias and outlier
// columns, so it gives the library's bits. The activations come quantized (packed words, one
// scale per row): the library's activation quantizer is not part of this job. One pass per 8
// activation rows (rows m0 .. m1), as simple_gemv.wgsl, for llvmpipe's loop limit.

struct SimpleParams {
    m: u32,    // activation rows
    n: u32,    // output features (the whole weight)
    k: u32,    // input features, a multiple of 4
    wpr: u32,  // u32 words per row (k / 4)
    row0: u32, // first weight row of this binding's block
    rows: u32, // weight rows in this block
    m0: u32,   // first activation row of this pass
    m1: u32,   // end of this pass's activation rows (at most m0 + 8)
}

const SIMPLE_WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> p: SimpleParams;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> qx: array<u32>;
@group(0) @binding(3) var<storage, read> w: array<u32>;
@group(0) @binding(4) var<storage, read> s: array<f32>;
@group(0) @binding(5) var<storage, read> sx: array<f32>;

@compute @workgroup_size(SIMPLE_WG)
fn simple_gemv_a8(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r0 = (gid.y * nwg.x * SIMPLE_WG + gid.x) * 4u;
    if r0 >= p.rows {
        return;
    }
    // The block's last rows when it has fewer than 4 left (computed, not stored).
    let r = min(vec4<u32>(r0, r0 + 1u, r0 + 2u, r0 + 3u), vec4<u32>(p.rows - 1u)) * p.wpr;
    for (var m0 = p.m0; m0 < p.m1; m0 += 8u) {
        let mm = min(p.m1 - m0, 8u);
        var a: array<vec4<i32>, 8>;
        for (var i = 0u; i < p.wpr; i++) {
            let q = vec4<u32>(w[r.x + i], w[r.y + i], w[r.z + i], w[r.w + i]);
            for (var j = 0u; j < mm; j++) {
                let xv = qx[(m0 + j) * p.wpr + i];
                a[j] += vec4<i32>(dot4I8Packed(xv, q.x), dot4I8Packed(xv, q.y), dot4I8Packed(xv, q.z), dot4I8Packed(xv, q.w));
            }
        }
        for (var j = 0u; j < mm; j++) {
            for (var c = 0u; c < 4u; c++) {
                if r0 + c < p.rows {
                    let row = p.row0 + r0 + c;
                    out[(m0 + j) * p.n + row] = (sx[m0 + j] * f32(a[j][c])) * s[row];
                }
            }
        }
    }
}
