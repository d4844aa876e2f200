// Shared by every kernel family: the host prepends this file to each family's source
// (src/gpu/kernels.rs). It holds the numeric contract that src/reference.rs keeps on the CPU:
// the same f32 operations in the same order, so ints and scale bits agree exactly.

const DT_F32: u32 = 0u;
const DT_F16: u32 = 1u;
const DT_BF16: u32 = 2u;

// dtype of the float input (weights to quantize, or activations), and of the output.
override IN_DT: u32 = 0u;
override OUT_DT: u32 = 0u;

// Every family writes its result through binding 1. 16-bit outputs pack two elements per word;
// neighbours may come from different workgroups, so halves are OR-ed into a zeroed buffer.
@group(0) @binding(1) var<storage, read_write> out: array<atomic<u32>>;

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

// Writes output element i, rounded once to OUT_DT.
fn store_out(i: u32, v: f32) {
    if OUT_DT == DT_F32 {
        atomicStore(&out[i], bitcast<u32>(v));
    } else {
        let h = select(f32_to_f16_bits(v), f32_to_bf16_bits(v), OUT_DT == DT_BF16);
        atomicOr(&out[i >> 1u], h << ((i & 1u) * 16u));
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

fn symmetric_scale(absmax: f32) -> f32 {
    let s = absmax / 127.0;
    return select(s, 1.0, is_tiny(s));
}

fn quantize_value(x: f32, scale: f32, zp: i32) -> i32 {
    let v = round(flush_subnormal(x) / scale + f32(zp));
    return i32(clamp(v, -128.0, 127.0));
}

// Parameter (scale) index of flat element e: see ParamLayout in src/scheme.rs.
fn param_of(e: u32, inner: u32, channels: u32) -> u32 {
    return (e / inner) % channels;
}

// Workgroups are dispatched on a 2-D grid when one dimension's limit is too small.
fn flat_group(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}
