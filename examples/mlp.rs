//! A 3-layer MLP built the way an application builds on this crate: its own wgpu device (no
//! poll thread: the application polls), its activations in two arena buffers of its own, its
//! own GELU kernel between the quantized layers, and the whole forward of two paths — f32 and
//! bf16 activations over the same int8 weights, quantized once — recorded into one compute
//! pass and submitted once. Every stage is read back (through one reused staging buffer) and
//! checked against the f64 oracle applied to the stage's GPU inputs.
//!
//! ```text
//! cargo run --release --example mlp
//! ```
//!
//! wgpu binds a buffer either read-only or writable within one dispatch, so a layer's output
//! cannot share a buffer with its input or bias: layers read arena `a` (inputs, biases) and
//! write arena `b`; the GELU kernel reads `b` and writes `a`.

use std::error::Error;

use half::bf16;
use int8_wgpu::{DType, Element, Gpu, GpuOptions, GpuTensor, Polling, QuantScheme, QuantizedLinear, reference};

/// `[in, hidden, hidden, out]`: odd widths, so 16-bit tensors end in half-used words.
const DIMS: [usize; 4] = [64, 37, 48, 7];

/// The application's GELU (tanh form, argument clamped to ±10) over a tensor's words: one f32
/// element, or two bf16 elements (element 2i in the low half of word i), per invocation.
const GELU_WGSL: &str = r#"
@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> y: array<u32>;

fn gelu(v: f32) -> f32 {
    let z = clamp(0.7978845608 * (v + 0.044715 * v * v * v), -10.0, 10.0);
    let t = 1.0 - 2.0 / (exp(2.0 * z) + 1.0);
    return 0.5 * v * (1.0 + t);
}

// bf16 <-> f32; rounding to nearest, ties to even (finite values).
fn widen(h: u32) -> f32 { return bitcast<f32>(h << 16u); }
fn narrow(f: f32) -> u32 {
    let b = bitcast<u32>(f);
    return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}

@compute @workgroup_size(64)
fn gelu_f32(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < arrayLength(&y)) { y[id.x] = bitcast<u32>(gelu(bitcast<f32>(x[id.x]))); }
}

@compute @workgroup_size(64)
fn gelu_bf16(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < arrayLength(&y)) {
        let w = x[id.x];
        y[id.x] = narrow(gelu(widen(w & 0xffffu))) | (narrow(gelu(widen(w >> 16u))) << 16u);
    }
}
"#;

fn main() -> Result<(), Box<dyn Error>> {
    let gpu = open_app_device()?;
    println!("adapter: {}", gpu.describe());
    for (dtype, worst) in run(&gpu, 3)? {
        println!("{dtype}: every stage within its f64 tolerance (worst |diff| / tolerance {worst:.3})");
    }
    Ok(())
}

/// The application's device, opened with the features and limits `Gpu::from_device_with_options`
/// recommends, and handed over without a poll thread.
pub fn open_app_device() -> Result<Gpu, Box<dyn Error>> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))?;
    let wanted = wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("mlp app"),
        required_features: adapter.features() & wanted,
        required_limits: adapter.limits(),
        ..Default::default()
    }))?;
    let options = GpuOptions { polling: Polling::Application, ..Default::default() };
    Ok(Gpu::from_device_with_options(device, queue, options)?)
}

