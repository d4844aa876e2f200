// Int8 activations times int8 weights (W8A8, LLM.int8()), after act_quant.wgsl:
// acc[m, n] = Σ_k q_x[m, k] q_w[n, k] in i32 over packed words, then
// y = ((s_x[m] · f32(acc)) · s_w[n] + Σ_{outlier c, ascending} x[m, c] · (s_w[n] · q_w[n, c])) + bias[n]
// in f32, rounded once to OUT_DT: the operation order of reference::linear_a8. Weights are
// symmetric with one scale per row or per tensor. q_x rows are zero-padded to whole words and
// zero in outlier columns, so padding bytes and outlier columns add nothing to acc (even
// offset-binary weights, whose zero padding reads as -128).
// Four entry points: a8_rows_main (GEMV, several weight rows per invocation, no barriers),
// a8_rows16_main (the same in 16-byte units, for k % 16 == 0), a8_rows16_wide_main (that with
// sixteen weight rows per invocation, for passes of several rows) and a8_gemm_main (64x64 tiles
// of packed words in workgroup memory, 4x4 outputs per thread).

// dot4I8Packed, or the same sum from sign-extended bytes. Integer sums are exact and wrap
// identically, so both give the same bits; see Gpu::uses_packed_dot for how naga lowers the
// builtin on each backend.
override PACKED_DOT: bool = true;

fn dot4(a: u32, b: u32) -> i32 {
    if PACKED_DOT {
        return dot4I8Packed(a, b);
    }
    return (byte_at(a, 0u) * byte_at(b, 0u) + byte_at(a, 1u) * byte_at(b, 1u))
        + (byte_at(a, 2u) * byte_at(b, 2u) + byte_at(a, 3u) * byte_at(b, 3u));
}

fn weight_word(local_row: u32, w: u32) -> u32 {
    return weights[local_row * p.words_per_row + w] ^ p.xor_mask;
}

// Scales the integer sum of pass row m and weight row local_row, adds the outlier columns in
// f32, then the bias (store_y), and stores it.
fn store_a8(m: u32, local_row: u32, acc: i32) {
    let sw = scales[param_of((p.row0 + local_row) * p.k, p.inner, p.channels)];
    let sx = bitcast<f32>(act[meta_scale(p.m0 + m)]);
    var fp = 0.0;
    let count = act[META_COUNT];
    for (var i = 0u; i < count; i++) {
        let c = act[META_LIST + i];
        fp += load_x(m * p.k + c) * (sw * f32(weight_q(local_row, c)));
    }
    store_y(m, local_row, (sx * f32(acc)) * sw + fp);
}

// The scale of weight row local_row of this block.
fn row_scale(local_row: u32) -> f32 {
    return scales[param_of((p.row0 + local_row) * p.k, p.inner, p.channels)];
}

// f plus outlier column c's terms for the pass's activation rows (f[m], one lane per weight
// row): f[m] + x[m, c] · wq, wq = s_w · q_w[., c] per row, as store_a8 adds them.
fn outlier_column(f: array<vec4<f32>, 8>, c: u32, wq: vec4<f32>, rows: u32) -> array<vec4<f32>, 8> {
    var g = f;
    g[0] += load_x(c) * wq;
    if rows > 1u { g[1] += load_x(p.k + c) * wq; }
    if rows > 2u { g[2] += load_x(2u * p.k + c) * wq; }
    if rows > 3u { g[3] += load_x(3u * p.k + c) * wq; }
    if rows > 4u { g[4] += load_x(4u * p.k + c) * wq; }
    if rows > 5u { g[5] += load_x(5u * p.k + c) * wq; }
    if rows > 6u { g[6] += load_x(6u * p.k + c) * wq; }
    if rows > 7u { g[7] += load_x(7u * p.k + c) * wq; }
    return g;
}

