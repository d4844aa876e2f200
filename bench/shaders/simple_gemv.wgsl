// The simple GEMV of issue 12 (benches only): the yardstick the library's linear kernels are
// timed against, not a contender. Each invocation owns 4 weight rows and walks them a u32 word
// (4 int8 weights) at a time: `unpack4xI8`, an f32 dot with 4 activations, f32 accumulators;
// no workgroup memory, no barriers, no cleverness. One activation row is the issue's kernel as
// written; more rows are taken 8 at a time inside the word loop, each with its accumulators, so
// a weight word is read once per 8 activation rows (as the library's GEMV reads it) rather than
// once per row: the simplest kernel that does the many-row job without re-reading the weight.
// The host dispatches one pass per 8 activation rows (rows m0 .. m1): one invocation looping
// over every row would pass llvmpipe's loop limit (65535 loop iterations per invocation, after
// which it silently stops) at [4096, 4096] with 128 rows, and time a kernel that skipped most
// of its work.
// y[m, r] = s[r] * Σ_c x[m, c] * q[r, c], symmetric int8 weights with one scale per row.
//
// The host writes DT_F32/DT_F16/DT_BF16 and prepends common.wgsl (decode, store_out) ahead of
// this file, so 16-bit activations and outputs are read and rounded as the library's kernels do.

struct SimpleParams {
    m: u32,    // activation rows
    n: u32,    // output features (the whole weight)
    k: u32,    // input features, a multiple of 4
    wpr: u32,  // u32 words per weight row (k / 4)
    row0: u32, // first weight row of this binding's block
    rows: u32, // weight rows in this block
    m0: u32,   // first activation row of this pass
    m1: u32,   // end of this pass's activation rows (at most m0 + 8)
}

const SIMPLE_WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> p: SimpleParams;
@group(0) @binding(1) var<storage, read_write> out: array<atomic<u32>>;
@group(0) @binding(2) var<storage, read> x: array<u32>;
@group(0) @binding(3) var<storage, read> w: array<u32>;
@group(0) @binding(4) var<storage, read> s: array<f32>;

// Activations 4i .. 4i + 3 of row m: four words in f32, two in a 16-bit dtype.
fn x4(m: u32, i: u32) -> vec4<f32> {
    let e = m * p.k + 4u * i;
    if IN_DT == DT_F32 {
        return bitcast<vec4<f32>>(vec4<u32>(x[e], x[e + 1u], x[e + 2u], x[e + 3u]));
    }
    let a = x[e >> 1u];
    let b = x[(e >> 1u) + 1u];
    return vec4<f32>(decode(a, 0u, IN_DT), decode(a, 1u, IN_DT), decode(b, 0u, IN_DT), decode(b, 1u, IN_DT));
}

fn q4(row: u32, i: u32) -> vec4<f32> {
    return vec4<f32>(unpack4xI8(w[row * p.wpr + i]));
}

@compute @workgroup_size(SIMPLE_WG)
fn simple_gemv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r0 = (gid.y * nwg.x * SIMPLE_WG + gid.x) * 4u;
    if r0 >= p.rows {
        return;
    }
    // The block's last rows when it has fewer than 4 left (computed, not stored).
    let r = min(vec4<u32>(r0, r0 + 1u, r0 + 2u, r0 + 3u), vec4<u32>(p.rows - 1u));
    if p.m1 - p.m0 == 1u {
        var a = vec4<f32>(0.0);
        for (var i = 0u; i < p.wpr; i++) {
            let xv = x4(p.m0, i);
            a.x += dot(xv, q4(r.x, i));
            a.y += dot(xv, q4(r.y, i));
            a.z += dot(xv, q4(r.z, i));
            a.w += dot(xv, q4(r.w, i));
        }
        store4(r0, p.m0, a);
        return;
    }
    for (var m0 = p.m0; m0 < p.m1; m0 += 8u) {
        let mm = min(p.m1 - m0, 8u);
        var a: array<vec4<f32>, 8>;
        for (var i = 0u; i < p.wpr; i++) {
            let q = array<vec4<f32>, 4>(q4(r.x, i), q4(r.y, i), q4(r.z, i), q4(r.w, i));
            for (var j = 0u; j < mm; j++) {
                let xv = x4(m0 + j, i);
                a[j] += vec4<f32>(dot(xv, q[0]), dot(xv, q[1]), dot(xv, q[2]), dot(xv, q[3]));
            }
        }
        for (var j = 0u; j < mm; j++) {
            store4(r0, m0 + j, a[j]);
        }
    }
}

// Outputs of activation row m for the invocation's rows r0 .. r0 + 3 that exist.
fn store4(r0: u32, m: u32, a: vec4<f32>) {
    for (var j = 0u; j < 4u; j++) {
        if r0 + j < p.rows {
            let row = p.row0 + r0 + j;
            store_out(m * p.n + row, s[row] * a[j]);
        }
    }
}
