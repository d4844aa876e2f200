// Quantization in three passes over row blocks of a float tensor:
//   stats     min/max of each parameter's elements (order-independent atomics on ordered keys),
//             and the first non-finite element (flags[0] = max of ~index);
//   finalize  scale and zero point of each parameter (flags[1] = max of ~param when the scale
//             overflows or exceeds max_scale);
//   quantize  one packed word (four int8) per thread into `out`.

// Params (QuantizeParams in src/gpu/params.rs) and the bindings p, out, input, stats, flags,
// scales and zps come from the host's prelude.

fn load_input(e: u32) -> f32 {
    let i = e - p.elem0;
    return decode(input[word_index(i, IN_DT)], i, IN_DT);
}

// Order-preserving map of f32 onto u32 (for atomicMax); min is tracked as max of ~key.
fn order_key(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn from_key(k: u32) -> f32 {
    return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

// Lanes' maxima are merged in workgroup memory when the whole workgroup works on one parameter
// (per tensor, or long rows), so a per-tensor scale takes one global atomic per workgroup
// instead of one per lane on a single address.
var<workgroup> wg_hi: atomic<u32>;
var<workgroup> wg_lo: atomic<u32>;

@compute @workgroup_size(WG)
fn stats_main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) l: u32,
) {
    let t0 = flat_group(wid, nwg) * WG;
    let t = t0 + l;
    let total = p.num_params * p.runs_per_param;
    // Workgroup-uniform: every lane of this workgroup has work, all for one parameter.
    let pooled = t0 + 255u < total && t0 / p.runs_per_param == (t0 + 255u) / p.runs_per_param;
    if pooled {
        // Workgroup memory is not zero-initialised (see src/gpu/device.rs): clear it first.
        if l == 0u {
            atomicStore(&wg_hi, 0u);
            atomicStore(&wg_lo, 0u);
        }
        workgroupBarrier();
    }
    let param = t / p.runs_per_param;
    // 0 is below every finite value's key (and its complement's): "nothing seen".
    var hi = 0u;
    var lo_inv = 0u;
    if t < total {
        let k0 = (t % p.runs_per_param) * p.run;
        let k1 = min(k0 + p.run, p.elems_per_param);
        for (var k = k0; k < k1; k++) {
            let e = ((k / p.inner) * p.channels + param) * p.inner + k % p.inner;
            if e < p.elem0 {
                continue;
            }
            if e >= p.elem0 + p.elems {
                break;
            }
            let x = load_input(e);
            if is_non_finite(x) {
                atomicMax(&flags[0], ~e);
                continue;
            }
            let key = order_key(flush_subnormal(x));
            hi = max(hi, key);
            lo_inv = max(lo_inv, ~key);
        }
    }
    if pooled {
        atomicMax(&wg_hi, hi);
        atomicMax(&wg_lo, lo_inv);
        workgroupBarrier();
        if l == 0u {
            hi = atomicLoad(&wg_hi);
            lo_inv = atomicLoad(&wg_lo);
        } else {
            hi = 0u;
        }
    }
    if hi != 0u {
        atomicMax(&stats[2u * param], hi);
        atomicMax(&stats[2u * param + 1u], lo_inv);
    }
}

@compute @workgroup_size(WG)
fn finalize_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let param = gid.y * nwg.x * WG + gid.x;
    if param >= p.num_params {
        return;
    }
    let hi = from_key(atomicLoad(&stats[2u * param]));
    let lo = from_key(~atomicLoad(&stats[2u * param + 1u]));
    finish_param(param, hi, lo);
}

struct ScaleZp {
    scale: f32,
    zp: i32,
}