// The outlier columns' f32 sums, [m][r], for activation row m of the pass and weight row r0 + r
// (rows past the end repeat the last one): Σ over the columns in ascending order, as store_a8
// sums them for one output, but one loop over the columns for all of the invocation's outputs,
// four columns a step. llvmpipe stops all of an invocation's loops after 65535 iterations
// (src/gpu/linear/table.rs); a loop per output over the columns met that from about 2000
// outlier columns with 32 outputs per invocation.
fn outlier_sums(r0: u32) -> array<vec4<f32>, 8> {
    var f: array<vec4<f32>, 8>;
    let count = act[META_COUNT];
    if count == 0u {
        return f;
    }
    let last = p.rows - 1u;
    let lr = min(vec4<u32>(r0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last));
    let sw = vec4<f32>(row_scale(lr.x), row_scale(lr.y), row_scale(lr.z), row_scale(lr.w));
    let rows = p.m;
    var i = 0u;
    // Four columns a step, written out: a loop inside would count against the limit too.
    loop {
        if i + 4u > count {
            break;
        }
        f = outlier_entry(f, i, lr, sw, rows);
        f = outlier_entry(f, i + 1u, lr, sw, rows);
        f = outlier_entry(f, i + 2u, lr, sw, rows);
        f = outlier_entry(f, i + 3u, lr, sw, rows);
        i += 4u;
    }
    for (; i < count; i++) {
        f = outlier_entry(f, i, lr, sw, rows);
    }
    return f;
}

// outlier_column for entry i of the outlier list, over the weight rows lr with scales sw.
fn outlier_entry(f: array<vec4<f32>, 8>, i: u32, lr: vec4<u32>, sw: vec4<f32>, rows: u32) -> array<vec4<f32>, 8> {
    let c = act[META_LIST + i];
    let q = vec4<f32>(f32(weight_q(lr.x, c)), f32(weight_q(lr.y, c)), f32(weight_q(lr.z, c)), f32(weight_q(lr.w, c)));
    return outlier_column(f, c, sw * q, rows);
}

// Stores the GEMVs' sums: acc[m][r] for activation row m of the pass and weight row r0 + r
// (THREAD_ROWS = 4, one vec4 lane per weight row), scaled, plus the outlier columns' sums and
// the bias: store_a8's value.
fn store_rows(r0: u32, acc: array<vec4<i32>, MAX_M>) {
    let fo = outlier_sums(r0);
    for (var r = 0u; r < THREAD_ROWS; r++) {
        if r0 + r >= p.rows {
            break;
        }
        let sw = row_scale(r0 + r);
        for (var m = 0u; m < MAX_M; m++) {
            if m >= p.m {
                break;
            }
            let sx = bitcast<f32>(act[meta_scale(p.m0 + m)]);
            store_y(m, r0 + r, (sx * f32(acc[m][r])) * sw + fo[m][r]);
        }
    }
}

@compute @workgroup_size(GEMV_WG)
fn a8_rows_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r0 = (gid.y * nwg.x * GEMV_WG + gid.x) * THREAD_ROWS;
    if r0 >= p.rows {
        return;
    }
    // [m]: the sums of the four weight rows for activation row m
    var acc: array<vec4<i32>, MAX_M>;
    for (var w = 0u; w < p.words_per_row; w++) {
        var q: array<u32, THREAD_ROWS>;
        for (var r = 0u; r < THREAD_ROWS; r++) {
            // rows past the end repeat the last one; their sums are never stored
            q[r] = weight_word(min(r0 + r, p.rows - 1u), w);
        }
        for (var m = 0u; m < MAX_M; m++) {
            if m >= p.m {
                break;
            }
            let a = qx[(p.m0 + m) * p.words_per_row + w];
            for (var r = 0u; r < THREAD_ROWS; r++) {
                acc[m][r] += dot4(a, q[r]);
            }
        }
    }
    store_rows(r0, acc);
}

// Sixteen int8 products of two 16-byte units.
fn dot16i(a: vec4<u32>, b: vec4<u32>) -> i32 {
    return (dot4(a.x, b.x) + dot4(a.y, b.y)) + (dot4(a.z, b.z) + dot4(a.w, b.w));
}

// Unit u (16 int8) of the weight row starting at unit `base` of this block. Read as four words
// through the same u32 view the outlier columns read (store_a8): an entry point may not bind one
// buffer through two views.
fn weight_unit(base: u32, u: u32) -> vec4<u32> {
    let w = 4u * (base + u);
    return vec4<u32>(weights[w], weights[w + 1u], weights[w + 2u], weights[w + 3u]) ^ vec4<u32>(p.xor_mask);
}

// Unit u of activation row m of this pass.
fn qx_unit(base: u32, u: u32) -> vec4<u32> {
    let w = 4u * (base + u);
    return vec4<u32>(qx[w], qx[w + 1u], qx[w + 2u], qx[w + 3u]);
}

