// GEMV with several weight rows per invocation and no cooperation: no workgroup memory, no
// barriers, no reductions. Each invocation owns THREAD_ROWS consecutive weight rows and walks k
// one packed word (four int8) at a time for all activation rows of the pass, reusing each
// activation load for its rows. Where a workgroup's invocations do not run in lockstep (CPU
// adapters such as lavapipe run them as loops), this beats the cooperative kernels; which one
// a device gets is decided in src/gpu/matmul.rs.
// Needs k % 4 == 0 and scale segments of whole words (inner % 4 == 0, or one scale per row or
// tensor); THREAD_ROWS, GEMV_WG and MAX_M come from the host's prelude.

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