/// Runs the MLP on `rows` activation rows along both paths; returns, per path, the worst ratio
/// of a stage's |GPU - f64 oracle| to its tolerance (an error where one exceeds 1).
pub fn run(gpu: &Gpu, rows: usize) -> Result<Vec<(DType, f64)>, Box<dyn Error>> {
    let scheme = QuantScheme::default();
    let seed = |n: usize, s: u32| -> Vec<f32> {
        (0..n)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(s) >> 8) as f32 / 8_388_608.0 - 1.0)
            .collect()
    };
    // One quantized weight per layer, shared by both paths (clones share the buffers).
    let weights = (0..3)
        .map(|l| gpu.quantize(&seed(DIMS[l + 1] * DIMS[l], 10 + l as u32), &[DIMS[l + 1], DIMS[l]], scheme))
        .collect::<Result<Vec<_>, _>>()?;
    let biases: Vec<Vec<f32>> = (0..3).map(|l| seed(DIMS[l + 1], 20 + l as u32)).collect();
    let x = seed(rows * DIMS[0], 30);

    let mut a = Arena::new(gpu, "a: inputs and biases");
    let mut b = Arena::new(gpu, "b: layer outputs");
    let f32_offsets = Offsets::place(&mut a, &mut b, rows, DType::F32);
    let bf16_offsets = Offsets::place(&mut a, &mut b, rows, DType::BF16);
    let arenas = [a.create(), b.create()];
    let f32_path = Path::<f32>::build(gpu, &arenas, &f32_offsets, &weights, &biases, &x)?;
    let bf16_path = Path::<bf16>::build(gpu, &arenas, &bf16_offsets, &weights, &biases, &x)?;

    let gelu = Gelu::new(gpu);
    let device = gpu.device();
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        f32_path.record(&mut pass, &gelu.f32, gpu)?;
        bf16_path.record(&mut pass, &gelu.bf16, gpu)?;
    }
    gpu.queue().submit([encoder.finish()]);
    Ok(vec![(DType::F32, f32_path.check()?), (DType::BF16, bf16_path.check()?)])
}

/// Offsets in one application buffer, each aligned as storage bindings need.
struct Arena {
    device: wgpu::Device,
    label: &'static str,
    align: u64,
    size: u64,
}

impl Arena {
    fn new(gpu: &Gpu, label: &'static str) -> Self {
        let align = u64::from(gpu.limits().min_storage_buffer_offset_alignment);
        Self { device: gpu.device().clone(), label, align, size: 0 }
    }

    /// Reserves a tensor of `numel` elements of `dtype`; returns its offset.
    fn place(&mut self, numel: usize, dtype: DType) -> u64 {
        let offset = self.size.next_multiple_of(self.align);
        self.size = offset + (numel * dtype.size()).next_multiple_of(4) as u64;
        offset
    }

    fn create(self) -> wgpu::Buffer {
        use wgpu::BufferUsages as U;
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(self.label),
            size: self.size,
            usage: U::STORAGE | U::COPY_SRC | U::COPY_DST,
            mapped_at_creation: false,
        })
    }
}

/// Where one path's tensors lie in the arenas.
struct Offsets {
    rows: usize,
    dtype: DType,
    /// x, g1, g2 in arena `a`; h1, h2, y in arena `b`.
    acts: [u64; 6],
    /// In arena `a`.
    biases: [u64; 3],
}

impl Offsets {
    fn place(a: &mut Arena, b: &mut Arena, rows: usize, dtype: DType) -> Self {
        let acts = [
            a.place(rows * DIMS[0], dtype),
            a.place(rows * DIMS[1], dtype),
            a.place(rows * DIMS[2], dtype),
            b.place(rows * DIMS[1], dtype),
            b.place(rows * DIMS[2], dtype),
            b.place(rows * DIMS[3], dtype),
        ];
        let biases = [a.place(DIMS[1], dtype), a.place(DIMS[2], dtype), a.place(DIMS[3], dtype)];
        Self { rows, dtype, acts, biases }
    }
}

/// One path: its tensors (ranges of the arenas) and layers.
struct Path<T> {
    /// x, g1, g2, h1, h2, y.
    acts: [GpuTensor; 6],
    biases: [GpuTensor; 3],
    layers: Vec<QuantizedLinear>,
    _dtype: std::marker::PhantomData<T>,
}