// a8_rows_main in 16-byte units (k % 16 == 0): one vec4<u32> per row per step, and a loop of
// its own for one activation row. On lavapipe the weight-only GEMV of this design
// (gemv_rows16_main) ran 4-8x faster than one word per step, whose per-step overhead, not its
// arithmetic, bound it; BENCHMARKS.md has this kernel's figures.
@compute @workgroup_size(GEMV_WG)
fn a8_rows16_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r0 = (gid.y * nwg.x * GEMV_WG + gid.x) * THREAD_ROWS;
    if r0 >= p.rows {
        return;
    }
    let stride = p.words_per_row / 4u;
    let b = row_bases(r0);
    // [m]: the sums of the four weight rows for activation row m
    var acc: array<vec4<i32>, MAX_M>;
    if p.m == 1u {
        let xb = p.m0 * stride;
        var a0 = vec4<i32>(0);
        for (var u = 0u; u < stride; u++) {
            let xv = qx_unit(xb, u);
            a0 += vec4<i32>(dot16i(xv, weight_unit(b.x, u)), dot16i(xv, weight_unit(b.y, u)), dot16i(xv, weight_unit(b.z, u)), dot16i(xv, weight_unit(b.w, u)));
        }
        acc[0] = a0;
    } else {
        for (var u = 0u; u < stride; u++) {
            let w0 = weight_unit(b.x, u);
            let w1 = weight_unit(b.y, u);
            let w2 = weight_unit(b.z, u);
            let w3 = weight_unit(b.w, u);
            for (var m = 0u; m < MAX_M; m++) {
                if m >= p.m {
                    break;
                }
                let xv = qx_unit((p.m0 + m) * stride, u);
                acc[m] += vec4<i32>(dot16i(xv, w0), dot16i(xv, w1), dot16i(xv, w2), dot16i(xv, w3));
            }
        }
    }
    store_rows(r0, acc);
}

// a8_rows16_main for passes of several activation rows, sixteen weight rows per invocation
// (the host runs it on CPU adapters where a pass has two or more rows): gemv_rows16_wide_main's
// design, whose comment says why every accumulator is a named value indexed by constants only.
// BENCHMARKS.md has the figures.

// One 16-byte unit of each of sixteen weight rows.
alias A8WideUnit = array<vec4<u32>, 16>;

// Unit u of the rows at bases b (see row_bases), with the weights' xor mask xm applied (passed
// in rather than read from p in the hot loop, as gemv_rows16_wide_main does).
fn a8_wide_unit(b: array<vec4<u32>, 4>, u: u32, xm: vec4<u32>) -> A8WideUnit {
    return A8WideUnit(
        a8_wide_row(b[0].x + u, xm), a8_wide_row(b[0].y + u, xm), a8_wide_row(b[0].z + u, xm), a8_wide_row(b[0].w + u, xm),
        a8_wide_row(b[1].x + u, xm), a8_wide_row(b[1].y + u, xm), a8_wide_row(b[1].z + u, xm), a8_wide_row(b[1].w + u, xm),
        a8_wide_row(b[2].x + u, xm), a8_wide_row(b[2].y + u, xm), a8_wide_row(b[2].z + u, xm), a8_wide_row(b[2].w + u, xm),
        a8_wide_row(b[3].x + u, xm), a8_wide_row(b[3].y + u, xm), a8_wide_row(b[3].z + u, xm), a8_wide_row(b[3].w + u, xm));
}

// The unit at 16-byte slot `slot` of this block, through the u32 view (see weight_unit).
fn a8_wide_row(slot: u32, xm: vec4<u32>) -> vec4<u32> {
    let w = 4u * slot;
    return vec4<u32>(weights[w], weights[w + 1u], weights[w + 2u], weights[w + 3u]) ^ xm;
}

// a plus one activation row's unit xv times the sixteen rows' unit w.
fn a8_wide_step(a: array<vec4<i32>, 4>, xv: vec4<u32>, w: A8WideUnit) -> array<vec4<i32>, 4> {
    return array<vec4<i32>, 4>(
        a[0] + vec4<i32>(dot16i(xv, w[0]), dot16i(xv, w[1]), dot16i(xv, w[2]), dot16i(xv, w[3])),
        a[1] + vec4<i32>(dot16i(xv, w[4]), dot16i(xv, w[5]), dot16i(xv, w[6]), dot16i(xv, w[7])),
        a[2] + vec4<i32>(dot16i(xv, w[8]), dot16i(xv, w[9]), dot16i(xv, w[10]), dot16i(xv, w[11])),
        a[3] + vec4<i32>(dot16i(xv, w[12]), dot16i(xv, w[13]), dot16i(xv, w[14]), dot16i(xv, w[15])));
}

