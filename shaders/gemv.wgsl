// Fused int8-dequant GEMV for few activation rows (m <= MAX_M): all rows in one pass, so the
// weights are read once. A workgroup owns ROWS weight rows; its threads split k into chunks,
// each chunk cut at scale boundaries so every segment is scaled once (the factored formula).

const WG: u32 = 64u;
const ROWS: u32 = 2u;
const MAX_M: u32 = 8u;

var<workgroup> red: array<f32, 1024>; // ROWS * MAX_M partial sums for each of WG threads

@compute @workgroup_size(64)
fn gemv_main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let r0 = flat_group(wid, nwg) * ROWS;
    if r0 >= p.rows {
        return;
    }
    var acc: array<f32, 16>;
    let nchunks = (p.k + p.chunk - 1u) / p.chunk;
    for (var r = 0u; r < ROWS; r++) {
        let lr = r0 + r;
        if lr >= p.rows {
            break;
        }
        let n = p.row0 + lr;
        for (var c = t; c < nchunks; c += WG) {
            let k1 = min(p.k, (c + 1u) * p.chunk);
            var k = c * p.chunk;
            while k < k1 {
                let seg = (n * p.k + k) / p.inner;
                let end = min(k1, (seg + 1u) * p.inner - n * p.k);
                var dot: array<f32, 8>;
                var xs: array<f32, 8>;
                for (var kk = k; kk < end; kk++) {
                    let q = f32(weight_q(lr, kk));
                    for (var m = 0u; m < p.m; m++) {
                        let xv = load_x(m * p.k + kk);
                        dot[m] += xv * q;
                        xs[m] += xv;
                    }
                }
                let pi = seg % p.channels;
                let s = scales[pi];
                let z = f32(zps[pi]);
                for (var m = 0u; m < p.m; m++) {
                    acc[r * MAX_M + m] += s * (dot[m] - z * xs[m]);
                }
                k = end;
            }
        }
    }
    for (var i = 0u; i < ROWS * MAX_M; i++) {
        red[i * WG + t] = acc[i];
    }
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if t < s {
            for (var i = 0u; i < ROWS * MAX_M; i++) {
                red[i * WG + t] += red[i * WG + t + s];
            }
        }
        workgroupBarrier();
    }
    if t < ROWS * p.m {
        let r = t / p.m;
        let m = t % p.m;
        if r0 + r < p.rows {
            store_y(m, r0 + r, red[(r * MAX_M + m) * WG]);
        }
    }
}
