// The decoder's own kernels: everything in a Llama forward that is not a linear layer (those are
// int8-wgpu's `QuantizedLinear`, or `dense` below for the f32 baseline).
//
// Arithmetic is f32. Activations that come out of, or go into, a linear layer are in the linear
// layers' activation dtype (IN_DT / OUT_DT: f32, f16 or bf16, 16-bit values packed two per u32
// with element 2i in the low half, as int8-wgpu stores them); the residual stream, rotated
// queries, the KV cache and attention scores stay f32. A kernel that writes a 16-bit tensor has
// each thread write whole words (pairs of elements at an even index), so no two threads share a
// word. Host side: ops.rs.

const DT_F32: u32 = 0u;
const DT_F16: u32 = 1u;

// dtype of activations read from a linear layer's output
override IN_DT: u32 = DT_F32;
// dtype of activations written for a linear layer's input
override OUT_DT: u32 = DT_F32;
// rms_norm: add a linear layer's output (IN_DT) into the f32 residual stream first
override HAS_RES: bool = false;

const WG: u32 = 64u;

struct Params {
    m: u32,          // rows: tokens in this pass
    n: u32,          // columns (hidden size, or a dense layer's out features)
    k: u32,          // dense: in features; attention / rope: rows of the KV cache
    heads: u32,      // query heads
    kv_heads: u32,   // key/value heads
    head_dim: u32,
    eps: f32,        // RMSNorm epsilon
    scale: f32,      // attention: 1 / sqrt(head_dim)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> in0: array<u32>;
@group(0) @binding(2) var<storage, read> in1: array<u32>;
@group(0) @binding(3) var<storage, read> in2: array<u32>;
@group(0) @binding(4) var<storage, read> in3: array<u32>;
@group(0) @binding(5) var<storage, read> in4: array<u32>;
@group(0) @binding(6) var<storage, read_write> out0: array<u32>;
@group(0) @binding(7) var<storage, read_write> out1: array<u32>;
@group(0) @binding(8) var<storage, read_write> out2: array<u32>;

// The dense kernel's view of bindings 1-2.
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w4: array<vec4<f32>>;

// ---- dtype helpers --------------------------------------------------------------------------

fn f(x: u32) -> f32 { return bitcast<f32>(x); }

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

// Workgroup index over a 2-D grid (the host splits large counts over x and y).
fn flat(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

var<workgroup> red: array<f32, 64>;

fn wg_reduce(v: f32, lid: u32, is_max: bool) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            red[lid] = select(red[lid] + red[lid + s], max(red[lid], red[lid + s]), is_max);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

// ---- token embedding ----------------------------------------------------------------------------
// in0: token ids [m], in1: table [vocab, n] f32; out0: [m, n] f32. One thread per element.
@compute @workgroup_size(64)
fn embed(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let t = flat(wid, nwg) * WG + lid;
    if t >= p.m * p.n {
        return;
    }
    let row = t / p.n;
    out0[t] = in1[in0[row] * p.n + t % p.n];
}

// in0: token ids [m], in1: a Q8_0 table [vocab, n] as int8 packed 4 per u32, in2: its scales,
// one f32 per 32 values; out0: [m, n] f32, f32(q) * d as the host dequantizes it (one rounding,
// so bit for bit the f32 table's value). One thread per element.
@compute @workgroup_size(64)
fn embed_q8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let t = flat(wid, nwg) * WG + lid;
    if t >= p.m * p.n {
        return;
    }
    let e = in0[t / p.n] * p.n + t % p.n;
    // Byte e % 4 of its word, sign-extended.
    let q = bitcast<i32>(in1[e >> 2u] << (24u - 8u * (e & 3u))) >> 24u;
    out0[t] = bitcast<u32>(f32(q) * f(in2[e >> 5u]));
}

// ---- (residual add +) RMSNorm -------------------------------------------------------------------
// out0: the residual stream x [m, n] f32 (HAS_RES: x += in0 [m, n] IN_DT first), in1: gamma [n];
// out1: x / sqrt(mean(x²) + eps) · gamma in OUT_DT. One workgroup per row.
@compute @workgroup_size(64)
fn rms_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let row = flat(wid, nwg);
    if row >= p.m {
        return; // the whole workgroup: barriers stay in uniform control flow
    }
    let base = row * p.n;
    var s = 0.0;
    for (var c = lid; c < p.n; c += WG) {
        var v = f(out0[base + c]);
        if HAS_RES {
            v += ld0(base + c);
            out0[base + c] = bitcast<u32>(v);
        }
        s += v * v;
    }
    let inv = 1.0 / sqrt(wg_reduce(s, lid, false) / f32(p.n) + p.eps);
    // Pairs of columns, so a 16-bit result is written a whole word at a time; each thread reads
    // back only the columns it wrote above (c ≡ lid mod 64 covers both 2·lid' and 2·lid' + 1
    // for other threads), hence the barrier.
    storageBarrier();
    workgroupBarrier();
    for (var c = 2u * lid; c < p.n; c += 2u * WG) {
        let a = f(out0[base + c]) * inv * f(in1[c]);
        let b = f(out0[base + c + 1u]) * inv * f(in1[c + 1u]);
        st1_pair(base + c, a, b);
    }
}

