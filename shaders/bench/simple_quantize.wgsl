// The simple quantizer (benches only): the yardstick the library's three-pass GPU quantization
// (quantize.wgsl: stats, finalize, quantize) is timed against, not a contender. One invocation
// per weight row: absmax over the row, the scale, then the row's ints packed four to a word; no
// workgroup memory, no atomics but the stores. Symmetric per output channel, f32 input, with the
// library's numeric helpers from common.wgsl (flush_subnormal, symmetric_scale, quantize_value),
// so it gives the library's ints and scale bits. Unlike the library it does not look for
// non-finite inputs or range overflow (the library's flags).
// The host prepends the dtype codes and common.wgsl.

struct SimpleQuantizeParams {
    rows: u32,
    cols: u32,
    wpr: u32, // u32 words per packed row (cols / 4 rounded up)
    _pad: u32,
}

const SIMPLE_WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> p: SimpleQuantizeParams;
@group(0) @binding(1) var<storage, read_write> out: array<atomic<u32>>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> scales: array<f32>;

@compute @workgroup_size(SIMPLE_WG)
fn simple_quantize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.y * nwg.x * SIMPLE_WG + gid.x;
    if r >= p.rows {
        return;
    }
    let e0 = r * p.cols;
    var absmax = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        absmax = max(absmax, abs(flush_subnormal(x[e0 + c])));
    }
    let s = symmetric_scale(absmax);
    scales[r] = s;
    for (var w = 0u; w < p.wpr; w++) {
        var word = 0u;
        for (var j = 0u; j < 4u; j++) {
            let c = 4u * w + j;
            if c < p.cols {
                word |= (bitcast<u32>(quantize_value(x[e0 + c], s, 0)) & 0xffu) << (8u * j);
            }
        }
        atomicStore(&out[r * p.wpr + w], word);
    }
}
