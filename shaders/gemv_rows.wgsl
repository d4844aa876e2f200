// GEMV with several weight rows per invocation and no cooperation: no workgroup memory, no
// barriers, no reductions. Each invocation owns THREAD_ROWS consecutive weight rows and walks k
// one packed word (four int8) at a time for all activation rows of the pass, reusing each
// activation load for its rows. Where a workgroup's invocations do not run in lockstep (CPU
// adapters such as lavapipe run them as loops), this beats the cooperative kernels; which one
// a device gets is decided in src/gpu/linear/.
// Needs k % 4 == 0 and scale segments of whole words (inner % 4 == 0, or one scale per row or
// tensor); THREAD_ROWS, GEMV_WG, WIDE_WG, WIDE_ROWS and MAX_M come from the host's prelude.

// Set for asymmetric schemes: only then is Σx needed for the zero-point term.
override ASYM: bool = true;

// Elements i .. i + 4 of this pass's activation rows (i % 4 == 0).
fn load_x4(i: u32) -> vec4<f32> {
    let e = p.m0 * p.k + i;
    if IN_DT == DT_F32 {
        return vec4<f32>(bitcast<f32>(x[e]), bitcast<f32>(x[e + 1u]), bitcast<f32>(x[e + 2u]), bitcast<f32>(x[e + 3u]));
    }
    return halves4(x[e / 2u], x[e / 2u + 1u]);
}