impl<T: Element> Path<T> {
    /// Writes `x` and the biases into arena `a`, wraps every range and builds the layers.
    fn build(
        gpu: &Gpu,
        [a, b]: &[wgpu::Buffer; 2],
        at: &Offsets,
        weights: &[int8_wgpu::GpuQuantizedTensor],
        biases: &[Vec<f32>],
        x: &[f32],
    ) -> Result<Self, Box<dyn Error>> {
        assert_eq!(at.dtype, T::DTYPE);
        let host = |v: &[f32]| -> Vec<T> { v.iter().map(|&f| T::from_f32(f)).collect() };
        // wgpu writes whole words: an odd count of 16-bit values is padded with a zero half.
        let write = |offset: u64, v: &[f32]| {
            let mut bytes = bytemuck::cast_slice::<T, u8>(&host(v)).to_vec();
            bytes.resize(bytes.len().next_multiple_of(4), 0);
            gpu.queue().write_buffer(a, offset, &bytes)
        };
        write(at.acts[0], x);
        let widths = [DIMS[0], DIMS[1], DIMS[2], DIMS[1], DIMS[2], DIMS[3]];
        let mut acts = Vec::new();
        for (i, (&offset, &width)) in at.acts.iter().zip(&widths).enumerate() {
            let arena = if i < 3 { a } else { b };
            acts.push(GpuTensor::from_buffer_range(gpu, arena.clone(), offset, &[at.rows, width], at.dtype)?);
        }
        let mut bias_tensors = Vec::new();
        let mut layers = Vec::new();
        for l in 0..3 {
            write(at.biases[l], &biases[l]);
            let bias = GpuTensor::from_buffer_range(gpu, a.clone(), at.biases[l], &[DIMS[l + 1]], at.dtype)?;
            // The weight is shared: a clone, not a second quantization.
            let layer = QuantizedLinear::from_gpu(weights[l].clone(), None::<&[f32]>, at.dtype)?;
            layers.push(layer.with_bias(bias.clone())?);
            bias_tensors.push(bias);
        }
        Ok(Self {
            acts: acts.try_into().expect("six tensors"),
            biases: bias_tensors.try_into().expect("three biases"),
            layers,
            _dtype: std::marker::PhantomData,
        })
    }
    /// layer 1, GELU, layer 2, GELU, layer 3: dispatches in one pass (wgpu orders each write
    /// before the reads that follow it).
    fn record(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        gelu: &wgpu::ComputePipeline,
        gpu: &Gpu,
    ) -> Result<(), Box<dyn Error>> {
        let [x, g1, g2, h1, h2, y] = &self.acts;
        self.layers[0].record(pass, x, h1)?;
        record_gelu(pass, gelu, gpu, h1, g1);
        self.layers[1].record(pass, g1, h2)?;
        record_gelu(pass, gelu, gpu, h2, g2);
        self.layers[2].record(pass, g2, y)?;
        Ok(())
    }

    /// Each stage against the f64 oracle of its GPU inputs; the worst |diff| / tolerance.
    fn check(&self) -> Result<f64, Box<dyn Error>> {
        // Through one staging buffer the device keeps; the blocking read polls the device
        // itself (Polling::Application).
        let read = |t: &GpuTensor| -> Result<Vec<T>, Box<dyn Error>> {
            let mut v = vec![T::from_f32(0.0); t.numel()];
            t.read_into(&mut v)?;
            Ok(v)
        };
        let [x, g1, g2, h1, h2, y] = &self.acts;
        let mut worst = 0.0f64;
        let mut input = read(x)?;
        for (l, (h, g)) in [(h1, Some(g1)), (h2, Some(g2)), (y, None)].into_iter().enumerate() {
            let w = self.layers[l].weight().to_host()?;
            let bias = read(&self.biases[l])?;
            let (want, mag) = reference::linear_f64(&input, &w, Some(&bias))?;
            let got = read(h)?;
            for i in 0..got.len() {
                let tol = linear_tolerance(DIMS[l], mag[i], want[i], T::DTYPE);
                worst = worst.max(ratio(
                    got[i].to_f32(),
                    want[i],
                    tol,
                    &format!("layer {} row {}", l + 1, i / DIMS[l + 1]),
                )?);
            }
            if let Some(g) = g {
                let out = read(g)?;
                for (v, o) in got.iter().zip(&out) {
                    let v = f64::from(v.to_f32());
                    worst = worst.max(ratio(o.to_f32(), gelu_f64(v), gelu_tolerance(v, T::DTYPE), "gelu")?);
                }
                input = out;
            }
        }
        Ok(worst)
    }
}