// The scale and zero point of `param` from its finite elements' max `hi` and min `lo`: stored,
// returned, and flagged (flags[1] = max of ~param) when the scale overflows or exceeds
// max_scale.
fn finish_param(param: u32, hi: f32, lo: f32) -> ScaleZp {
    var scale = symmetric_scale(max(hi, -lo));
    var zp = 0;
    if p.asym != 0u {
        // The range is widened to contain 0, so the zero point is representable.
        let lo0 = min(lo, 0.0);
        let s = div_rn(max(hi, 0.0) - lo0, 255.0);
        if is_non_finite(s) {
            atomicMax(&flags[1], ~param);
        } else if !is_tiny(s) {
            scale = s;
            let z = -128.0 - div_rn(lo0, s);
            if z < -128.0 {
                zp = -128;
            } else if z > 127.0 {
                zp = 127;
            } else {
                zp = i32(round(z));
            }
        }
    }
    // quantized::max_scale: f32::MAX / 128 symmetric, / 256 asymmetric; beyond it a dequantized
    // value could overflow.
    let max_scale = select(bitcast<f32>(0x7bffffffu), bitcast<f32>(0x7b7fffffu), p.asym != 0u);
    if scale > max_scale {
        atomicMax(&flags[1], ~param);
    }
    scales[param] = scale;
    zps[param] = zp;
    return ScaleZp(scale, zp);
}

@compute @workgroup_size(WG)
fn quantize_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = gid.y * nwg.x * WG + gid.x;
    if w >= p.rows * p.words_per_row {
        return;
    }
    let r = w / p.words_per_row;
    let c0 = (w % p.words_per_row) * 4u;
    var word = 0u;
    for (var j = 0u; j < 4u; j++) {
        let c = c0 + j;
        if c < p.cols {
            let e = (p.row0 + r) * p.cols + c;
            let pi = param_of(e, p.inner, p.channels);
            let q = quantize_value(load_input(e), scales[pi], zps[pi]);
            word |= (bitcast<u32>(q) & 0xffu) << (8u * j);
        }
    }
    atomicStore(&out[w], word);
}

// All three passes in one for parameters that are runs of `p.inner` consecutive elements within
// a row (per output channel, or groups of a multiple of 4): one invocation per parameter of this
// block finds its run's range (skipping and flagging non-finite values, as stats_main does), its
// scale (finish_param) and its packed ints. No atomics but the flags, no second and third
// dispatch: on CPU adapters, where stats_main's atomics run lane by lane, this is the faster
// form (src/gpu/quantize.rs has the figures); a GPU keeps the three passes' parallelism.
@compute @workgroup_size(WG)
fn quantize_runs_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // Parameters are read once: llvmpipe loads a storage-buffer field lane by lane at every use.
    let inner = p.inner;
    let cols = p.cols;
    let t = gid.y * nwg.x * WG + gid.x;
    if t >= p.elems / inner {
        return;
    }
    // Element i of this block's input is flat element elem0 + i.
    let i0 = t * inner;
    let e0 = p.elem0 + i0;
    // -f32::MAX and f32::MAX, not the infinities: Tint rejects a constant expression that
    // evaluates to an infinity. Equal for every run with a finite element; a run of none is
    // flagged non-finite above, and that error wins over its parameters.
    var hi = bitcast<f32>(0xff7fffffu);
    var lo = bitcast<f32>(0x7f7fffffu);
    for (var i = i0; i < i0 + inner; i++) {
        let x = decode(input[word_index(i, IN_DT)], i, IN_DT);
        if is_non_finite(x) {
            atomicMax(&flags[0], ~(e0 + i - i0));
            continue;
        }
        let v = flush_subnormal(x);
        hi = max(hi, v);
        lo = min(lo, v);
    }
    let sz = finish_param(e0 / inner, hi, lo);
    // The run's words of the packed block: rows are padded to whole words and runs start on a
    // word (whole rows, or groups of a multiple of 4), so no other invocation writes them.
    let r = i0 / cols;
    let c0 = i0 % cols;
    let c1 = c0 + inner;
    let base = r * p.words_per_row;
    for (var w = c0 / 4u; w < (c1 + 3u) / 4u; w++) {
        var word = 0u;
        for (var j = 0u; j < 4u; j++) {
            let c = 4u * w + j;
            if c < c1 {
                let i = r * cols + c;
                let q = quantize_value(decode(input[word_index(i, IN_DT)], i, IN_DT), sz.scale, sz.zp);
                word |= (bitcast<u32>(q) & 0xffu) << (8u * j);
            }
        }
        atomicStore(&out[base + w], word);
    }
}
