//! `QuantizedLinear`: a W8A32 / W8A16 linear layer computed straight from packed int8 weights,
//! or W8A8 / LLM.int8() with activations quantized on the fly.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::check::{check_finite, check_output};
use crate::gpu::linear::{LinearPlan, read_outlier_columns};
use crate::gpu::{Gpu, GpuQuantizedTensor, GpuTensor, TuneCase, TuneOptions, TuneReport};
use crate::reference::check_a8_weight_scheme;
use crate::scheme::check_shape;
use crate::{ActivationQuant, DType, Element, Error, QuantScheme, QuantizedTensor, Result};

mod bind;

use bind::BoundEntry;

/// One stage of an int8-activation layer's forward ([`QuantizedLinear::record_stage`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ForwardStage {
    /// The activation quantizer: outlier columns (LLM.int8()), per-row scales and int8 values.
    QuantizeActivations,
    /// The matmul of the int8 activations with the int8 weight (and LLM.int8()'s outlier
    /// columns in float).
    Matmul,
}

/// A linear layer `y = x · Wᵀ + b` whose weight `W` (`[out, in]`) is int8 on the GPU.
///
/// The activation dtype fixes the flavour: [`DType::F32`] is W8A32, [`DType::F16`] and
/// [`DType::BF16`] are W8A16. Inputs are `[..., in]` in that dtype, outputs `[..., out]` in the
/// same dtype, accumulated in f32 and rounded once. Up to 8 rows run a GEMV kernel in one
/// pass; more run the tiled GEMM or GEMV passes of up to 8 rows ([`Gpu::linear_kernel`] says
/// which).
///
/// With [`QuantizedLinear::with_activation_quant`] the layer is W8A8 (or LLM.int8()): each
/// forward quantizes its activations per row on the GPU and multiplies int8 by int8 in `i32`,
/// all in the same compute pass.
pub struct QuantizedLinear {
    gpu: Gpu,
    weight: GpuQuantizedTensor,
    bias: Option<GpuTensor>,
    /// Stands in for an absent bias (every binding must be bound).
    placeholder: wgpu::Buffer,
    dtype: DType,
    /// Int8 activations (W8A8, LLM.int8()); `None` for weight-only W8A16 / W8A32.
    act: Option<ActivationQuant>,
    /// Per activation-row count: the dispatch plan with its parameters uploaded (and, for int8
    /// activations, its scratch buffers).
    plans: Mutex<HashMap<usize, Arc<LinearPlan>>>,
    /// The most recently used bind groups, by (rows, x buffer, y buffer), newest first.
    bound: Mutex<VecDeque<BoundEntry>>,
    /// The outlier buffer of the most recently recorded int8-activation forward.
    last_act: Mutex<Option<wgpu::Buffer>>,
}

impl std::fmt::Debug for QuantizedLinear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuantizedLinear")
            .field("weight", &self.weight)
            .field("bias", &self.bias.is_some())
            .field("dtype", &self.dtype)
            .finish_non_exhaustive()
    }
}

impl QuantizedLinear {
    /// Quantizes a float weight `[out, in]` on the GPU and builds the layer.
    ///
    /// `bias` (length `out`) is converted to the activation dtype.
    pub fn from_float<T: Element, B: Element>(
        gpu: &Gpu,
        weight: &[T],
        shape: [usize; 2],
        bias: Option<&[B]>,
        scheme: QuantScheme,
        activation: DType,
    ) -> Result<Self> {
        let w = gpu.quantize(weight, &shape, scheme)?;
        Self::from_gpu(w, bias, activation)
    }

    /// Builds the layer from existing int8 weights and scales (and zero points), like the
    /// course's `W8A16LinearLayer` buffers `int8_weights`, `scales` and `bias`.
    pub fn from_quantized<B: Element>(
        gpu: &Gpu,
        weight: &QuantizedTensor,
        bias: Option<&[B]>,
        activation: DType,
    ) -> Result<Self> {
        Self::from_gpu(GpuQuantizedTensor::from_host(gpu, weight)?, bias, activation)
    }

