// The subgroup reduction of the fast GEMV (appended to gemv.wgsl where the device has
// subgroup operations and every subgroup size it may use divides TPR).

// Sums acc ([MAX_RPT][MAX_M] per lane) over each group's TPR lanes and writes the outputs of
// rows row0 .. row0 + RPT.
fn finish_rows(
    acc: array<f32, MAX_RPT * MAX_M>,
    t: u32,
    row0: u32,
    sg_size: u32,
    sg_lane: u32,
) {
    let lane = t % TPR;
    let g = t / TPR;
    for (var r = 0u; r < RPT; r++) {
        for (var m = 0u; m < MAX_M; m++) {
            if m >= p.m {
                break;
            }
            let v = subgroupAdd(acc[r * MAX_M + m]);
            if sg_lane == 0u {
                fred[((g * MAX_RPT + r) * MAX_M + m) * (TPR / MIN_SG) + lane / sg_size] = v;
            }
        }
    }
    workgroupBarrier();
    // lane r * m + mi of each group finishes output (mi, row0 + r)
    let r = lane / p.m;
    let m = lane % p.m;
    if r < RPT && row0 + r < p.rows {
        var v = 0.0;
        for (var j = 0u; j < TPR / sg_size; j++) {
            v += fred[((g * MAX_RPT + r) * MAX_M + m) * (TPR / MIN_SG) + j];
        }
        store_y(m, row0 + r, v);
    }
}

@compute @workgroup_size(FAST_WG)
fn gemv_fast_main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
    @builtin(subgroup_size) sg_size: u32,
    @builtin(subgroup_invocation_id) sg_lane: u32,
) {
    let row0 = fast_row0(wid, nwg, t);
    finish_rows(fast_accumulate(row0, t), t, row0, sg_size, sg_lane);
}