/// `|got - want| / tol`, or an error naming the stage where it exceeds 1.
fn ratio(got: f32, want: f64, tol: f64, what: &str) -> Result<f64, Box<dyn Error>> {
    let diff = (f64::from(got) - want).abs();
    if diff.is_nan() || diff > tol {
        return Err(format!("{what}: GPU {got:e}, f64 oracle {want:e}, |diff| {diff:e} > tolerance {tol:e}").into());
    }
    Ok(diff / tol)
}

/// A linear output's tolerance: f32 accumulation over k terms errs by at most about k·u·M
/// (u = 2^-24, M the oracle's magnitude), doubled, plus the one rounding to the output dtype.
fn linear_tolerance(k: usize, magnitude: f64, y: f64, dtype: DType) -> f64 {
    let u = f64::from(f32::EPSILON) / 2.0;
    2.0 * (k as f64 + 4.0) * u * magnitude + 1e-30 + rounding(y, dtype)
}

/// Half an ulp of `y` in a 16-bit dtype (bf16: 2^-8 relative); nothing for f32.
fn rounding(y: f64, dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 0.0,
        DType::F16 => y.abs() * 2f64.powi(-11) * 1.001 + 2f64.powi(-25),
        DType::BF16 => y.abs() * 2f64.powi(-8) * 1.001,
    }
}

/// The kernel's formula in f64.
fn gelu_f64(v: f64) -> f64 {
    let z = (0.797_884_560_8 * (v + 0.044715 * v * v * v)).clamp(-10.0, 10.0);
    0.5 * v * (1.0 + z.tanh())
}

/// The GELU kernel's error bound, from WGSL's accuracy rules: `exp(x)` within 3 + 2|x| ulp,
/// other operations taken as within 3 ulp (6u relative, u = 2^-24). z's five operations err
/// by 30u·c·(|v| + a|v|³); t = 1 - 2/(e^{2z} + 1) by half e's relative error plus three
/// operations on values up to 2, plus z's error (tanh' ≤ 1); g = ½v(1 + t) by ½|v|·δt plus two
/// roundings. Doubled, plus the rounding to the output dtype and f32's flushed subnormals.
fn gelu_tolerance(v: f64, dtype: DType) -> f64 {
    let u = f64::from(f32::EPSILON) / 2.0;
    let c = 0.797_884_560_8;
    let z = (c * (v + 0.044715 * v * v * v)).clamp(-10.0, 10.0);
    let dz = 30.0 * u * c * (v.abs() + 0.044715 * v.abs().powi(3));
    let dexp = (3.0 + 4.0 * z.abs()) * 2.0 * u + 2.0 * z.abs() * u;
    let dt = dexp / 2.0 + 3.0 * 6.0 * u * 2.0 + dz;
    let g = gelu_f64(v);
    2.0 * (0.5 * v.abs() * dt + 6.0 * u * (v.abs() + g.abs())) + 1e-30 + rounding(g, dtype)
}

/// The application's GELU pipelines, one per activation dtype.
struct Gelu {
    f32: wgpu::ComputePipeline,
    bf16: wgpu::ComputePipeline,
}

impl Gelu {
    fn new(gpu: &Gpu) -> Self {
        let device = gpu.device();
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("app gelu"),
            source: wgpu::ShaderSource::Wgsl(GELU_WGSL.into()),
        });
        let pipeline = |entry| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
        };
        Self { f32: pipeline("gelu_f32"), bf16: pipeline("gelu_bf16") }
    }
}

/// GELU from `x` into `y`, binding just the tensors' ranges of their arenas.
fn record_gelu(
    pass: &mut wgpu::ComputePass<'_>,
    pipeline: &wgpu::ComputePipeline,
    gpu: &Gpu,
    x: &GpuTensor,
    y: &GpuTensor,
) {
    let group = gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("app gelu"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry { binding: 0, resource: wgpu::BindingResource::Buffer(x.binding()) },
            wgpu::BindGroupEntry { binding: 1, resource: wgpu::BindingResource::Buffer(y.binding()) },
        ],
    });
    let words = (y.nbytes() as u32).div_ceil(4);
    pass.set_pipeline(pipeline);
    pass.set_bind_group(0, &group, &[]);
    pass.dispatch_workgroups(words.div_ceil(64), 1, 1);
}
