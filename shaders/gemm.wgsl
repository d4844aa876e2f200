// Fused int8-dequant GEMM for many activation rows: 64x64 output tiles, 256 threads of 4x4,
// k in steps of 16. Each thread stages one packed word (four int8) of the weight tile and
// dequantizes it (s * (q - z)) into workgroup memory, so no pass holds the float weight matrix.
// DENSE switches the weight tile to plain f32 weights: the no-quantization baseline.

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;

override DENSE: bool = false;

var<workgroup> xt: array<f32, 1024>; // [TM][TK]
var<workgroup> wt: array<f32, 1024>; // [TN][TK]

fn stage_weights(t: u32, r0: u32, k0: u32) {
    if DENSE {
        for (var i = t; i < TN * TK; i += 256u) {
            let lr = r0 + i / TK;
            let k = k0 + i % TK;
            var wv = 0.0;
            if lr < p.rows && k < p.k {
                wv = bitcast<f32>(weights[lr * p.words_per_row + k]);
            }
            wt[i] = wv;
        }
        return;
    }
    // One word per thread: row t / 4, elements 4 * (t % 4) .. + 4 of this k tile.
    let lr = r0 + t / 4u;
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
    let o = (t / 4u) * TK + (t % 4u) * 4u;
    wt[o] = wv.x;
    wt[o + 1u] = wv.y;
    wt[o + 2u] = wv.z;
    wt[o + 3u] = wv.w;
}

@compute @workgroup_size(256)
fn gemm_main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let tiles_n = (p.rows + TN - 1u) / TN;
    let unit = flat_group(wid, nwg);
    let m0 = (unit / tiles_n) * TM;
    let r0 = (unit % tiles_n) * TN;
    if m0 >= p.m {
        return;
    }
    let tx = t % 16u;
    let ty = t / 16u;
    var acc: array<f32, 16>;
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        for (var i = t; i < TM * TK; i += 256u) {
            let m = m0 + i / TK;
            let k = k0 + i % TK;
            var xv = 0.0;
            if m < p.m && k < p.k {
                xv = load_x(m * p.k + k);
            }
            xt[i] = xv;
        }
        stage_weights(t, r0, k0);
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            // rows and columns strided by 16 so neighbouring threads read neighbouring rows
            var wv: array<f32, 4>;
            for (var b = 0u; b < 4u; b++) {
                wv[b] = wt[(tx + 16u * b) * TK + kk];
            }
            for (var a = 0u; a < 4u; a++) {
                let xa = xt[(ty + 16u * a) * TK + kk];
                for (var b = 0u; b < 4u; b++) {
                    acc[a * 4u + b] += xa * wv[b];
                }
            }
        }
        workgroupBarrier();
    }
    for (var a = 0u; a < 4u; a++) {
        let m = m0 + ty + 16u * a;
        for (var b = 0u; b < 4u; b++) {
            let lr = r0 + tx + 16u * b;
            if m < p.m && lr < p.rows {
                store_y(m, lr, acc[a * 4u + b]);
            }
        }
    }
}
