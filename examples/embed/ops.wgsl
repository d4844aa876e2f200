// The MiniLM example's own kernels: everything in a BERT forward that is not a linear layer
// (those are int8-wgpu's `QuantizedLinear`, or `dense` below for the f32 baseline).
//
// Arithmetic is f32. Activations that come out of, or go into, a linear layer are in the
// linear layers' activation dtype (IN_DT / OUT_DT: f32, f16 or bf16, 16-bit values packed two
// per u32 with element 2i in the low half, as int8-wgpu stores them); the residual stream,
// attention probabilities and everything else stay f32. A kernel that writes a 16-bit tensor
// has each thread write whole words (an even number of elements starting at an even index),
// so no two threads ever share a word and no atomics are needed. Host code: kernels.rs.

const DT_F32: u32 = 0u;
const DT_F16: u32 = 1u;
const DT_BF16: u32 = 2u;

// dtype of activations read from a linear layer's output
override IN_DT: u32 = DT_F32;
// dtype of activations written for a linear layer's input
override OUT_DT: u32 = DT_F32;
// layer_norm: add a residual (f32) before normalising
override HAS_RES: bool = false;
// layer_norm: also write the result in OUT_DT (the next linear layer's input)
override WRITE_ACT: bool = false;

const WG: u32 = 64u;

