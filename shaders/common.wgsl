// Shared by every kernel family: the host prepends this file to each family's source
// (src/gpu/shaders.rs). It holds the numeric contract that src/reference/mod.rs keeps on the CPU:
// the same f32 operations in the same order, so ints and scale bits agree exactly.

// dtype of the float input (weights to quantize, or activations), and of the output.
override IN_DT: u32 = 0u;
override OUT_DT: u32 = 0u;

// Every family writes its result through `out` (binding 1, declared with the others by the
// host's prelude, src/gpu/params.rs, as are DT_F32, DT_F16, DT_BF16 and WG). 16-bit outputs pack
// two elements per word; see store_out.

// Word holding element i of a buffer of dtype dt (16-bit dtypes pack two per u32, low half first).
fn word_index(i: u32, dt: u32) -> u32 {
    return select(i >> 1u, i, dt == DT_F32);
}

// Exact f16 -> f32 by bit manipulation, so subnormal f16 never depends on the device's
// denormal handling (and GL needs no F16_IN_F32).
fn f16_bits_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let man = h & 0x3ffu;
    if e == 0u {
        // zero or subnormal: man * 2^-24, exact (result is a normal f32)
        let v = f32(man) * 5.9604644775390625e-8;
        return bitcast<f32>(bitcast<u32>(v) | sign);
    }
    if e == 31u {
        return bitcast<f32>(sign | 0x7f800000u | (man << 13u));
    }
    return bitcast<f32>(sign | ((e + 112u) << 23u) | (man << 13u));
}

// Element i of dtype dt, given the word that holds it.
fn decode(word: u32, i: u32, dt: u32) -> f32 {
    if dt == DT_F32 {
        return bitcast<f32>(word);
    }
    let h = (word >> ((i & 1u) * 16u)) & 0xffffu;
    if dt == DT_BF16 {
        return bitcast<f32>(h << 16u);
    }
    return f16_bits_to_f32(h);
}

// f32 -> f16 bits, round to nearest, ties to even (integer ops: no device rounding mode involved).
fn f32_to_f16_bits(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    let sign = (b >> 16u) & 0x8000u;
    let a = b & 0x7fffffffu;
    if a > 0x7f800000u {
        return sign | 0x7e00u;
    }
    if a >= 0x477ff000u {
        return sign | 0x7c00u;
    }
    if a >= 0x38800000u {
        let r = a + 0x0fffu + ((a >> 13u) & 1u);
        return sign | ((r - 0x38000000u) >> 13u);
    }
    // f16 subnormal or zero: round(|v| * 2^24), exact scaling then round half to even
    return sign | u32(round(bitcast<f32>(a) * 16777216.0));
}

// f32 -> bf16 bits, round to nearest, ties to even.
fn f32_to_bf16_bits(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    if (b & 0x7fffffffu) > 0x7f800000u {
        return ((b >> 16u) | 0x40u) & 0xffffu;
    }
    return ((b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u) & 0xffffu;
}

// Writes output element i, rounded once to OUT_DT. A 16-bit element shares its word with a
// neighbour that another workgroup may write at the same time: its half is swapped in with a
// compare-exchange that keeps the other half, so the buffer needs no clearing beforehand (an
// application can record a layer into its own compute pass) and old contents never leak in.
fn store_out(i: u32, v: f32) {
    if OUT_DT == DT_F32 {
        atomicStore(&out[i], bitcast<u32>(v));
    } else {
        let h = select(f32_to_f16_bits(v), f32_to_bf16_bits(v), OUT_DT == DT_BF16);
        let shift = (i & 1u) * 16u;
        let keep = ~(0xffffu << shift);
        var old = atomicLoad(&out[i >> 1u]);
        loop {
            let r = atomicCompareExchangeWeak(&out[i >> 1u], old, (old & keep) | (h << shift));
            if r.exchanged {
                break;
            }
            old = r.old_value;
        }
    }
}

// Byte j of a packed word, sign-extended.
fn byte_at(word: u32, j: u32) -> i32 {
    return bitcast<i32>(word << (24u - 8u * j)) >> 24u;
}

fn is_non_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u;
}

// Zero or subnormal magnitude, tested on the bits so no flush-to-zero mode can change it.
fn is_tiny(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) < 0x00800000u;
}

