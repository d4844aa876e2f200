// The workgroup-memory reduction of the fast GEMV (appended to gemv.wgsl where subgroup
// operations are missing or their size does not divide TPR).

// Sums acc ([MAX_RPT][MAX_M] per lane) over each group's TPR lanes and writes the outputs of
// rows row0 .. row0 + RPT.
fn finish_rows(
    acc: array<f32, MAX_RPT * MAX_M>,
    t: u32,
    row0: u32,
) {
    let lane = t % TPR;
    let g = t / TPR;
    for (var r = 0u; r < RPT; r++) {
        for (var m = 0u; m < MAX_M; m++) {
            if m >= p.m {
                break;
            }
            fred[m * FAST_WG + t] = acc[r * MAX_M + m];
        }
        workgroupBarrier();
        for (var s = TPR / 2u; s > 0u; s >>= 1u) {
            if lane < s {
                for (var m = 0u; m < MAX_M; m++) {
                    if m >= p.m {
                        break;
                    }
                    fred[m * FAST_WG + t] += fred[m * FAST_WG + t + s];
                }
            }
            workgroupBarrier();
        }
        if lane < p.m && row0 + r < p.rows {
            store_y(lane, row0 + r, fred[lane * FAST_WG + g * TPR]);
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(FAST_WG)
fn gemv_fast_main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let row0 = fast_row0(wid, nwg, t);
    finish_rows(fast_accumulate(row0, t), t, row0);
}