    /// Builds the layer from a weight already quantized on the GPU. The weight is taken by
    /// value: clone it to share one weight between layers (an f32 and a bf16 view of a model,
    /// say) without copying or quantizing it again ([`GpuQuantizedTensor`] is cheap to clone).
    /// For a bias already on the GPU, pass `None::<&[f32]>` and add it with
    /// [`QuantizedLinear::with_bias`].
    pub fn from_gpu<B: Element>(weight: GpuQuantizedTensor, bias: Option<&[B]>, activation: DType) -> Result<Self> {
        let gpu = weight.gpu().clone();
        let &[out, _] = weight.shape() else {
            return Err(Error::Shape(format!("a linear weight must be 2-D [out, in], found {:?}", weight.shape())));
        };
        let bias = match bias {
            None => None,
            Some(b) if b.len() != out => {
                return Err(Error::Shape(format!("bias has {} elements, out_features = {out}", b.len())));
            }
            Some(b) => {
                check_finite(b, &[out], "bias")?;
                let bias = match activation {
                    DType::F32 => upload_as::<B, f32>(&gpu, b)?,
                    DType::F16 => upload_as::<B, half::f16>(&gpu, b)?,
                    DType::BF16 => upload_as::<B, half::bf16>(&gpu, b)?,
                };
                Some(bias.into_parameter())
            }
        };
        let placeholder = gpu.zeroed_buffer("int8-wgpu no bias", 4)?;
        Ok(Self {
            gpu,
            weight,
            bias,
            placeholder,
            dtype: activation,
            act: None,
            plans: Mutex::default(),
            bound: Mutex::default(),
            last_act: Mutex::default(),
        })
    }

    /// Makes the layer quantize its activations to int8 at run time: W8A8 with
    /// [`ActivationQuant::per_token`], LLM.int8() with [`ActivationQuant::llm_int8`]. Inputs and
    /// outputs keep the activation dtype; see [`ActivationQuant`] for the arithmetic.
    ///
    /// The weight must be symmetric with one scale per output row (or per tensor), else an
    /// [`Error::Scheme`] says how to quantize it.
    pub fn with_activation_quant(mut self, act: ActivationQuant) -> Result<Self> {
        check_a8_weight_scheme(self.weight.scheme(), self.weight.shape())?;
        self.act = Some(act);
        self.plans = Mutex::default();
        self.bound = Mutex::default();
        *self.last_act.get_mut().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(self)
    }

    /// Makes `bias`, a tensor already on the GPU (a range of an application's arena, say),
    /// the layer's bias, replacing any it had. It must have shape `[out]` ([`Error::Shape`]),
    /// the activation dtype ([`Error::DType`]) and live on the layer's device
    /// ([`Error::WrongDevice`]); being a tensor, it has usage `STORAGE`. Its values are read as
    /// they are at each forward, unchecked (a NaN gives NaN outputs).
    ///
    /// Like the biases this crate uploads, it becomes a parameter: while it lives, no layer
    /// writes its range ([`Error::Aliasing`], see [`QuantizedLinear::record`]); the application
    /// may still write it, between forwards.
    pub fn with_bias(mut self, bias: GpuTensor) -> Result<Self> {
        bias.same_gpu(&self.gpu, "bias")?;
        let out = self.out_features();
        if bias.shape() != [out] {
            return Err(Error::Shape(format!("bias has shape {:?}, the layer needs [{out}]", bias.shape())));
        }
        if bias.dtype() != self.dtype {
            return Err(Error::DType { what: "bias".into(), expected: self.dtype, found: bias.dtype() });
        }
        self.bias = Some(bias.into_parameter());
        // Plans know whether there is a bias; bind groups which buffer.
        self.plans = Mutex::default();
        self.bound = Mutex::default();
        Ok(self)
    }

    /// How the layer quantizes its activations; `None` for weight-only layers.
    pub fn activation_quant(&self) -> Option<ActivationQuant> {
        self.act
    }

    /// The LLM.int8() outlier columns (ascending) of the most recently recorded forward: how many
    /// input features that batch computed in f32.
    ///
    /// Reads back from the GPU, so it waits for all submitted work: a diagnostic, not for the
    /// hot loop. Empty for plain W8A8, for weight-only layers and before the first forward. A
    /// forward recorded but not yet submitted reports the previous submission's columns.
    pub fn last_outlier_columns(&self) -> Result<Vec<usize>> {
        self.gpu.block_on(self.last_outlier_columns_async())
    }

