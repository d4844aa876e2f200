// Int8 activations (W8A8, LLM.int8()): which columns are outliers, their ordered list, and each
// row's int8 values and scale. The CPU twin is src/reference/activations.rs; every result must
// equal it bit for bit (ints, scale bits, outlier set). Three passes: act_flags_main and
// act_list_main run only for LLM.int8(); act_quant_main always.

// Per-thread partial results of a workgroup scan or reduction.
var<workgroup> part: array<u32, WG>;

fn load_act(e: u32) -> f32 {
    return decode(x[word_index(e, IN_DT)], e, IN_DT);
}

// |v| >= threshold, compared on the bits: for non-negative floats the bit order is the value
// order, so no flush-to-zero mode of the device can move a subnormal across the threshold.
fn is_outlier(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) >= p.threshold;
}

fn column_is_outlier(c: u32) -> bool {
    return p.has_threshold != 0u && act[meta_flag(c)] != 0u;
}

// One invocation per column: whether any row of the batch has |x| >= threshold there.
@compute @workgroup_size(WG)
fn act_flags_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = gid.y * nwg.x * WG + gid.x;
    if c >= p.k {
        return;
    }
    var hit = 0u;
    for (var m = 0u; m < p.m; m++) {
        if is_outlier(load_act(m * p.k + c)) {
            hit = 1u;
            break;
        }
    }
    act[meta_flag(c)] = hit;
}

// One workgroup: the flagged columns in increasing order, by a prefix sum over per-thread
// counts (each thread owns a contiguous run of columns), so the order never depends on which
// invocation ran first, as an atomic append's would.
@compute @workgroup_size(WG)
fn act_list_main(@builtin(local_invocation_index) t: u32) {
    let run = (p.k + WG - 1u) / WG;
    let c0 = min(t * run, p.k);
    let c1 = min(c0 + run, p.k);
    var n = 0u;
    for (var c = c0; c < c1; c++) {
        n += act[meta_flag(c)];
    }
    // Inclusive scan of the counts (Hillis-Steele: log2(WG) steps).
    part[t] = n;
    workgroupBarrier();
    for (var d = 1u; d < WG; d <<= 1u) {
        var v = part[t];
        if t >= d {
            v += part[t - d];
        }
        workgroupBarrier();
        part[t] = v;
        workgroupBarrier();
    }
    var at = META_LIST + part[t] - n;
    for (var c = c0; c < c1; c++) {
        if act[meta_flag(c)] != 0u {
            act[at] = c;
            at++;
        }
    }
    if t == WG - 1u {
        act[META_COUNT] = part[t];
    }
}

// One workgroup per row: absmax over the row's int8 columns, the scale, the packed int8 values.
@compute @workgroup_size(WG)
fn act_quant_main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let row = flat_group(wid, nwg);
    if row >= p.m {
        return;
    }
    let base = row * p.k;
    // |x| with subnormals flushed, as bits: non-negative floats order like their bits, so the
    // maximum is exact whatever the device's float min/max do with signed zeros.
    var mx = 0u;
    for (var c = t; c < p.k; c += WG) {
        if !column_is_outlier(c) {
            mx = max(mx, bitcast<u32>(flush_subnormal(load_act(base + c))) & 0x7fffffffu);
        }
    }
    part[t] = mx;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if t < s {
            part[t] = max(part[t], part[t + s]);
        }
        workgroupBarrier();
    }
    let scale = symmetric_scale(bitcast<f32>(part[0]));
    if t == 0u {
        act[meta_scale(row)] = bitcast<u32>(scale);
    }
    // Four int8 per word, byte j = column 4w + j; outlier columns and the row's padding are 0.
    for (var w = t; w < p.words_per_row; w += WG) {
        var word = 0u;
        for (var j = 0u; j < 4u; j++) {
            let c = 4u * w + j;
            if c < p.k && !column_is_outlier(c) {
                let q = quantize_value(load_act(base + c), scale, 0);
                word |= (bitcast<u32>(q) & 0xffu) << (8u * j);
            }
        }
        atomicStore(&out[row * p.words_per_row + w], word);
    }
}

// act_quant_main with one invocation per row and no workgroup cooperation (the same arithmetic
// in the same order per value, so the same bits): CPU adapters run a workgroup's barriers and
// tree reduction as loops over its lanes, which cost 2-5x a sequential pass over the row at 8-512
// rows on lavapipe (BENCHMARKS.md; the choice is in src/gpu/linear/heuristic.rs).
@compute @workgroup_size(WG)
fn act_quant_rows_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = gid.y * nwg.x * WG + gid.x;
    // Parameters are read once: llvmpipe loads a storage-buffer field lane by lane at every use.
    let k = p.k;
    let wpr = p.words_per_row;
    let outliers = p.has_threshold != 0u;
    if row >= p.m {
        return;
    }
    let base = row * k;
    var mx = 0u;
    for (var c = 0u; c < k; c++) {
        if !(outliers && act[META_LIST + k + c] != 0u) {
            mx = max(mx, bitcast<u32>(flush_subnormal(load_act(base + c))) & 0x7fffffffu);
        }
    }
    let scale = symmetric_scale(bitcast<f32>(mx));
    act[meta_scale(row)] = bitcast<u32>(scale);
    for (var w = 0u; w < wpr; w++) {
        var word = 0u;
        for (var j = 0u; j < 4u; j++) {
            let c = 4u * w + j;
            if c < k && !(outliers && act[META_LIST + k + c] != 0u) {
                let q = quantize_value(load_act(base + c), scale, 0);
                word |= (bitcast<u32>(q) & 0xffu) << (8u * j);
            }
        }
        atomicStore(&out[row * wpr + w], word);
    }
}
