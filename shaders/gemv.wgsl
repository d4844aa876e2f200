// Fused int8-dequant GEMV for few activation rows (m <= MAX_M): all rows in one pass, so the
// weights are read once. A workgroup owns ROWS weight rows; its threads split k into chunks,
// each chunk cut at scale boundaries so every segment is scaled once (the factored formula).

const WG: u32 = 64u;
const ROWS: u32 = 2u;
// Loops over activation rows run to this constant and break at p.m, so private arrays are
// indexed by constants after unrolling and stay in registers (a dynamic index would put them
// in local memory on GPUs, and makes llvmpipe's GL compiler take minutes).
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
                // explicit initialisers: fresh zeros for every segment
                var dot = array<f32, 8>();
                var xs = array<f32, 8>();
                for (var kk = k; kk < end; kk++) {
                    let q = f32(weight_q(lr, kk));
                    for (var m = 0u; m < MAX_M; m++) {
                        if m >= p.m {
                            break;
                        }
                        let xv = load_x(m * p.k + kk);
                        dot[m] += xv * q;
                        xs[m] += xv;
                    }
                }
                let pi = seg % p.channels;
                let s = scales[pi];
                let z = f32(zps[pi]);
                for (var m = 0u; m < MAX_M; m++) {
                    if m >= p.m {
                        break;
                    }
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

// ---------------------------------------------------------------------------------------------
// Fast path: k a multiple of 16 and scale segments that are whole 16-element units. Each weight
// row is read by TPR neighbouring threads as 16-byte units (coalesced), all activation rows in
// the same pass, then reduced across the TPR lanes: with subgroup operations where the device
// has them (lines marked `//+sg`, enabled by the host's generator), else in workgroup memory.

const FAST_WG: u32 = 256u;
const TPR: u32 = 32u; // threads per weight row; the host uses subgroups only if their size divides it

// Set when scale segments are shorter than a row (per group): each unit is scaled on its own.
override GROUPED: bool = false;
// Set for asymmetric schemes: only then is Σx needed for the zero-point term.
override ASYM: bool = true;

var<workgroup> fred: array<f32, 2048>; // FAST_WG * MAX_M

fn unpack_i8x4(w: u32) -> vec4<f32> {
    return vec4<f32>((vec4<i32>(bitcast<i32>(w)) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
}

// Four activations from element i (a multiple of 4).
fn load_x4(i: u32) -> vec4<f32> {
    if IN_DT == DT_F32 {
        return bitcast<vec4<f32>>(vec4<u32>(x[i], x[i + 1u], x[i + 2u], x[i + 3u]));
    }
    let a = x[i >> 1u];
    let b = x[(i >> 1u) + 1u];
    if IN_DT == DT_BF16 {
        return vec4<f32>(bitcast<f32>(a << 16u), bitcast<f32>(a & 0xffff0000u), bitcast<f32>(b << 16u), bitcast<f32>(b & 0xffff0000u));
    }
    return vec4<f32>(f16_bits_to_f32(a & 0xffffu), f16_bits_to_f32(a >> 16u), f16_bits_to_f32(b & 0xffffu), f16_bits_to_f32(b >> 16u));
}

// Sums acc over the TPR lanes of each row and writes the row's outputs (lane 0).
fn finish_rows(
    acc: array<f32, 8>,
    t: u32,
    lr: u32,
//+sg    sg_size: u32,
//+sg    sg_lane: u32,
) {
    let lane = t % TPR;
    for (var m = 0u; m < MAX_M; m++) {
        if m >= p.m {
            break;
        }
        fred[m * FAST_WG + t] = acc[m]; // -sg
//+sg        let v = subgroupAdd(acc[m]);
//+sg        if sg_lane == 0u {
//+sg            fred[m * FAST_WG + t / sg_size] = v;
//+sg        }
    }
    workgroupBarrier();
    for (var s = TPR / 2u; s > 0u; s >>= 1u) { // -sg
        if lane < s { // -sg
            for (var m = 0u; m < MAX_M; m++) { // -sg
                if m >= p.m { // -sg
                    break; // -sg
                } // -sg
                fred[m * FAST_WG + t] += fred[m * FAST_WG + t + s]; // -sg
            } // -sg
        } // -sg
        workgroupBarrier(); // -sg
    } // -sg
    if lane == 0u && lr < p.rows {
        for (var m = 0u; m < MAX_M; m++) {
            if m >= p.m {
                break;
            }
            var v = fred[m * FAST_WG + t]; // -sg
//+sg            var v = 0.0;
//+sg            for (var j = 0u; j < TPR / sg_size; j++) {
//+sg                v += fred[m * FAST_WG + t / sg_size + j];
//+sg            }
            store_y(m, lr, v);
        }
    }
}

@compute @workgroup_size(256)
fn gemv_fast_main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
//+sg    @builtin(subgroup_size) sg_size: u32,
//+sg    @builtin(subgroup_invocation_id) sg_lane: u32,
) {
    let lr = flat_group(wid, nwg) * (FAST_WG / TPR) + t / TPR;
    var acc: array<f32, 8>;
    if lr < p.rows {
        let n = p.row0 + lr;
        var dsum: array<f32, 8>;
        var xsum: array<f32, 8>;
        let base = lr * p.words_per_row;
        for (var u = t % TPR; u < p.k / 16u; u += TPR) {
            let w = base + u * 4u;
            let q0 = unpack_i8x4(weights[w] ^ p.xor_mask);
            let q1 = unpack_i8x4(weights[w + 1u] ^ p.xor_mask);
            let q2 = unpack_i8x4(weights[w + 2u] ^ p.xor_mask);
            let q3 = unpack_i8x4(weights[w + 3u] ^ p.xor_mask);
            var s = 1.0;
            var z = 0.0;
            if GROUPED {
                let pi = param_of(n * p.k + u * 16u, p.inner, p.channels);
                s = scales[pi];
                z = f32(zps[pi]);
            }
            for (var m = 0u; m < MAX_M; m++) {
                if m >= p.m {
                    break;
                }
                let xi = m * p.k + u * 16u;
                let x0 = load_x4(xi);
                let x1 = load_x4(xi + 4u);
                let x2 = load_x4(xi + 8u);
                let x3 = load_x4(xi + 12u);
                let d = dot(x0, q0) + dot(x1, q1) + dot(x2, q2) + dot(x3, q3);
                var xs = 0.0;
                if ASYM {
                    xs = dot((x0 + x1) + (x2 + x3), vec4<f32>(1.0));
                }
                if GROUPED {
                    acc[m] += s * (d - z * xs);
                } else {
                    dsum[m] += d;
                    xsum[m] += xs;
                }
            }
        }
        if !GROUPED {
            let pi = param_of(n * p.k, p.inner, p.channels);
            let s = scales[pi];
            let z = f32(zps[pi]);
            for (var m = 0u; m < MAX_M; m++) {
                if m >= p.m {
                    break;
                }
                acc[m] = s * (dsum[m] - z * xsum[m]);
            }
        }
    }
    finish_rows(acc, t, lr,
//+sg        sg_size, sg_lane,
    );
}

// The no-quantization baseline of the same design: f32 weights (`weights` holds f32 bits,
// words_per_row = k), for the benches' dense comparison.
@compute @workgroup_size(256)
fn gemv_dense_main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
//+sg    @builtin(subgroup_size) sg_size: u32,
//+sg    @builtin(subgroup_invocation_id) sg_lane: u32,
) {
    let lr = flat_group(wid, nwg) * (FAST_WG / TPR) + t / TPR;
    var acc: array<f32, 8>;
    if lr < p.rows {
        let base = lr * p.words_per_row;
        for (var u = t % TPR; u < p.k / 4u; u += TPR) {
            let w = base + u * 4u;
            let wv = bitcast<vec4<f32>>(vec4<u32>(weights[w], weights[w + 1u], weights[w + 2u], weights[w + 3u]));
            for (var m = 0u; m < MAX_M; m++) {
                if m >= p.m {
                    break;
                }
                acc[m] += dot(load_x4(m * p.k + u * 4u), wv);
            }
        }
    }
    finish_rows(acc, t, lr,
//+sg        sg_size, sg_lane,
    );
}