    /// Async form of [`QuantizedLinear::last_outlier_columns`] (the one that runs in a browser).
    pub async fn last_outlier_columns_async(&self) -> Result<Vec<usize>> {
        let act = self.last_act.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match act {
            Some(buffer) => read_outlier_columns(&self.gpu, &buffer, self.in_features()).await,
            None => Ok(Vec::new()),
        }
    }

    /// `in` of the `[out, in]` weight.
    pub fn in_features(&self) -> usize {
        self.weight.shape()[1]
    }

    /// `out` of the `[out, in]` weight.
    pub fn out_features(&self) -> usize {
        self.weight.shape()[0]
    }

    /// The activation (and output) dtype.
    pub fn activation_dtype(&self) -> DType {
        self.dtype
    }

    /// The quantized weight.
    pub fn weight(&self) -> &GpuQuantizedTensor {
        &self.weight
    }

    /// The bias, in the activation dtype.
    pub fn bias(&self) -> Option<&GpuTensor> {
        self.bias.as_ref()
    }

    fn output_shape(&self, x: &GpuTensor) -> Result<(usize, Vec<usize>)> {
        if x.dtype() != self.dtype {
            return Err(Error::DType { what: "linear activation".into(), expected: self.dtype, found: x.dtype() });
        }
        let k = self.in_features();
        if x.shape().last() != Some(&k) {
            return Err(Error::Shape(format!("activation shape {:?} does not end in in_features = {k}", x.shape())));
        }
        let mut shape = x.shape().to_vec();
        *shape.last_mut().expect("non-empty") = self.out_features();
        Ok((x.numel() / k, shape))
    }

    /// Runs the layer on a GPU tensor `[..., in]`, returning `[..., out]` on the GPU.
    ///
    /// Work is submitted, not awaited: chain layers freely and read the last result back.
    ///
    /// Device-resident values are not checked: NaN or infinite activations, and results beyond
    /// the activation dtype's range (e.g. f16 activations near 65504), give non-finite outputs
    /// as IEEE arithmetic does. Checking would cost a full copy of `x` and `y` to the host and a
    /// wait for the GPU on every call, which is what [`QuantizedLinear::forward_host`] does.
    pub fn forward(&self, x: &GpuTensor) -> Result<GpuTensor> {
        let (_, shape) = self.output_shape(x)?;
        let y = GpuTensor::zeros(&self.gpu, &shape, self.dtype)?;
        self.forward_into(x, &y)?;
        Ok(y)
    }

    /// Like [`QuantizedLinear::forward`], writing into an existing tensor of the output shape.
    ///
    /// After the first call with the same rows and tensors, this creates no GPU objects: the
    /// plan, its parameters and its bind groups are kept (see [`QuantizedLinear::encode`]).
    pub fn forward_into(&self, x: &GpuTensor, y: &GpuTensor) -> Result<()> {
        self.gpu.validated("running the layer", || {
            let mut enc = self.gpu.device().create_command_encoder(&Default::default());
            self.encode(&mut enc, x, y)?;
            self.gpu.queue().submit([enc.finish()]);
            Ok(())
        })
    }