struct Params {
    m: u32,        // rows (tokens, batch x seq), or sentences for pooling
    n: u32,        // columns (hidden size, or out features)
    k: u32,        // dense: in features; embed: rows of the position table
    seq: u32,      // tokens per sentence (padded)
    heads: u32,
    head_dim: u32,
    eps: f32,      // layer_norm epsilon
    scale: f32,    // attention: 1 / sqrt(head_dim)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> in0: array<u32>;
@group(0) @binding(2) var<storage, read> in1: array<u32>;
@group(0) @binding(3) var<storage, read> in2: array<u32>;
@group(0) @binding(4) var<storage, read> in3: array<u32>;
@group(0) @binding(5) var<storage, read> in4: array<u32>;
@group(0) @binding(6) var<storage, read_write> out0: array<u32>;
@group(0) @binding(7) var<storage, read_write> out1: array<u32>;

// The dense kernel's view of bindings 1-3 (each entry point keeps only the globals it uses).
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;

// ---- dtype helpers --------------------------------------------------------------------------

// Element i of a tensor of dtype dt, given the word that holds it.
fn decode(word: u32, i: u32, dt: u32) -> f32 {
    if dt == DT_F32 {
        return bitcast<f32>(word);
    }
    if dt == DT_F16 {
        return unpack2x16float(word)[i & 1u];
    }
    return bitcast<f32>(select(word << 16u, word & 0xffff0000u, (i & 1u) == 1u));
}

fn word_of(i: u32, dt: u32) -> u32 {
    return select(i >> 1u, i, dt == DT_F32);
}

// IN_DT loads from bindings 1-3.
fn ld0(i: u32) -> f32 { return decode(in0[word_of(i, IN_DT)], i, IN_DT); }
fn ld1(i: u32) -> f32 { return decode(in1[word_of(i, IN_DT)], i, IN_DT); }
fn ld2(i: u32) -> f32 { return decode(in2[word_of(i, IN_DT)], i, IN_DT); }

// f32 -> bf16 bits, round to nearest, ties to even (NaN stays NaN).
fn bf16_bits(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    if (b & 0x7fffffffu) > 0x7f800000u {
        return (b >> 16u) | 0x40u;
    }
    return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}

// The word(s) holding elements i and i + 1 (i even) in OUT_DT.
fn pack_pair(a: f32, b: f32) -> u32 {
    if OUT_DT == DT_F16 {
        return pack2x16float(vec2<f32>(a, b));
    }
    return (bf16_bits(a) & 0xffffu) | (bf16_bits(b) << 16u);
}

// Elements i and i + 1 (i even) of an OUT_DT tensor in out0 / out1.
fn st0_pair(i: u32, a: f32, b: f32) {
    if OUT_DT == DT_F32 {
        out0[i] = bitcast<u32>(a);
        out0[i + 1u] = bitcast<u32>(b);
    } else {
        out0[i >> 1u] = pack_pair(a, b);
    }
}

fn st1_pair(i: u32, a: f32, b: f32) {
    if OUT_DT == DT_F32 {
        out1[i] = bitcast<u32>(a);
        out1[i + 1u] = bitcast<u32>(b);
    } else {
        out1[i >> 1u] = pack_pair(a, b);
    }
}

fn f(x: u32) -> f32 { return bitcast<f32>(x); }

// Workgroup index over a 2-D grid (the host splits large counts over x and y).
fn flat(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// ---- embeddings: word + token type + position, f32 out ----------------------------------------
// in0: token ids [m], in1: token type ids [m], in2: word table [vocab, n], in3: position table
// [k, n], in4: type table [types, n]; out0: [m, n] f32. One thread per pair of columns.
@compute @workgroup_size(64)
fn embed(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let t = flat(wid, nwg) * WG + lid;
    let half_n = p.n / 2u;
    if t >= p.m * half_n {
        return;
    }
    let row = t / half_n;
    let c = 2u * (t % half_n);
    let id = in0[row];
    let ty = in1[row];
    let pos = row % p.seq;
    for (var j = 0u; j < 2u; j++) {
        // The order of the Hugging Face model: (word + type) + position.
        let v = (f(in2[id * p.n + c + j]) + f(in4[ty * p.n + c + j])) + f(in3[pos * p.n + c + j]);
        out0[row * p.n + c + j] = bitcast<u32>(v);
    }
}

// ---- (residual add +) LayerNorm ---------------------------------------------------------------
// in0: x [m, n] (IN_DT), in1: residual [m, n] f32 (HAS_RES), in2: gamma [n], in3: beta [n];
// out0: [m, n] f32, out1: the same in OUT_DT (WRITE_ACT). One workgroup per row; mean and
// variance in two passes (the variance of x - mean, not E[x²] - mean², which cancels).
var<workgroup> red: array<f32, 64>;

fn wg_sum(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn ln_in(i: u32) -> f32 {
    var v = ld0(i);
    if HAS_RES {
        v += f(in1[i]);
    }
    return v;
}

@compute @workgroup_size(64)
fn layer_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let row = flat(wid, nwg);
    if row >= p.m {
        return; // the whole workgroup: barriers stay in uniform control flow
    }
    let base = row * p.n;
    var s = 0.0;
    for (var c = lid; c < p.n; c += WG) {
        s += ln_in(base + c);
    }
    let mean = wg_sum(s, lid) / f32(p.n);
    var s2 = 0.0;
    for (var c = lid; c < p.n; c += WG) {
        let d = ln_in(base + c) - mean;
        s2 += d * d;
    }
    let inv = 1.0 / sqrt(wg_sum(s2, lid) / f32(p.n) + p.eps);
    // Pairs of columns, so a 16-bit copy is written a whole word at a time.
    for (var c = 2u * lid; c < p.n; c += 2u * WG) {
        let a = (ln_in(base + c) - mean) * inv * f(in2[c]) + f(in3[c]);
        let b = (ln_in(base + c + 1u) - mean) * inv * f(in2[c + 1u]) + f(in3[c + 1u]);
        out0[base + c] = bitcast<u32>(a);
        out0[base + c + 1u] = bitcast<u32>(b);
        if WRITE_ACT {
            st1_pair(base + c, a, b);
        }
    }
}

// ---- attention --------------------------------------------------------------------------------
// Rows are tokens b * seq + i; head h owns columns h * head_dim .. (h + 1) * head_dim.

// Probabilities: in0: q [m, n], in1: k [m, n] (IN_DT), in3: attention mask [m] (0 = padding);
// out0: [batch, heads, seq, seq] f32. One thread per (sentence, head, query): scaled dot
// products with every key, padded keys excluded (probability exactly 0, as the Hugging Face
// model's additive mask of the dtype's minimum gives), then a softmax over the row.
@compute @workgroup_size(64)
fn attention_probs(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let t = flat(wid, nwg) * WG + lid;
    let batch = p.m / p.seq;
    if t >= batch * p.heads * p.seq {
        return;
    }
    let i = t % p.seq;
    let h = (t / p.seq) % p.heads;
    let b = t / (p.seq * p.heads);
    let qbase = (b * p.seq + i) * p.n + h * p.head_dim;
    let obase = t * p.seq;
    var mx = -3.402823e38;
    for (var j = 0u; j < p.seq; j++) {
        let key = b * p.seq + j;
        if in3[key] == 0u {
            continue;
        }
        let kbase = key * p.n + h * p.head_dim;
        var s = 0.0;
        for (var d = 0u; d < p.head_dim; d++) {
            s += ld0(qbase + d) * ld1(kbase + d);
        }
        s *= p.scale;
        out0[obase + j] = bitcast<u32>(s);
        mx = max(mx, s);
    }
    var sum = 0.0;
    for (var j = 0u; j < p.seq; j++) {
        var e = 0.0;
        if in3[b * p.seq + j] != 0u {
            e = exp(f(out0[obase + j]) - mx);
        }
        out0[obase + j] = bitcast<u32>(e);
        sum += e;
    }
    // sum >= 1 whenever one key is unmasked (the largest term is exp(0)); a sentence of padding
    // only gets zeros rather than NaN.
    let inv = select(0.0, 1.0 / sum, sum > 0.0);
    for (var j = 0u; j < p.seq; j++) {
        out0[obase + j] = bitcast<u32>(f(out0[obase + j]) * inv);
    }
}

// Context: in0: probabilities [batch, heads, seq, seq] f32, in2: v [m, n] (IN_DT);
// out0: [m, n] (OUT_DT). One thread per (token, pair of columns).
@compute @workgroup_size(64)
fn attention_context(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let t = flat(wid, nwg) * WG + lid;
    let half_n = p.n / 2u;
    if t >= p.m * half_n {
        return;
    }
    let row = t / half_n;
    let c = 2u * (t % half_n);
    let h = c / p.head_dim;
    let b = row / p.seq;
    let i = row % p.seq;
    let pbase = ((b * p.heads + h) * p.seq + i) * p.seq;
    var a0 = 0.0;
    var a1 = 0.0;
    for (var j = 0u; j < p.seq; j++) {
        let w = f(in0[pbase + j]);
        let v = (b * p.seq + j) * p.n + c;
        a0 += w * ld2(v);
        a1 += w * ld2(v + 1u);
    }
    st0_pair(row * p.n + c, a0, a1);
}

// ---- GELU (erf form, as BERT's "gelu") ---------------------------------------------------------
// erfc(z) for z >= 0 by the Chebyshev fit of Numerical Recipes' erfcc: relative error below
// 1.2e-7 everywhere, so the tail of GELU for negative inputs keeps its relative accuracy (1 -
// erf(z) would cancel there). WGSL has no erf.
fn erfc_pos(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    return t * exp(-z * z + poly);
}

// x * Φ(x) = x / 2 * erfc(-x / √2)
fn gelu_erf(x: f32) -> f32 {
    let z = x * 0.70710678118654752;
    let c = select(2.0 - erfc_pos(z), erfc_pos(-z), z < 0.0);
    return 0.5 * x * c;
}

// in0: x [m, n] (IN_DT); out0: gelu(x) (OUT_DT). One thread per pair of elements.
@compute @workgroup_size(64)
fn gelu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = 2u * (flat(wid, nwg) * WG + lid);
    if i >= p.m * p.n {
        return;
    }
    st0_pair(i, gelu_erf(ld0(i)), gelu_erf(ld0(i + 1u)));
}

// ---- sentence embedding: mean pooling, L2 normalisation ---------------------------------------
// in0: hidden states [m, n] f32, in3: attention mask [m]; out0: [batch, n] f32, the mean over
// the sentence's unmasked tokens (sentence-transformers' Pooling, mean mode). One thread per
// (sentence, column).
@compute @workgroup_size(64)
fn mean_pool(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let t = flat(wid, nwg) * WG + lid;
    let batch = p.m / p.seq;
    if t >= batch * p.n {
        return;
    }
    let b = t / p.n;
    let c = t % p.n;
    var s = 0.0;
    var count = 0.0;
    for (var i = 0u; i < p.seq; i++) {
        let row = b * p.seq + i;
        if in3[row] != 0u {
            s += f(in0[row * p.n + c]);
            count += 1.0;
        }
    }
    // sentence-transformers divides by max(count, 1e-9): a sentence of padding pools to 0.
    out0[t] = bitcast<u32>(s / max(count, 1e-9));
}

// in0: [m, n] f32 (m = sentences); out0: each row divided by its L2 norm, at least 1e-12
// (torch.nn.functional.normalize). One workgroup per row.
@compute @workgroup_size(64)
fn l2_normalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let row = flat(wid, nwg);
    if row >= p.m {
        return;
    }
    var s = 0.0;
    for (var c = lid; c < p.n; c += WG) {
        let v = f(in0[row * p.n + c]);
        s += v * v;
    }
    let inv = 1.0 / max(sqrt(wg_sum(s, lid)), 1e-12);
    for (var c = lid; c < p.n; c += WG) {
        out0[row * p.n + c] = bitcast<u32>(f(in0[row * p.n + c]) * inv);
    }
}

