#!/usr/bin/env bash
# The browser bench: the same cases (bench/examples/web_bench/round.rs: W8A32 f32, W8A16 bf16
# and W8A8 bf16 layers as the library picks their kernels, at [1536, 384] and [4096, 4096] with
# 1 and 8 rows, and GPU quantization per channel) natively (WGPU_BACKEND, lavapipe here) and in
# headless Chromium on WebGPU (SwiftShader), in interleaved rounds (native, browser, native,
# browser, ...) since both share the CPU; then one markdown table of the medians, with the
# adapters, the commit and the load average at start and end. Needs what scripts/web-test.sh
# needs. WEB_BENCH_ROUNDS sets the rounds (default 5); the rounds' lines are kept in
# target/web-bench.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
rounds="${WEB_BENCH_ROUNDS:-5}"
out=target/web-bench.txt
cargo build --release -q -p int8-wgpu-bench --example web_bench
bash scripts/web-test.sh -q --no-run
echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (modified)')"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$out"
for r in $(seq "$rounds"); do
    echo "round $r of $rounds" >&2
    target/release/examples/web_bench round >>"$out"
    bash scripts/web-test.sh --test browser -- --include-ignored --nocapture web_bench_round >>"$out" 2>&1
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
target/release/examples/web_bench table "$out"