// ---- RoPE and the KV cache ----------------------------------------------------------------------
// in0: q [m, heads·d], in1: k [m, kv_heads·d], in2: v [m, kv_heads·d] (IN_DT), in3: [start]
// (the position of row 0), in4: cos/sin table [k, d/2] of vec2 (host-made, as candle's);
// out0: rotated q [m, heads·d] f32, out1: K cache [k, kv_heads·d] f32, out2: V cache, rows at
// start + row. Adjacent pairs (2i, 2i + 1) rotate by position · base^(−2i/d): llama.cpp's
// "normal" RoPE, the layout its converter permuted the Q and K weights into. One thread per
// query pair; the first kv_heads·d/2 threads of a row also do a key pair and a value pair.
@compute @workgroup_size(64)
fn rope_kv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let t = flat(wid, nwg) * WG + lid;
    let half_d = p.head_dim / 2u;
    let pairs = p.heads * half_d;
    if t >= p.m * pairs {
        return;
    }
    let row = t / pairs;
    let pr = t % pairs;
    let pos = in3[0] + row;
    let cs_i = (pos * half_d + pr % half_d) * 2u;
    let c = f(in4[cs_i]);
    let s = f(in4[cs_i + 1u]);
    let qi = row * 2u * pairs + 2u * pr;
    let q0 = ld0(qi);
    let q1 = ld0(qi + 1u);
    out0[qi] = bitcast<u32>(q0 * c - q1 * s);
    out0[qi + 1u] = bitcast<u32>(q0 * s + q1 * c);
    let kv_pairs = p.kv_heads * half_d;
    if pr < kv_pairs {
        let ki = row * 2u * kv_pairs + 2u * pr;
        let ci = pos * 2u * kv_pairs + 2u * pr;
        let k0 = ld1(ki);
        let k1 = ld1(ki + 1u);
        out1[ci] = bitcast<u32>(k0 * c - k1 * s);
        out1[ci + 1u] = bitcast<u32>(k0 * s + k1 * c);
        out2[ci] = bitcast<u32>(ld2(ki));
        out2[ci + 1u] = bitcast<u32>(ld2(ki + 1u));
    }
}

// ---- grouped-query attention over the KV cache --------------------------------------------------
// in0: rotated q [m, heads·d] f32, in1: K cache, in2: V cache [k, kv_heads·d] f32, in3: [start];
// out0: context [m, heads·d] OUT_DT, out1: scores scratch [m, heads, k] f32. One workgroup per
// (row, head): query row r attends to cache rows 0 ..= start + r (causal), query head h to
// key/value head h / (heads / kv_heads). Softmax with the row max subtracted.
@compute @workgroup_size(64)
fn attention(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let g = flat(wid, nwg);
    if g >= p.m * p.heads {
        return;
    }
    let row = g / p.heads;
    let h = g % p.heads;
    let len = in3[0] + row + 1u;
    let d = p.head_dim;
    let kv_n = p.kv_heads * d;
    let kvh = h / (p.heads / p.kv_heads);
    let qbase = (row * p.heads + h) * d;
    let sbase = g * p.k;
    var mx = -3.402823e38;
    for (var j = lid; j < len; j += WG) {
        let kbase = j * kv_n + kvh * d;
        var s = 0.0;
        for (var i = 0u; i < d; i++) {
            s += f(in0[qbase + i]) * f(in1[kbase + i]);
        }
        s *= p.scale;
        out1[sbase + j] = bitcast<u32>(s);
        mx = max(mx, s);
    }
    mx = wg_reduce(mx, lid, true);
    var sum = 0.0;
    for (var j = lid; j < len; j += WG) {
        let e = exp(f(out1[sbase + j]) - mx);
        out1[sbase + j] = bitcast<u32>(e);
        sum += e;
    }
    // sum >= 1: the largest term is exp(0).
    let inv = 1.0 / wg_reduce(sum, lid, false);
    storageBarrier();
    workgroupBarrier();
    for (var c = 2u * lid; c < d; c += 2u * WG) {
        var a0 = 0.0;
        var a1 = 0.0;
        for (var j = 0u; j < len; j++) {
            let w = f(out1[sbase + j]);
            let v = j * kv_n + kvh * d + c;
            a0 += w * f(in2[v]);
            a1 += w * f(in2[v + 1u]);
        }
        st0_pair(qbase + c, a0 * inv, a1 * inv);
    }
}

// ---- SwiGLU -------------------------------------------------------------------------------------
// in0: gate [m, n], in1: up [m, n] (IN_DT); out0: silu(gate) · up (OUT_DT). One thread per pair.
fn silu(x: f32) -> f32 {
    return x / (1.0 + exp(-x));
}

@compute @workgroup_size(64)
fn swiglu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = 2u * (flat(wid, nwg) * WG + lid);
    if i >= p.m * p.n {
        return;
    }
    st0_pair(i, silu(ld0(i)) * ld1(i), silu(ld0(i + 1u)) * ld1(i + 1u));
}

// ---- dense f32 linear (the f32 baseline) --------------------------------------------------------
// x4: [m, k] f32, w4: [n, k] f32 (k % 4 == 0); out0: [m, n] f32, y = x · wᵀ. Each thread
// computes a 4 x 4 tile of outputs from vec4 loads; no workgroup memory, the caches serve the
// reuse. Workgroup 8 x 8 threads = 32 x 32 outputs.
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
                out0[m * p.n + n] = bitcast<u32>(acc[r][c]);
            }
        }
    }
}
