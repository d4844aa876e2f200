// Fused int8-dequant GEMM for many activation rows: 64x64 output tiles, 256 threads of 4x4,
// k in steps of 16. Each thread stages one packed word (four int8) of the weight tile and
// dequantizes it (s * (q - z)) into workgroup memory, so no pass holds the float weight matrix.
// DENSE switches the weight tile to plain f32 weights: the no-quantization baseline.

// TM, TN, TK and WG come from the host's prelude (src/gpu/params.rs).

override DENSE: bool = false;

// Tiles are stored k-major in vec4s of four neighbouring rows, [TK][64 / 4]: in the inner loop a
// thread reads one vec4 of x and one of weights for 16 multiply-adds, and the 16 threads of a
// row of the thread grid read 16 consecutive vec4s (no bank conflicts; a row-major [64][TK]
// tile with a row stride of TK = 16 words would put 16 threads' reads on two banks).
var<workgroup> xt: array<vec4<f32>, TK * TM / 4u>; // xt[kk * 16 + i][j] = x row 4i + j, k0 + kk
var<workgroup> wt: array<vec4<f32>, TK * TN / 4u>; // wt[kk * 16 + i][j] = weight row 4i + j, k0 + kk

fn put_w(row: u32, kk: u32, v: f32) {
    wt[kk * 16u + row / 4u][row % 4u] = v;
}

fn stage_weights(t: u32, r0: u32, k0: u32) {
    if DENSE {
        for (var i = t; i < TN * TK; i += WG) {
            let r = i / TK;
            let k = k0 + i % TK;
            var wv = 0.0;
            if r0 + r < p.rows && k < p.k {
                wv = bitcast<f32>(weights[(r0 + r) * p.words_per_row + k]);
            }
            put_w(r, i % TK, wv);
        }
        return;
    }
    // One word per thread: row t / 4, elements 4 * (t % 4) .. + 4 of this k tile.
    let r = t / 4u;
    let lr = r0 + r;
    let kw = k0 + (t % 4u) * 4u;
    var wv = vec4<f32>(0.0);
    if lr < p.rows && kw < p.k {
        let word = weights[lr * p.words_per_row + (kw >> 2u)] ^ p.xor_mask;
        let e = (p.row0 + lr) * p.k + kw;
        if p.inner % 4u == 0u {
            // segments of a multiple of 4 are word-aligned: one scale for the word
            let pi = param_of(e, p.inner, p.channels);
            let s = scales[pi];
            let z = zps[pi];
            for (var j = 0u; j < 4u; j++) {
                if kw + j < p.k {
                    wv[j] = s * f32(byte_at(word, j) - z);
                }
            }
        } else {
            for (var j = 0u; j < 4u; j++) {
                if kw + j < p.k {
                    let pi = param_of(e + j, p.inner, p.channels);
                    wv[j] = scales[pi] * f32(byte_at(word, j) - zps[pi]);
                }
            }
        }
    }
    for (var j = 0u; j < 4u; j++) {
        put_w(r, (t % 4u) * 4u + j, wv[j]);
    }
}

@compute @workgroup_size(WG)
fn gemm_main(
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
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        // Neighbouring threads load neighbouring k of one activation row.
        for (var i = t; i < TM * TK; i += WG) {
            let m = i / TK;
            let k = k0 + i % TK;
            var xv = 0.0;
            if m0 + m < p.m && k < p.k {
                xv = load_x((m0 + m) * p.k + k);
            }
            xt[(i % TK) * 16u + m / 4u][m % 4u] = xv;
        }
        stage_weights(t, r0, k0);
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let xa = xt[kk * 16u + ty];
            let wb = wt[kk * 16u + tx];
            for (var a = 0u; a < 4u; a++) {
                acc[a] += xa[a] * wb;
            }
        }
        workgroupBarrier();
    }
    for (var a = 0u; a < 4u; a++) {
        let m = m0 + 4u * ty + a;
        for (var b = 0u; b < 4u; b++) {
            let lr = r0 + 4u * tx + b;
            if m < p.m && lr < p.rows {
                store_y(m, lr, acc[a][b]);
            }
        }
    }
}