@compute @workgroup_size(WIDE_WG)
fn a8_rows16_wide_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r0 = (gid.y * nwg.x * WIDE_WG + gid.x) * WIDE_ROWS;
    if r0 >= p.rows {
        return;
    }
    let stride = p.words_per_row / 4u;
    let b = wide_bases(r0);
    let xm = vec4<u32>(p.xor_mask);
    let rows = p.m;
    // Unit 0 of the pass's first activation row.
    let xb = p.m0 * stride;
    var a0: array<vec4<i32>, 4>;
    var a1: array<vec4<i32>, 4>;
    var a2: array<vec4<i32>, 4>;
    var a3: array<vec4<i32>, 4>;
    var a4: array<vec4<i32>, 4>;
    var a5: array<vec4<i32>, 4>;
    var a6: array<vec4<i32>, 4>;
    var a7: array<vec4<i32>, 4>;
    for (var u = 0u; u < stride; u++) {
        let w = a8_wide_unit(b, u, xm);
        a0 = a8_wide_step(a0, qx_unit(xb, u), w);
        if rows > 1u { a1 = a8_wide_step(a1, qx_unit(xb + stride, u), w); }
        if rows > 2u { a2 = a8_wide_step(a2, qx_unit(xb + 2u * stride, u), w); }
        if rows > 3u { a3 = a8_wide_step(a3, qx_unit(xb + 3u * stride, u), w); }
        if rows > 4u { a4 = a8_wide_step(a4, qx_unit(xb + 4u * stride, u), w); }
        if rows > 5u { a5 = a8_wide_step(a5, qx_unit(xb + 5u * stride, u), w); }
        if rows > 6u { a6 = a8_wide_step(a6, qx_unit(xb + 6u * stride, u), w); }
        if rows > 7u { a7 = a8_wide_step(a7, qx_unit(xb + 7u * stride, u), w); }
    }
    let acc = array<array<vec4<i32>, 4>, 8>(a0, a1, a2, a3, a4, a5, a6, a7);
    for (var m = 0u; m < rows; m++) {
        for (var r = 0u; r < WIDE_ROWS; r++) {
            if r0 + r >= p.rows {
                break;
            }
            store_a8(m, r0 + r, acc[m][r / 4u][r % 4u]);
        }
    }
}

// Words of one GEMM k step; TM * TKW = WG, so each thread stages one word of each tile.
const TKW: u32 = TK / 4u;

// Tiles k-major in vec4s of four neighbouring rows (as gemm.wgsl, for the same bank reasons):
// xq[kw * 16 + i][j] = q_x row 4i + j, word k0 + kw; wq likewise for weight rows.
var<workgroup> xq: array<vec4<u32>, TKW * TM / 4u>;
var<workgroup> wq: array<vec4<u32>, TKW * TN / 4u>;

@compute @workgroup_size(WG)
fn a8_gemm_main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let origin = tile_origin(wid, nwg, TM, TN);
    let m0 = origin.x;
    let r0 = origin.y;
    if m0 >= p.m {
        return;
    }
    // This thread's outputs: rows m0 + 4 ty .. + 4, weight rows r0 + 4 tx .. + 4.
    let tx = t % 16u;
    let ty = t / 16u;
    // The word this thread stages: tile row t / TKW, word t % TKW of the k step.
    let sr = t / TKW;
    let sk = t % TKW;
    var acc: array<vec4<i32>, 4>;
    for (var k0 = 0u; k0 < p.words_per_row; k0 += TKW) {
        let wi = k0 + sk;
        var a = 0u;
        if m0 + sr < p.m && wi < p.words_per_row {
            a = qx[(p.m0 + m0 + sr) * p.words_per_row + wi];
        }
        xq[sk * 16u + sr / 4u][sr % 4u] = a;
        var b = 0u;
        if r0 + sr < p.rows && wi < p.words_per_row {
            b = weight_word(r0 + sr, wi);
        }
        wq[sk * 16u + sr / 4u][sr % 4u] = b;
        workgroupBarrier();
        // The TKW = 4 words of the step, written out: llvmpipe counts a loop's iterations
        // against its limit (src/gpu/linear/table.rs) and did not unroll this one.
        acc = a8_gemm_word(acc, xq[ty], wq[tx]);
        acc = a8_gemm_word(acc, xq[16u + ty], wq[16u + tx]);
        acc = a8_gemm_word(acc, xq[32u + ty], wq[32u + tx]);
        acc = a8_gemm_word(acc, xq[48u + ty], wq[48u + tx]);
        workgroupBarrier();
    }
    let fo = gemm_outlier_sums(m0 + 4u * ty, r0 + 4u * tx);
    for (var i = 0u; i < 4u; i++) {
        let m = m0 + 4u * ty + i;
        let sx = bitcast<f32>(act[meta_scale(p.m0 + m)]);
        for (var j = 0u; j < 4u; j++) {
            let lr = r0 + 4u * tx + j;
            if m < p.m && lr < p.rows {
                store_y(m, lr, (sx * f32(acc[i][j])) * row_scale(lr) + fo[i][j]);
            }
        }
    }
}

