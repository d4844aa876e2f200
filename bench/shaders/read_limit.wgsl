// The device's read limit (benches only): kernels that each read every byte of one buffer once
// and nothing else of use, in different access patterns. No single pattern is the fastest on
// every device, so the benches time them all in the same run and compare the library's kernels
// with the fastest.
//
// Each kernel XORs the words it reads. When timed (CHECK false) the result is stored only if it
// equals an unlikely marker, so the reads cannot be optimised away while writes cost nothing;
// tests set CHECK and compare the XOR of all threads with the host's (a word read twice, or
// not at all, shows).

override CHECK: bool = false;

struct Params {
    units: u32, // vec4<u32> units to read, in this binding
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// The window of the uniform kernel: 64 KiB, the largest uniform binding most devices allow.
const WINDOW_UNITS: u32 = 4096u;
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<atomic<u32>>;
// One buffer, seen as the type each pattern reads; an entry point uses one of them.
@group(0) @binding(2) var<storage, read> data: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> words: array<u32>;
@group(0) @binding(2) var<uniform> window: array<vec4<u32>, WINDOW_UNITS>;

fn finish(acc: vec4<u32>) {
    let v = acc.x ^ acc.y ^ acc.z ^ acc.w;
    if CHECK {
        atomicXor(&out[0], v);
    } else if v == 0x9e3779b9u && acc.x == 0x7f4a7c15u {
        atomicStore(&out[0], v);
    }
}

// The thread's index in a grid of (nwg.x, nwg.y) workgroups of WG threads, and the grid's size.
fn thread(gid: vec3<u32>, nwg: vec3<u32>) -> vec2<u32> {
    return vec2<u32>(gid.y * nwg.x * WG + gid.x, nwg.x * nwg.y * WG);
}

// One vec4 per thread per step, grid-stride: neighbouring threads read neighbouring 16 bytes.
@compute @workgroup_size(WG)
fn vec4_strided(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = thread(gid, nwg);
    var acc = vec4<u32>(0u);
    for (var i = t.x; i < p.units; i += t.y) {
        acc ^= data[i];
    }
    finish(acc);
}

// Four vec4 per thread per step, each a grid apart (still coalesced): four independent loads
// in flight per thread.
@compute @workgroup_size(WG)
fn vec4_x4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = thread(gid, nwg);
    var a0 = vec4<u32>(0u);
    var a1 = vec4<u32>(0u);
    var a2 = vec4<u32>(0u);
    var a3 = vec4<u32>(0u);
    var i = t.x;
    // `p.units - i > 3 * t.y` rather than `i + 3 * t.y < p.units`: no overflow near 2^32.
    for (; i < p.units && p.units - i > 3u * t.y; i += 4u * t.y) {
        a0 ^= data[i];
        a1 ^= data[i + t.y];
        a2 ^= data[i + 2u * t.y];
        a3 ^= data[i + 3u * t.y];
    }
    for (; i < p.units; i += t.y) {
        a0 ^= data[i];
    }
    finish(a0 ^ a1 ^ a2 ^ a3);
}

// A contiguous run of vec4 per thread: what a CPU's caches and prefetchers like best, and the
// opposite of coalesced on a GPU.
@compute @workgroup_size(WG)
fn vec4_blocked(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = thread(gid, nwg);
    let per = (p.units + t.y - 1u) / t.y;
    let start = min(t.x * per, p.units);
    let end = min(start + per, p.units);
    var acc = vec4<u32>(0u);
    for (var i = start; i < end; i++) {
        acc ^= data[i];
    }
    finish(acc);
}

// A contiguous run per thread as above, four neighbouring vec4 (64 bytes, a CPU cache line) per
// step into four accumulators: four independent loads in flight, each step a whole line.
@compute @workgroup_size(WG)
fn vec4_blocked_x4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = thread(gid, nwg);
    let per = (p.units + t.y - 1u) / t.y;
    let start = min(t.x * per, p.units);
    let end = min(start + per, p.units);
    var a0 = vec4<u32>(0u);
    var a1 = vec4<u32>(0u);
    var a2 = vec4<u32>(0u);
    var a3 = vec4<u32>(0u);
    var i = start;
    // `end - i >= 4u` rather than `i + 4u <= end`: no overflow near 2^32.
    for (; end - i >= 4u; i += 4u) {
        a0 ^= data[i];
        a1 ^= data[i + 1u];
        a2 ^= data[i + 2u];
        a3 ^= data[i + 3u];
    }
    for (; i < end; i++) {
        a0 ^= data[i];
    }
    finish(a0 ^ a1 ^ a2 ^ a3);
}

// One u32 per thread per step, grid-stride: the narrowest coalesced load.
@compute @workgroup_size(WG)
fn u32_strided(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = thread(gid, nwg);
    let n = p.units * 4u;
    var acc = 0u;
    for (var i = t.x; i < n; i += t.y) {
        acc ^= words[i];
    }
    finish(vec4<u32>(acc, 0u, 0u, 0u));
}

// One 64 KiB window of the buffer per dispatch, bound as a uniform buffer at successive
// offsets; the dispatch's workgroups split the window, neighbouring threads reading
// neighbouring units. nwg.x divides WINDOW_UNITS / 64.
@compute @workgroup_size(64)
fn uniform_windows(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let per = WINDOW_UNITS / nwg.x;
    var acc = vec4<u32>(0u);
    for (var i = wg.x * per + li; i < (wg.x + 1u) * per; i += 64u) {
        acc ^= window[i];
    }
    finish(acc);
}