fn flush_subnormal(x: f32) -> f32 {
    return select(x, 0.0, is_tiny(x));
}

// a / b correctly rounded (to nearest, ties to even), with u32 operations only: WGSL's `/` may
// err by 2.5 ULP (fast math, reciprocal multiplication), the CPU's is exact. Domain: b normal
// and positive; a zero, normal or non-finite (a subnormal a counts as 0: callers flush it).
// Results may be subnormal, zero or infinite.
fn div_rn(a: f32, b: f32) -> f32 {
    let ab = bitcast<u32>(a);
    let sign = ab & 0x80000000u;
    let ea = (ab >> 23u) & 0xffu;
    if ea == 0u || ea == 0xffu {
        return select(a, bitcast<f32>(sign), ea == 0u);
    }
    let bb = bitcast<u32>(b);
    let d = (bb & 0x7fffffu) | 0x800000u;
    var r = (ab & 0x7fffffu) | 0x800000u;
    // Normalise so the quotient of the significands lies in [1, 2); eq is its biased exponent.
    let low = r < d;
    r = select(r, r << 1u, low);
    let eq = i32(ea) - i32((bb >> 23u) & 0xffu) + 127 - i32(low);
    // Restoring long division: 25 quotient bits (24 significand bits + guard); r stays < 2d.
    var q = 0u;
    for (var i = 0u; i < 25u; i++) {
        let ge = r >= d;
        r = (r - select(0u, d, ge)) << 1u;
        q = (q << 1u) | u32(ge);
    }
    // Drop `sh` bits of q (1 for a normal result, more for a subnormal one) and round: the
    // dropped bits against half their weight, the remainder r as sticky.
    let eqc = clamp(eq, -24, 255);
    let sh = u32(clamp(2 - eqc, 1, 26));
    let half = 1u << (sh - 1u);
    let rem = q & ((half << 1u) - 1u);
    let kept = q >> sh;
    let up = rem > half || (rem == half && (r != 0u || (kept & 1u) != 0u));
    // The significand's leading bit adds one to the exponent field; a carry from rounding
    // moves to the next binade (or to the smallest normal, or to infinity) by itself.
    let base = select(0u, u32(eqc - 1) << 23u, eqc >= 1);
    let bits = min(base + kept + u32(up), 0x7f800000u);
    return bitcast<f32>(sign | bits);
}

fn symmetric_scale(absmax: f32) -> f32 {
    let s = div_rn(absmax, 127.0);
    return select(s, 1.0, is_tiny(s));
}

// round(x / scale + zp) clamped, with x / scale correctly rounded.
fn quantize_exact(x: f32, scale: f32, zp: i32) -> i32 {
    let v = round(div_rn(flush_subnormal(x), scale) + f32(zp));
    return i32(clamp(v, -128.0, 127.0));
}

// quantize_exact's result from the device's quotient qa = x / scale where that is safe (qa is a
// parameter so that tests can pass one that is off by a few ULP). x is already flushed.
fn quantize_with(x: f32, scale: f32, zp: i32, qa: f32) -> i32 {
    let a = qa + f32(zp);
    // WGSL's `/` errs by at most 2.5 ULP (scales lie in [2^-126, 2^126]). Where |a| <= 200,
    // |qa| <= 328, so this a and the exact path's differ by less than 3 * 2^-15 + 2^-16 < 2^-13:
    // unless a lies within 2^-8 of a half-integer, both round to the same int. Where |a| > 200,
    // both clamp to the same bound. Only near-ties pay for the exact division.
    if abs(a) <= 200.0 && abs(a - floor(a) - 0.5) <= 0.00390625 {
        return quantize_exact(x, scale, zp);
    }
    return i32(clamp(round(a), -128.0, 127.0));
}

fn quantize_value(x: f32, scale: f32, zp: i32) -> i32 {
    let xf = flush_subnormal(x);
    return quantize_with(xf, scale, zp, xf / scale);
}

// Parameter (scale) index of flat element e: see ParamLayout in src/scheme.rs.
fn param_of(e: u32, inner: u32, channels: u32) -> u32 {
    return (e / inner) % channels;
}

// Workgroups are dispatched on a 2-D grid when one dimension's limit is too small.
fn flat_group(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}