// ---- dense f32 linear (the f32 baseline) ------------------------------------------------------
// x4: [m, k] f32, w4: [n, k] f32 (k % 4 == 0), bias: [n]; out0: [m, n] f32, y = x · wᵀ + b.
// Each thread computes a 4 x 4 tile of outputs from vec4 loads (16 multiply-adds per pair of
// loads); no workgroup memory, so no barriers: the caches serve the reuse, which suits
// lavapipe's CPU threads as well as a GPU's L1. Workgroup 8 x 8 threads = 32 x 32 outputs.
@compute @workgroup_size(8, 8)
fn dense(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n0 = gid.x * 4u;
    let m0 = gid.y * 4u;
    if n0 >= p.n || m0 >= p.m {
        return;
    }
    let k4 = p.k / 4u;
    // Rows and columns past the edge repeat the last one (loads stay in bounds) and are not stored.
    var xr: array<u32, 4>;
    var wr: array<u32, 4>;
    for (var r = 0u; r < 4u; r++) {
        xr[r] = min(m0 + r, p.m - 1u) * k4;
        wr[r] = min(n0 + r, p.n - 1u) * k4;
    }
    var acc: array<vec4<f32>, 4>;
    for (var kk = 0u; kk < k4; kk++) {
        let w = array<vec4<f32>, 4>(w4[wr[0] + kk], w4[wr[1] + kk], w4[wr[2] + kk], w4[wr[3] + kk]);
        for (var r = 0u; r < 4u; r++) {
            let x = x4[xr[r] + kk];
            acc[r] += vec4<f32>(dot(x, w[0]), dot(x, w[1]), dot(x, w[2]), dot(x, w[3]));
        }
    }
    for (var r = 0u; r < 4u; r++) {
        let m = m0 + r;
        for (var c = 0u; c < 4u; c++) {
            let n = n0 + c;
            if m < p.m && n < p.n {
                out0[m * p.n + n] = bitcast<u32>(acc[r][c] + bias[n]);
            }
        }
    }
}
