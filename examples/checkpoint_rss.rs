//! How much host memory a checkpoint costs once its layers are on the GPU: opens a quantized
//! checkpoint, loads every quantized layer with `Checkpoint::linear` and keeps the layers, and
//! prints the process's resident memory (from `/proc/self/status`, Linux only) at each step.
//!
//! ```text
//! int8-wgpu quantize ~/.cache/int8-wgpu/all-MiniLM-L6-v2 /tmp/minilm-int8
//! cargo run --release --example checkpoint_rss -- /tmp/minilm-int8
//! ```
//!
//! `VmRSS` is what is resident now, `VmHWM` its peak; `RssAnon` is the process's own memory
//! (heap; on a software adapter such as lavapipe also the "GPU" buffers), `RssFile` file pages
//! mapped into it. A measurement, not a test: nothing is asserted.

use int8_wgpu::Gpu;
use int8_wgpu::checkpoint::Checkpoint;

fn status(step: &str) {
    let Ok(s) = std::fs::read_to_string("/proc/self/status") else {
        println!("{step}: /proc/self/status is not readable here");
        return;
    };
    let field = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().trim_end_matches(" kB").trim().to_string()))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or("-".to_string(), |kb| format!("{:.1} MB", kb / 1024.0))
    };
    println!("| {step} | {} | {} | {} | {} |", field("VmRSS:"), field("VmHWM:"), field("RssAnon:"), field("RssFile:"));
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: checkpoint_rss <quantized checkpoint>")?;
    println!("| step | VmRSS | VmHWM | RssAnon | RssFile |\n|---|---|---|---|---|");
    status("start");
    let gpu = Gpu::new()?;
    status("GPU opened");
    let ckpt = Checkpoint::open(&path)?;
    status("checkpoint opened (headers)");
    let names = ckpt.quantized_layers();
    let layers = names.iter().map(|n| ckpt.linear(&gpu, n)).collect::<Result<Vec<_>, _>>()?;
    gpu.synchronize()?;
    status(&format!("{} layers loaded, checkpoint kept", layers.len()));
    drop(ckpt);
    status("checkpoint dropped, layers kept");
    drop(layers);
    status("layers dropped");
    Ok(())
}
