//! What kernel choice reads of a device and of a weight: small facts, so that the table, the
//! choice and the guard are plain functions of them.

use crate::gpu::{Gpu, GpuQuantizedTensor};

/// What kernel choice knows of a device: its facts and the overrides it was opened with.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DeviceFacts {
    /// A CPU adapter (lavapipe, llvmpipe, WARP, SwiftShader): few workgroups at a time, and on
    /// llvmpipe the loop limit.
    pub(crate) cpu: bool,
    /// The lane-group GEMV reduces with subgroup operations.
    pub(crate) subgroups: bool,
    /// Int8 products by `dot4I8Packed` (else from sign-extended bytes; the same bits).
    pub(crate) packed_dot: bool,
    /// [`GpuOptions::gemm_min_rows`](crate::GpuOptions::gemm_min_rows).
    pub(crate) gemm_min_rows: Option<usize>,
    /// [`GpuOptions::gemv_rows_per_group`](crate::GpuOptions::gemv_rows_per_group).
    pub(crate) gemv_rows_per_group: Option<u8>,
    /// [`GpuOptions::gemv_rows_per_thread`](crate::GpuOptions::gemv_rows_per_thread).
    pub(crate) gemv_rows_per_thread: Option<bool>,
}

impl DeviceFacts {
    pub(crate) fn of(gpu: &Gpu) -> Self {
        DeviceFacts {
            cpu: gpu.is_cpu_adapter(),
            subgroups: gpu.uses_subgroup_reductions(),
            packed_dot: gpu.uses_packed_dot(),
            gemm_min_rows: gpu.gemm_min_rows(),
            gemv_rows_per_group: gpu.gemv_rows_per_group(),
            gemv_rows_per_thread: gpu.gemv_rows_per_thread(),
        }
    }

    /// Whether an option names the float GEMV kernel.
    pub(crate) fn gemv_options(&self) -> bool {
        self.gemv_rows_per_thread.is_some() || self.gemv_rows_per_group.is_some()
    }
}

/// What kernel choice reads of a weight `[n, k]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WeightFacts {
    /// Output rows.
    pub(crate) n: usize,
    /// Input features.
    pub(crate) k: usize,
    /// Elements along a row that share a scale (`k` or more: one scale per row or tensor).
    pub(crate) inner: usize,
    /// The scheme has zero points.
    pub(crate) zero_point: bool,
}

impl WeightFacts {
    pub(crate) fn of(w: &GpuQuantizedTensor) -> Self {
        WeightFacts {
            n: w.shape()[0],
            k: w.shape()[1],
            inner: w.layout().inner,
            zero_point: w.scheme().has_zero_point(),
        }
    }
}
