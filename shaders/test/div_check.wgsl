// Test probe of common.wgsl's exact division and quantize_value, compiled only by the crate's
// unit tests (src/gpu/quantize.rs), with quantize.wgsl's parameters and bindings.

// Test probe: case t is input words 3t.. = (a bits, b bits, zp); output words 4t.. = div_rn(a, b)
// bits, quantize_value(a, b, zp), the same from a quotient off by (t % 7) - 3 ULP (an
// approximate device division), and quantize_exact(a, b, zp). p.elems = number of cases.
@compute @workgroup_size(WG)
fn div_check_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.y * nwg.x * WG + gid.x;
    if t >= p.elems {
        return;
    }
    let a = bitcast<f32>(input[3u * t]);
    let b = bitcast<f32>(input[3u * t + 1u]);
    let zp = bitcast<i32>(input[3u * t + 2u]);
    let xf = flush_subnormal(a);
    let qa = xf / b;
    let off = bitcast<u32>(i32(t % 7u) - 3);
    // Off by whole ULPs (bit steps keep the sign), away from the subnormal and overflow ends.
    let approx = select(qa, bitcast<f32>(bitcast<u32>(qa) + off), abs(qa) >= 1e-30 && abs(qa) <= 1e30);
    atomicStore(&out[4u * t], bitcast<u32>(div_rn(a, b)));
    atomicStore(&out[4u * t + 1u], bitcast<u32>(quantize_value(a, b, zp)));
    atomicStore(&out[4u * t + 2u], bitcast<u32>(quantize_with(xf, b, zp, approx)));
    atomicStore(&out[4u * t + 3u], bitcast<u32>(quantize_exact(a, b, zp)));
}
