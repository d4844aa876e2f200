//! Translating a validated WGSL module to every backend's language as wgpu would (tests only):
//! the library's kernels here, the benches' yardsticks in `bench/` (which include this file).

/// Translates compute entry point `entry` of `module` (validated as `info`), with `constants`
/// applied as wgpu would, to SPIR-V, MSL, HLSL (SM 6.0) and, when `glsl`, GLSL ES 3.1, panicking
/// with `ctx` on the first failure; returns how many translations ran. `metal_bindings` are the
/// layout's (binding, writable) pairs: given, MSL maps each to a buffer slot and a missing one
/// fails (wgpu's Metal backend); `None` lets naga invent the bindings.
pub(crate) fn translate_for_every_backend(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    entry: &str,
    constants: &naga::back::PipelineConstants,
    metal_bindings: Option<&[(u32, bool)]>,
    glsl: bool,
    ctx: &str,
) -> usize {
    use naga::back::{glsl as gl, hlsl, msl, spv};
    let stage = naga::ShaderStage::Compute;
    let (module, info) =
        naga::back::pipeline_constants::process_overrides(module, info, Some((stage, entry)), constants)
            .unwrap_or_else(|e| panic!("{ctx}: overrides: {e:?}"));
    let spv_pipeline = spv::PipelineOptions { shader_stage: stage, entry_point: entry.into() };
    spv::write_vec(&module, &info, &spv::Options::default(), Some(&spv_pipeline))
        .unwrap_or_else(|e| panic!("{ctx}: SPIR-V: {e:?}"));
    let mut msl_options = msl::Options { lang_version: (2, 4), ..Default::default() };
    if let Some(bindings) = metal_bindings {
        let resources = bindings
            .iter()
            .map(|&(binding, mutable)| {
                let target = msl::BindTarget { buffer: Some(binding as u8), mutable, ..Default::default() };
                (naga::ResourceBinding { group: 0, binding }, target)
            })
            .collect();
        // A sizes buffer for runtime-sized arrays, as wgpu gives one.
        let resources = msl::EntryPointResources { resources, immediates_buffer: None, sizes_buffer: Some(30) };
        msl_options.fake_missing_bindings = false;
        msl_options.per_entry_point_map = [(entry.to_string(), resources)].into();
    }
    let msl_pipeline = msl::PipelineOptions { entry_point: Some((stage, entry.into())), ..Default::default() };
    let (_, msl_info) =
        msl::write_string(&module, &info, &msl_options, &msl_pipeline).unwrap_or_else(|e| panic!("{ctx}: MSL: {e:?}"));
    // A missing or mistyped binding drops the entry point instead of failing the call.
    for name in msl_info.entry_point_names {
        name.unwrap_or_else(|e| panic!("{ctx}: MSL entry point: {e:?}"));
    }
    let hlsl_options = hlsl::Options { shader_model: hlsl::ShaderModel::V6_0, ..Default::default() };
    let hlsl_pipeline = hlsl::PipelineOptions { entry_point: Some((stage, entry.into())) };
    hlsl::Writer::new(&mut String::new(), &hlsl_options, &hlsl_pipeline)
        .write(&module, &info, None)
        .unwrap_or_else(|e| panic!("{ctx}: HLSL: {e:?}"));
    if !glsl {
        return 3;
    }
    let glsl_options =
        gl::Options { version: gl::Version::Embedded { version: 310, is_webgl: false }, ..Default::default() };
    let glsl_pipeline = gl::PipelineOptions { shader_stage: stage, entry_point: entry.into(), multiview: None };
    let mut out = String::new();
    gl::Writer::new(
        &mut out,
        &module,
        &info,
        &glsl_options,
        &glsl_pipeline,
        naga::proc::BoundsCheckPolicies::default(),
    )
    .and_then(|mut w| w.write().map(|_| ()))
    .unwrap_or_else(|e| panic!("{ctx}: GLSL: {e:?}"));
    4
}
