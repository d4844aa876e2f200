// Fused int8-dequant GEMV for few activation rows (m <= MAX_M): all rows in one pass, so the
// weights are read once. A workgroup owns ROWS weight rows; its threads split k into chunks,
// each chunk cut at scale boundaries so every segment is scaled once (the factored formula).

// GEMV_WG, ROWS, MAX_M, FAST_WG, TPR and MAX_RPT come from the host's prelude
// (src/gpu/params.rs). Loops over activation rows run to MAX_M and break at p.m, so private
// arrays are indexed by constants after unrolling and stay in registers (a dynamic index would
// put them in local memory on GPUs, and makes llvmpipe's GL compiler take minutes).

var<workgroup> red: array<f32, ROWS * MAX_M * GEMV_WG>; // ROWS * MAX_M partial sums per thread

@compute @workgroup_size(GEMV_WG)
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
        for (var c = t; c < nchunks; c += GEMV_WG) {
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
        red[i * GEMV_WG + t] = acc[i];
    }
    workgroupBarrier();
    for (var s = GEMV_WG / 2u; s > 0u; s >>= 1u) {
        if t < s {
            for (var i = 0u; i < ROWS * MAX_M; i++) {
                red[i * GEMV_WG + t] += red[i * GEMV_WG + t + s];
            }
        }
        workgroupBarrier();
    }
    if t < ROWS * p.m {
        let r = t / p.m;
        let m = t % p.m;
        if r0 + r < p.rows {
            store_y(m, r0 + r, red[(r * MAX_M + m) * GEMV_WG]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fast path: k a multiple of 16 and scale segments that are whole 16-element units. A lane group
// of TPR neighbouring threads owns RPT consecutive weight rows and reads each as 16-byte units
// (coalesced), all activation rows in the same pass. Each unit of x is loaded once and used for
// all RPT rows: at MAX_M rows of f32 activations the GEMV reads 32 bytes of x per weight byte
// from cache, so reusing x across rows is what keeps it on the weight read, not the cache. The
// lanes' sums are reduced with subgroup operations where the device has them
// (gemv_reduce_sg.wgsl), else in workgroup memory (gemv_reduce_wg.wgsl): the host appends one.
// DENSE switches the weights to plain f32 (four 16-byte loads per unit): the no-quantization
// baseline of the same design.

// TPR: threads per lane group; the host uses subgroups only if their size divides it.
const GROUPS: u32 = FAST_WG / TPR;
const UPS: u32 = 2u; // units per lane per step
const MIN_SG: u32 = 4u; // wgpu's smallest subgroup size: at most TPR / MIN_SG subgroups per group

// Weight rows per lane group: 1, 2 or 4, chosen by the host (src/gpu/linear/heuristic.rs).
override RPT: u32 = 1u;
// Set when scale segments are shorter than a row (per group): each unit is scaled on its own.
override GROUPED: bool = false;
// Set for asymmetric schemes: only then is Σx needed for the zero-point term.
override ASYM: bool = true;
override DENSE: bool = false;

// x4 and weights4 (prelude): 16-byte views of the activation and weight bindings, used only by
// gemv_fast_main; load_x16 and dot16 are in gemv_units.wgsl, shared with gemv_rows.wgsl.

// Partial sums: subgroup path [GROUPS][MAX_RPT][MAX_M][TPR / MIN_SG]; fallback [MAX_M][FAST_WG].
var<workgroup> fred: array<f32, max(GROUPS * MAX_RPT * MAX_M * (TPR / MIN_SG), MAX_M * FAST_WG)>;

// The packed int8 unit u of the local row whose first 16-byte slot is `row` (dense: unused).
fn load_w_unit(row: u32, u: u32) -> vec4<u32> {
    if DENSE {
        return vec4<u32>(0u);
    }
    return weights4[row + u] ^ vec4<u32>(p.xor_mask);
}

// Unit u (16 weights) as floats: the packed unit unpacked, or (dense) four f32 loads.
fn unpack_w16(w: vec4<u32>, row: u32, u: u32) -> array<vec4<f32>, 4> {
    if DENSE {
        let b = row + u * 4u;
        return array<vec4<f32>, 4>(bitcast<vec4<f32>>(weights4[b]), bitcast<vec4<f32>>(weights4[b + 1u]), bitcast<vec4<f32>>(weights4[b + 2u]), bitcast<vec4<f32>>(weights4[b + 3u]));
    }
    return array<vec4<f32>, 4>(unpack_i8x4(w.x), unpack_i8x4(w.y), unpack_i8x4(w.z), unpack_i8x4(w.w));
}

// The first weight row of thread t's lane group.
fn fast_row0(wid: vec3<u32>, nwg: vec3<u32>, t: u32) -> u32 {
    return (flat_group(wid, nwg) * GROUPS + t / TPR) * RPT;
}

// This lane's partial sums ([MAX_RPT][MAX_M]) of the lane group owning rows row0 .. row0 + RPT;
// gemv_fast_main (gemv_reduce_sg.wgsl or gemv_reduce_wg.wgsl) reduces them over the group.
fn fast_accumulate(row0: u32, t: u32) -> array<f32, MAX_RPT * MAX_M> {
    var acc: array<f32, MAX_RPT * MAX_M>; // [MAX_RPT][MAX_M]
    if row0 < p.rows {
        var dsum: array<f32, MAX_RPT * MAX_M>;
        var xsum: array<f32, 8>;
        // 16-byte slots per row: words_per_row is a multiple of 4 here
        let stride = p.words_per_row / 4u;
        let units = p.k / 16u;
        // UPS units per lane per step, all loaded before any is used: UPS times the bytes
        // in flight per lane, which a memory-bound kernel needs to cover DRAM latency.
        for (var u0 = t % TPR; u0 < units; u0 += UPS * TPR) {
            var wp: array<array<vec4<u32>, UPS>, MAX_RPT>;
            for (var r = 0u; r < RPT; r++) {
                // rows past the end repeat the last one; their sums are never stored
                let row = min(row0 + r, p.rows - 1u) * stride;
                wp[r][0] = load_w_unit(row, u0);
                wp[r][1] = load_w_unit(row, min(u0 + TPR, units - 1u));
            }
            for (var h = 0u; h < UPS; h++) {
                let u = u0 + h * TPR;
                if u >= units {
                    break;
                }
                var w: array<array<vec4<f32>, 4>, MAX_RPT>;
                var s: array<f32, MAX_RPT>;
                var z: array<f32, MAX_RPT>;
                for (var r = 0u; r < RPT; r++) {
                    w[r] = unpack_w16(wp[r][h], min(row0 + r, p.rows - 1u) * stride, u);
                    if GROUPED {
                        let pi = param_of((p.row0 + min(row0 + r, p.rows - 1u)) * p.k + u * 16u, p.inner, p.channels);
                        s[r] = scales[pi];
                        z[r] = f32(zps[pi]);
                    }
                }
                for (var m = 0u; m < MAX_M; m++) {
                    if m >= p.m {
                        break;
                    }
                    let xv = load_x16(m * p.k + u * 16u);
                    var xs = 0.0;
                    if ASYM {
                        xs = dot((xv[0] + xv[1]) + (xv[2] + xv[3]), vec4<f32>(1.0));
                    }
                    xsum[m] += xs;
                    for (var r = 0u; r < RPT; r++) {
                        let d = dot16(xv, w[r]);
                        if GROUPED {
                            acc[r * MAX_M + m] += s[r] * (d - z[r] * xs);
                        } else {
                            dsum[r * MAX_M + m] += d;
                        }
                    }
                }
            }
        }
        if !GROUPED {
            for (var r = 0u; r < RPT; r++) {
                var s = 1.0;
                var z = 0.0;
                if !DENSE {
                    let pi = param_of((p.row0 + min(row0 + r, p.rows - 1u)) * p.k, p.inner, p.channels);
                    s = scales[pi];
                    z = f32(zps[pi]);
                }
                for (var m = 0u; m < MAX_M; m++) {
                    acc[r * MAX_M + m] = s * (dsum[r * MAX_M + m] - z * xsum[m]);
                }
            }
        }
    }
    return acc;
}
