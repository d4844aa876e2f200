// The simple quantizer (benches only): the yardstick of the library's GPU quantization
// (quantize.wgsl) and of W8A8's per-token activation quantizer (act_quant.wgsl), which do the
// same job per row; not a contender. One invocation per row: absmax over the row, the scale,
// then the row's ints packed four to a word; no workgroup memory, no reductions. The library's
// numeric helpers from common.wgsl (flush_subnormal, symmetric_scale, quantize_value) give its
// ints and scale bits. Unlike the library it does not look for non-finite inputs or range
// overflow. The host prepends the dtype codes and common.wgsl.

struct SimpleQuantizeParams {
    m: u32,   // rows
    k: u32,   // columns
    wpr: u32, // u32 words per packed row (k / 4 rounded up)
    _pad: u32,
}

const SIMPLE_WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> p: SimpleQuantizeParams;
@group(0) @binding(1) var<storage, read_write> out: array<atomic<u32>>;
@group(0) @binding(2) var<storage, read> x: array<u32>;
@group(0) @binding(3) var<storage, read_write> scales: array<f32>;

fn x_at(i: u32) -> f32 {
    return decode(x[word_index(i, IN_DT)], i, IN_DT);
}

@compute @workgroup_size(SIMPLE_WG)
fn simple_quantize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.y * nwg.x * SIMPLE_WG + gid.x;
    if r >= p.m {
        return;
    }
    let e0 = r * p.k;
    var absmax = 0.0;
    for (var c = 0u; c < p.k; c++) {
        absmax = max(absmax, abs(flush_subnormal(x_at(e0 + c))));
    }
    let s = symmetric_scale(absmax);
    scales[r] = s;
    for (var w = 0u; w < p.wpr; w++) {
        var word = 0u;
        for (var j = 0u; j < 4u; j++) {
            let c = 4u * w + j;
            if c < p.k {
                word |= (bitcast<u32>(quantize_value(x_at(e0 + c), s, 0)) & 0xffu) << (8u * j);
            }
        }
        atomicStore(&out[r * p.wpr + w], word);
    }
}
