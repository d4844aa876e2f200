// Int8 activations times int8 weights (W8A8, LLM.int8()), after act_quant.wgsl:
// acc[m, n] = Σ_k q_x[m, k] q_w[n, k] in i32 over packed words, then
// y = ((s_x[m] · f32(acc)) · s_w[n] + Σ_{outlier c, ascending} x[m, c] · (s_w[n] · q_w[n, c])) + bias[n]
// in f32, rounded once to OUT_DT: the operation order of reference::linear_a8. Weights are
// symmetric with one scale per row or per tensor. q_x rows are zero-padded to whole words and
// zero in outlier columns, so padding bytes and outlier columns add nothing to acc (even
// offset-binary weights, whose zero padding reads as -128).
// Two entry points: a8_rows_main (GEMV, several weight rows per invocation, no barriers) and
// a8_gemm_main (64x64 tiles of packed words in workgroup memory, 4x4 outputs per thread).

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

@compute @workgroup_size(GEMV_WG)
fn a8_rows_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r0 = (gid.y * nwg.x * GEMV_WG + gid.x) * THREAD_ROWS;
    if r0 >= p.rows {
        return;
    }
    var acc: array<i32, THREAD_ROWS * MAX_M>;
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
                acc[r * MAX_M + m] += dot4(a, q[r]);
            }
        }
    }
    for (var r = 0u; r < THREAD_ROWS; r++) {
        if r0 + r >= p.rows {
            break;
        }
        for (var m = 0u; m < MAX_M; m++) {
            if m >= p.m {
                break;
            }
            store_a8(m, r0 + r, acc[r * MAX_M + m]);
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
        for (var kw = 0u; kw < TKW; kw++) {
            let xa = xq[kw * 16u + ty];
            let wb = wq[kw * 16u + tx];
            for (var i = 0u; i < 4u; i++) {
                acc[i] += vec4<i32>(dot4(xa[i], wb.x), dot4(xa[i], wb.y), dot4(xa[i], wb.z), dot4(xa[i], wb.w));
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let m = m0 + 4u * ty + i;
        for (var j = 0u; j < 4u; j++) {
            let lr = r0 + 4u * tx + j;
            if m < p.m && lr < p.rows {
                store_a8(m, lr, acc[i][j]);
            }
        }
    }
}
