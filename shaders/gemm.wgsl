// Fused int8-dequant GEMM for many activation rows: 32x32 output tiles, 64 threads of 4x4,
// k in steps of 16. Weights are dequantized (s * (q - z)) while staged into workgroup memory,
// so no pass ever holds the float weight matrix.

const TM: u32 = 32u;
const TN: u32 = 32u;
const TK: u32 = 16u;

var<workgroup> xt: array<f32, 512>; // [TM][TK]
var<workgroup> wt: array<f32, 512>; // [TN][TK]

@compute @workgroup_size(64)
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
    let tx = t % 8u;
    let ty = t / 8u;
    var acc: array<f32, 16>;
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        for (var i = t; i < TM * TK; i += 64u) {
            let row = i / TK;
            let k = k0 + i % TK;
            var xv = 0.0;
            let m = m0 + row;
            if m < p.m && k < p.k {
                xv = load_x(m * p.k + k);
            }
            xt[i] = xv;
            var wv = 0.0;
            let lr = r0 + row;
            if lr < p.rows && k < p.k {
                let pi = param_of((p.row0 + lr) * p.k + k, p.inner, p.channels);
                wv = scales[pi] * f32(weight_q(lr, k) - zps[pi]);
            }
            wt[i] = wv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            var wv: array<f32, 4>;
            for (var b = 0u; b < 4u; b++) {
                wv[b] = wt[(tx * 4u + b) * TK + kk];
            }
            for (var a = 0u; a < 4u; a++) {
                let xa = xt[(ty * 4u + a) * TK + kk];
                for (var b = 0u; b < 4u; b++) {
                    acc[a * 4u + b] += xa * wv[b];
                }
            }
        }
        workgroupBarrier();
    }
    for (var a = 0u; a < 4u; a++) {
        let m = m0 + ty * 4u + a;
        for (var b = 0u; b < 4u; b++) {
            let lr = r0 + tx * 4u + b;
            if m < p.m && lr < p.rows {
                store_y(m, lr, acc[a * 4u + b]);
            }
        }
    }
}