    /// Records the layer into an application's command encoder, as one compute pass of its
    /// own (see [`QuantizedLinear::record`]). Nothing is submitted, so a whole model can be one
    /// submission.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder, x: &GpuTensor, y: &GpuTensor) -> Result<()> {
        self.record(&mut encoder.begin_compute_pass(&Default::default()), x, y)
    }

    /// Records the layer into an application's compute pass: reads `x` (`[..., in]`), writes
    /// every element of `y` (`[..., out]`), both in the activation dtype and on this layer's
    /// device.
    ///
    /// `y` needs no clearing (16-bit outputs replace their half of each word, keeping the
    /// other). [`Error::Aliasing`] where `y` overlaps any layer's bias, or shares a buffer with
    /// `x` or this layer's bias even at disjoint ranges (wgpu binds a buffer either read-only or
    /// writable within one dispatch); `y` may share a buffer with other tensors, other layers'
    /// biases included. Within one pass, wgpu orders
    /// dispatches that write a buffer before those that read it, so layers chain in a pass.
    /// The dispatch plan and parameter buffers are made once per row count and kept for the
    /// layer's life; bind groups are kept for the last few (rows, `x`, `y`) combinations
    /// (keeping those buffers alive), so a loop over the same tensors creates no GPU object
    /// after its first pass ([`Gpu::resource_counts`] shows it).
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, x: &GpuTensor, y: &GpuTensor) -> Result<()> {
        let prepared = self.checked(x, y)?;
        if let Some(act) = prepared.act_buffer() {
            *self.last_act.lock().unwrap_or_else(|p| p.into_inner()) = Some(act.clone());
        }
        prepared.record(pass);
        Ok(())
    }

    /// Tunes the kernel choice of this layer's class at each of `rows` activation rows
    /// ([`Gpu::tune`]), then forgets the layer's plans so that its next forwards run the
    /// choices (other layers keep the plans they already made).
    pub fn tune(&self, rows: &[usize], options: &TuneOptions) -> Result<TuneReport> {
        self.gpu.block_on(self.tune_async(rows, options))
    }

    /// [`QuantizedLinear::tune`] without blocking, for a browser ([`Gpu::tune_async`]).
    pub async fn tune_async(&self, rows: &[usize], options: &TuneOptions) -> Result<TuneReport> {
        let case = TuneCase { weight: &self.weight, activation: self.dtype, rows, a8: self.act.is_some() };
        let report = self.gpu.tune_async(&[case], options).await?;
        self.plans.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.bound.lock().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(report)
    }

    /// Records one stage of an int8-activation layer's forward alone into `pass`, for
    /// profiling how a forward's time splits ([`Gpu::time_pass`] times it): the activation
    /// quantizer, or the matmul reading the int8 activations the last quantizer stage or forward
    /// on the same `x` and `y` wrote. Tensors as for [`QuantizedLinear::record`]. An
    /// [`Error::Unsupported`] for weight-only layers, whose forward is one stage.
    pub fn record_stage(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        x: &GpuTensor,
        y: &GpuTensor,
        stage: ForwardStage,
    ) -> Result<()> {
        if self.act.is_none() {
            return Err(Error::Unsupported(format!("recording the {stage:?} stage of a weight-only layer")));
        }
        let prepared = self.checked(x, y)?;
        match stage {
            ForwardStage::QuantizeActivations => prepared.record_act_quant(pass),
            ForwardStage::Matmul => prepared.record_matmul(pass),
        }
        Ok(())
    }

    /// Host convenience: uploads `x` (`shape = [..., in]`, dtype = the activation dtype), runs
    /// the layer and reads the `[..., out]` result back. NaN or infinite inputs are an
    /// [`Error::NonFinite`] naming the position; a non-finite result from finite inputs (beyond
    /// the dtype's range) is an [`Error::Overflow`] naming the output position.
    pub fn forward_host<T: Element>(&self, x: &[T], shape: &[usize]) -> Result<Vec<T>> {
        if T::DTYPE != self.dtype {
            return Err(Error::DType { what: "linear activation".into(), expected: self.dtype, found: T::DTYPE });
        }
        let numel = check_shape(shape, "activation")?;
        if numel != x.len() {
            return Err(Error::Shape(format!("activation has {} elements, shape {shape:?} needs {numel}", x.len())));
        }
        check_finite(x, shape, "activation")?;
        let xt = GpuTensor::from_host(&self.gpu, x, shape)?;
        let y = self.forward(&xt)?;
        let out = y.read()?;
        check_output(&out, &[x.len() / self.in_features(), self.out_features()])?;
        Ok(out)
    }
}

/// Converts the bias to the activation dtype; a finite value that does not fit it (1e30 in f16)
/// is an [`Error::Overflow`] rather than an infinite bias.
fn upload_as<B: Element, T: Element>(gpu: &Gpu, b: &[B]) -> Result<GpuTensor> {
    let v: Vec<T> = b.iter().map(|x| T::from_f32(x.to_f32())).collect();
    if let Some((index, _)) = crate::check::find_non_finite(&v) {
        return Err(Error::Overflow {
            what: format!("the bias value {:e} converted to {}", b[index].to_f32(), T::DTYPE),
            dtype: T::DTYPE,
            position: vec![index],
            index,
            value: v[index].to_f32(),
        });
    }
    GpuTensor::from_host(gpu, &v, &[v.len()])
}
