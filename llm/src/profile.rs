//! Where one pass's GPU time goes: its dispatches grouped by kernel, each group recorded alone
//! into one timed pass, beside the whole pass recorded the same way.

use std::time::Duration;

use int8_wgpu::Gpu;
use int8_wgpu::gpu::TimingSource;

use crate::Result;
use crate::forward::{Plan, Step, record_step};

/// The GPU time of one kernel's dispatches in a pass.
#[derive(Clone, Debug)]
pub struct KernelTime {
    /// The kernel: an app kernel's entry point (`attention`, `rms_norm`, …) or a linear layer
    /// with its shape (`int8 [1536, 576]`).
    pub kernel: String,
    /// Its dispatches in the pass.
    pub dispatches: usize,
    /// Their time per pass.
    pub time: Duration,
}

/// One pass, profiled.
#[derive(Clone, Debug)]
pub struct Profile {
    /// Per kernel, in the order of first use.
    pub kernels: Vec<KernelTime>,
    /// The whole pass (the blocks and the output projection) recorded as one pass.
    pub whole: Duration,
    /// How the whole pass was timed (GPU timestamps where the adapter has them).
    pub source: TimingSource,
}

impl Plan {
    /// Times each kernel's dispatches alone, `iters` repetitions in one pass each, and the whole
    /// pass. Alone, a group reads what the last pass left in its buffers: the same work.
    pub(crate) fn profile(&self, gpu: &Gpu, iters: u32) -> Result<Profile> {
        let labels = self.labels.iter().map(String::as_str);
        let steps: Vec<(&str, &Step)> =
            labels.zip(&self.blocks).chain([(self.head_label.as_str(), &self.head)]).collect();
        let mut names: Vec<&str> = Vec::new();
        for (label, _) in &steps {
            if !names.contains(label) {
                names.push(label);
            }
        }
        let mut kernels = Vec::new();
        for name in names {
            let group: Vec<&Step> = steps.iter().filter(|(l, _)| *l == name).map(|(_, s)| *s).collect();
            let t = gpu.time_pass(iters, |pass| group.iter().try_for_each(|s| record_step(pass, s)))?;
            kernels.push(KernelTime { kernel: name.to_string(), dispatches: group.len(), time: t.per_iter });
        }
        let whole = gpu.time_pass(iters, |pass| steps.iter().try_for_each(|(_, s)| record_step(pass, s)))?;
        Ok(Profile { kernels, whole: whole.per_iter, source: whole.source })
    }
}