@compute @workgroup_size(GEMV_WG)
fn gemv_rows_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r0 = (gid.y * nwg.x * GEMV_WG + gid.x) * THREAD_ROWS;
    if r0 >= p.rows {
        return;
    }
    var acc: array<f32, THREAD_ROWS * MAX_M>;
    var d: array<f32, THREAD_ROWS * MAX_M>;
    var xs: array<f32, MAX_M>;
    let words = p.k / 4u;
    let seg_words = min(p.inner, p.k) / 4u;
    for (var w = 0u; w < words; w++) {
        var q: array<vec4<f32>, THREAD_ROWS>;
        for (var r = 0u; r < THREAD_ROWS; r++) {
            // rows past the end repeat the last one; their sums are never stored
            let lr = min(r0 + r, p.rows - 1u);
            q[r] = unpack_i8x4(weights[lr * p.words_per_row + w] ^ p.xor_mask);
        }
        for (var m = 0u; m < MAX_M; m++) {
            if m >= p.m {
                break;
            }
            let xv = load_x4(m * p.k + 4u * w);
            if ASYM {
                xs[m] += (xv.x + xv.y) + (xv.z + xv.w);
            }
            for (var r = 0u; r < THREAD_ROWS; r++) {
                d[r * MAX_M + m] += dot(xv, q[r]);
            }
        }
        if (w + 1u) % seg_words == 0u {
            // The end of a scale segment: scale its sums once (the factored formula).
            for (var r = 0u; r < THREAD_ROWS; r++) {
                let n = p.row0 + min(r0 + r, p.rows - 1u);
                let pi = param_of(n * p.k + 4u * w, p.inner, p.channels);
                let s = scales[pi];
                let z = f32(zps[pi]);
                for (var m = 0u; m < MAX_M; m++) {
                    acc[r * MAX_M + m] += s * (d[r * MAX_M + m] - z * xs[m]);
                    d[r * MAX_M + m] = 0.0;
                }
            }
            for (var m = 0u; m < MAX_M; m++) {
                xs[m] = 0.0;
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
            store_y(m, r0 + r, acc[r * MAX_M + m]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The same design, a 16-byte unit (16 int8) per row per step: k % 16 == 0 and scale segments of
// whole units. Each step loads one vec4<u32> of each of the THREAD_ROWS rows and sixteen
// activations per activation row. On lavapipe this is what bounds the row GEMV: every step of
// gemv_rows_main spends a u32 load per row, four scalar activation loads and the segment test
// (an integer modulo, which llvmpipe's SIMD runs lane by lane) on four products per row; here the
// same overhead serves sixteen, and segments are walked as loop bounds rather than tested per
// step. One activation row (decode) takes a loop of its own, whose accumulators stay in vector
// registers. x4 and weights4 are the prelude's 16-byte views; load_x16 and dot16 are in
// gemv_units.wgsl.

// The 16 weights of unit u of the row whose first 16-byte slot is `row`, as floats.
fn row_unit(row: u32, u: u32) -> array<vec4<f32>, 4> {
    let w = weights4[row + u] ^ vec4<u32>(p.xor_mask);
    return array<vec4<f32>, 4>(unpack_i8x4(w.x), unpack_i8x4(w.y), unpack_i8x4(w.z), unpack_i8x4(w.w));
}

@compute @workgroup_size(GEMV_WG)
fn gemv_rows16_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r0 = (gid.y * nwg.x * GEMV_WG + gid.x) * THREAD_ROWS;
    if r0 >= p.rows {
        return;
    }
    let b = row_bases(r0);
    let units = p.k / 16u;
    let seg_units = min(p.inner, p.k) / 16u;
    // [m]: the sums of the four rows for activation row m
    var acc: array<vec4<f32>, MAX_M>;
    for (var u0 = 0u; u0 < units; u0 += seg_units) {
        let u1 = u0 + seg_units;
        var d = array<vec4<f32>, MAX_M>();
        var xs = array<f32, MAX_M>();
        if p.m == 1u {
            var d0 = vec4<f32>(0.0);
            var s0 = 0.0;
            for (var u = u0; u < u1; u++) {
                let xv = load_x16(16u * u);
                if ASYM {
                    s0 += dot((xv[0] + xv[1]) + (xv[2] + xv[3]), vec4<f32>(1.0));
                }
                d0 += vec4<f32>(dot16(xv, row_unit(b.x, u)), dot16(xv, row_unit(b.y, u)), dot16(xv, row_unit(b.z, u)), dot16(xv, row_unit(b.w, u)));
            }
            d[0] = d0;
            xs[0] = s0;
        } else {
            for (var u = u0; u < u1; u++) {
                let w0 = row_unit(b.x, u);
                let w1 = row_unit(b.y, u);
                let w2 = row_unit(b.z, u);
                let w3 = row_unit(b.w, u);
                for (var m = 0u; m < MAX_M; m++) {
                    if m >= p.m {
                        break;
                    }
                    let xv = load_x16(m * p.k + 16u * u);
                    if ASYM {
                        xs[m] += dot((xv[0] + xv[1]) + (xv[2] + xv[3]), vec4<f32>(1.0));
                    }
                    d[m] += vec4<f32>(dot16(xv, w0), dot16(xv, w1), dot16(xv, w2), dot16(xv, w3));
                }
            }
        }
        // The end of a scale segment: scale its sums once (the factored formula).
        let sz = seg_params(r0, u0);
        let s = sz[0];
        let z = sz[1];
        for (var m = 0u; m < MAX_M; m++) {
            if m >= p.m {
                break;
            }
            acc[m] += s * (d[m] - z * xs[m]);
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
            store_y(m, r0 + r, acc[m][r]);
        }
    }
}

// Scales and zero points of the four rows starting at row r of the block, for the segment that
// holds unit u0 (rows past the end repeat the last one).
fn seg_params(r: u32, u0: u32) -> array<vec4<f32>, 2> {
    var s: vec4<f32>;
    var z: vec4<f32>;
    for (var i = 0u; i < 4u; i++) {
        let pi = param_of((p.row0 + min(r + i, p.rows - 1u)) * p.k + 16u * u0, p.inner, p.channels);
        s[i] = scales[pi];
        z[i] = f32(zps[pi]);
    }
    return array<vec4<f32>, 2>(s, z);
}

// gemv_rows16_main for a single activation row with eight weight rows per invocation (the host
// runs it where the pass has one row): on lavapipe every storage load runs lane by lane, even
// when all lanes read the same activation, so four rows per invocation load as many activations
// as weights; eight halve that (a harness measured 8 rows 1.17-1.48x faster than 4, and 16 no
// better than 8). BENCHMARKS.md has the library's figures.
@compute @workgroup_size(GEMV_WG)
fn gemv_rows16_one_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r0 = (gid.y * nwg.x * GEMV_WG + gid.x) * 8u;
    if r0 >= p.rows {
        return;
    }
    let bl = row_bases(r0);
    let bh = row_bases(r0 + 4u);
    let units = p.k / 16u;
    let seg_units = min(p.inner, p.k) / 16u;
    var lo = vec4<f32>(0.0);
    var hi = vec4<f32>(0.0);
    for (var u0 = 0u; u0 < units; u0 += seg_units) {
        let u1 = u0 + seg_units;
        var dlo = vec4<f32>(0.0);
        var dhi = vec4<f32>(0.0);
        var xs = 0.0;
        for (var u = u0; u < u1; u++) {
            let xv = load_x16(16u * u);
            if ASYM {
                xs += dot((xv[0] + xv[1]) + (xv[2] + xv[3]), vec4<f32>(1.0));
            }
            dlo += vec4<f32>(dot16(xv, row_unit(bl.x, u)), dot16(xv, row_unit(bl.y, u)), dot16(xv, row_unit(bl.z, u)), dot16(xv, row_unit(bl.w, u)));
            dhi += vec4<f32>(dot16(xv, row_unit(bh.x, u)), dot16(xv, row_unit(bh.y, u)), dot16(xv, row_unit(bh.z, u)), dot16(xv, row_unit(bh.w, u)));
        }
        // The end of a scale segment: scale its sums once (the factored formula).
        let plo = seg_params(r0, u0);
        let phi = seg_params(r0 + 4u, u0);
        lo += plo[0] * (dlo - plo[1] * xs);
        hi += phi[0] * (dhi - phi[1] * xs);
    }
    for (var r = 0u; r < 8u; r++) {
        if r0 + r >= p.rows {
            break;
        }
        store_y(0u, r0 + r, select(hi[r % 4u], lo[r % 4u], r < 4u));
    }
}

// ---------------------------------------------------------------------------------------------
// gemv_rows16_main for passes of several activation rows, sixteen weight rows per invocation
// (the host runs it where a pass has two or more rows). Each step turns one unit of each of the
// sixteen rows into floats once and reuses it for every activation row of the pass, so an
// activation load serves sixteen rows rather than four. Every accumulator is a named value
// indexed by constants only: llvmpipe keeps a private array indexed by a loop variable in
// memory, lane by lane, which cost more than the products. On lavapipe ([4096, 4096], 8 rows,
// f32, a harness timing the kernels interleaved) this ran 2.5x faster than four weight rows
// with arrays indexed per activation row; BENCHMARKS.md has the library's figures. Rows of
// the pass beyond p.m are skipped by uniform branches, never computed. Per row the operations
// and their order are gemv_rows16_main's, so both give the same bits.

// One 16-byte unit of each of sixteen weight rows, as floats: [row][quarter of the unit].
alias WideUnit = array<array<vec4<f32>, 4>, 16>;

// The sums of sixteen weight rows for one activation row (row 4i + j in [i][j]), with the sum
// of that row's activations over the segment (only for ASYM).
struct WideSums {
    d: array<vec4<f32>, 4>,
    xs: f32,
}

// Unit u of the rows at bases b (see row_bases), with the weights' xor mask xm applied.
fn wide_unit(b: array<vec4<u32>, 4>, u: u32, xm: vec4<u32>) -> WideUnit {
    return WideUnit(
        wide_row(b[0].x + u, xm), wide_row(b[0].y + u, xm), wide_row(b[0].z + u, xm), wide_row(b[0].w + u, xm),
        wide_row(b[1].x + u, xm), wide_row(b[1].y + u, xm), wide_row(b[1].z + u, xm), wide_row(b[1].w + u, xm),
        wide_row(b[2].x + u, xm), wide_row(b[2].y + u, xm), wide_row(b[2].z + u, xm), wide_row(b[2].w + u, xm),
        wide_row(b[3].x + u, xm), wide_row(b[3].y + u, xm), wide_row(b[3].z + u, xm), wide_row(b[3].w + u, xm));
}

// row_unit with the mask passed in: llvmpipe reloads a parameter from its storage buffer, lane
// by lane, at every use, so the hot loop takes nothing from p.
fn wide_row(slot: u32, xm: vec4<u32>) -> array<vec4<f32>, 4> {
    let w = weights4[slot] ^ xm;
    return array<vec4<f32>, 4>(unpack_i8x4(w.x), unpack_i8x4(w.y), unpack_i8x4(w.z), unpack_i8x4(w.w));
}

// a plus the sixteen activations from element e of the activation buffer times the sixteen
// rows' unit w.
fn wide_step(a: WideSums, e: u32, w: WideUnit) -> WideSums {
    let xv = load_x16_at(e);
    var r = a;
    if ASYM {
        r.xs += dot((xv[0] + xv[1]) + (xv[2] + xv[3]), vec4<f32>(1.0));
    }
    r.d[0] += vec4<f32>(dot16(xv, w[0]), dot16(xv, w[1]), dot16(xv, w[2]), dot16(xv, w[3]));
    r.d[1] += vec4<f32>(dot16(xv, w[4]), dot16(xv, w[5]), dot16(xv, w[6]), dot16(xv, w[7]));
    r.d[2] += vec4<f32>(dot16(xv, w[8]), dot16(xv, w[9]), dot16(xv, w[10]), dot16(xv, w[11]));
    r.d[3] += vec4<f32>(dot16(xv, w[12]), dot16(xv, w[13]), dot16(xv, w[14]), dot16(xv, w[15]));
    return r;
}

// acc plus a segment's sums scaled once (the factored formula), with the segment's scales and
// zero points of the four groups of four rows.
fn wide_scale(acc: array<vec4<f32>, 4>, a: WideSums, sz: array<array<vec4<f32>, 2>, 4>) -> array<vec4<f32>, 4> {
    return array<vec4<f32>, 4>(
        acc[0] + sz[0][0] * (a.d[0] - sz[0][1] * a.xs),
        acc[1] + sz[1][0] * (a.d[1] - sz[1][1] * a.xs),
        acc[2] + sz[2][0] * (a.d[2] - sz[2][1] * a.xs),
        acc[3] + sz[3][0] * (a.d[3] - sz[3][1] * a.xs));
}

fn wide_store(m: u32, r0: u32, acc: array<vec4<f32>, 4>) {
    for (var r = 0u; r < WIDE_ROWS; r++) {
        if r0 + r >= p.rows {
            break;
        }
        store_y(m, r0 + r, acc[r / 4u][r % 4u]);
    }
}

@compute @workgroup_size(WIDE_WG)
fn gemv_rows16_wide_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r0 = (gid.y * nwg.x * WIDE_WG + gid.x) * WIDE_ROWS;
    if r0 >= p.rows {
        return;
    }
    let b = wide_bases(r0);
    let k = p.k;
    let units = k / 16u;
    let seg_units = min(p.inner, k) / 16u;
    let xm = vec4<u32>(p.xor_mask);
    let rows = p.m;
    // Element 0 of the pass's first activation row.
    let x0 = p.m0 * k;
    var y0: array<vec4<f32>, 4>;
    var y1: array<vec4<f32>, 4>;
    var y2: array<vec4<f32>, 4>;
    var y3: array<vec4<f32>, 4>;
    var y4: array<vec4<f32>, 4>;
    var y5: array<vec4<f32>, 4>;
    var y6: array<vec4<f32>, 4>;
    var y7: array<vec4<f32>, 4>;
    for (var u0 = 0u; u0 < units; u0 += seg_units) {
        var a0 = WideSums();
        var a1 = WideSums();
        var a2 = WideSums();
        var a3 = WideSums();
        var a4 = WideSums();
        var a5 = WideSums();
        var a6 = WideSums();
        var a7 = WideSums();
        for (var u = u0; u < u0 + seg_units; u++) {
            let w = wide_unit(b, u, xm);
            let e = x0 + 16u * u;
            a0 = wide_step(a0, e, w);
            if rows > 1u { a1 = wide_step(a1, e + k, w); }
            if rows > 2u { a2 = wide_step(a2, e + 2u * k, w); }
            if rows > 3u { a3 = wide_step(a3, e + 3u * k, w); }
            if rows > 4u { a4 = wide_step(a4, e + 4u * k, w); }
            if rows > 5u { a5 = wide_step(a5, e + 5u * k, w); }
            if rows > 6u { a6 = wide_step(a6, e + 6u * k, w); }
            if rows > 7u { a7 = wide_step(a7, e + 7u * k, w); }
        }
        let sz = array<array<vec4<f32>, 2>, 4>(seg_params(r0, u0), seg_params(r0 + 4u, u0), seg_params(r0 + 8u, u0), seg_params(r0 + 12u, u0));
        y0 = wide_scale(y0, a0, sz);
        y1 = wide_scale(y1, a1, sz);
        y2 = wide_scale(y2, a2, sz);
        y3 = wide_scale(y3, a3, sz);
        y4 = wide_scale(y4, a4, sz);
        y5 = wide_scale(y5, a5, sz);
        y6 = wide_scale(y6, a6, sz);
        y7 = wide_scale(y7, a7, sz);
    }
    // Rows of the pass beyond p.m hold zeros and are not stored.
    let ys = array<array<vec4<f32>, 4>, 8>(y0, y1, y2, y3, y4, y5, y6, y7);
    for (var m = 0u; m < rows; m++) {
        wide_store(m, r0, ys[m]);
    }
}