// acc plus the products of one staged word of four activation rows (xa) and four weight rows
// (wb): acc[i][j] += xa[i] · wb[j].
fn a8_gemm_word(acc: array<vec4<i32>, 4>, xa: vec4<u32>, wb: vec4<u32>) -> array<vec4<i32>, 4> {
    var a = acc;
    a[0] += vec4<i32>(dot4(xa.x, wb.x), dot4(xa.x, wb.y), dot4(xa.x, wb.z), dot4(xa.x, wb.w));
    a[1] += vec4<i32>(dot4(xa.y, wb.x), dot4(xa.y, wb.y), dot4(xa.y, wb.z), dot4(xa.y, wb.w));
    a[2] += vec4<i32>(dot4(xa.z, wb.x), dot4(xa.z, wb.y), dot4(xa.z, wb.z), dot4(xa.z, wb.w));
    a[3] += vec4<i32>(dot4(xa.w, wb.x), dot4(xa.w, wb.y), dot4(xa.w, wb.z), dot4(xa.w, wb.w));
    return a;
}

// The outlier columns' f32 sums of a GEMM thread's 4x4 outputs, [i][j] for pass row mb + i and
// weight row rb + j (rows past either end repeat the last one; those sums are never stored):
// store_a8's sum, in its order, but one loop over the columns for all sixteen outputs, as in
// outlier_sums (a loop per output passed llvmpipe's loop limit from about 4100 columns).
fn gemm_outlier_sums(mb: u32, rb: u32) -> array<vec4<f32>, 4> {
    var f: array<vec4<f32>, 4>;
    let count = act[META_COUNT];
    // A thread with no output to store (a tile past the pass's rows) skips the loop.
    if count == 0u || mb >= p.m || rb >= p.rows {
        return f;
    }
    let lr = min(vec4<u32>(rb) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.rows - 1u));
    let sw = vec4<f32>(row_scale(lr.x), row_scale(lr.y), row_scale(lr.z), row_scale(lr.w));
    let xr = min(vec4<u32>(mb) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.m - 1u)) * p.k;
    var i = 0u;
    // Eight columns a step, written out (see outlier_sums).
    loop {
        if i + 8u > count {
            break;
        }
        f = gemm_outlier_entry(f, i, lr, sw, xr);
        f = gemm_outlier_entry(f, i + 1u, lr, sw, xr);
        f = gemm_outlier_entry(f, i + 2u, lr, sw, xr);
        f = gemm_outlier_entry(f, i + 3u, lr, sw, xr);
        f = gemm_outlier_entry(f, i + 4u, lr, sw, xr);
        f = gemm_outlier_entry(f, i + 5u, lr, sw, xr);
        f = gemm_outlier_entry(f, i + 6u, lr, sw, xr);
        f = gemm_outlier_entry(f, i + 7u, lr, sw, xr);
        i += 8u;
    }
    for (; i < count; i++) {
        f = gemm_outlier_entry(f, i, lr, sw, xr);
    }
    return f;
}

// f plus entry i of the outlier list for the activation rows starting at elements xr and the
// weight rows lr with scales sw.
fn gemm_outlier_entry(f: array<vec4<f32>, 4>, i: u32, lr: vec4<u32>, sw: vec4<f32>, xr: vec4<u32>) -> array<vec4<f32>, 4> {
    let c = act[META_LIST + i];
    let wq = sw * vec4<f32>(f32(weight_q(lr.x, c)), f32(weight_q(lr.y, c)), f32(weight_q(lr.z, c)), f32(weight_q(lr.w, c)));
    return array<vec4<f32>, 4>(f[0] + load_x(xr.x + c) * wq, f[1] + load_x(xr.y + c) * wq, f[2] + load_x(xr.z + c) * wq, f[3] + load_x(xr.w + c) * wq);
}
