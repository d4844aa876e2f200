#!/usr/bin/env bash
# Runs on a lent GPU machine, from the repository root, after scripts/device-bundle.sh ran
# here (see its header). Results go to $OUT: gpu.txt, tests.txt, bench.md, quantize.md.
# Argument: all (default), tests, bench (linear and quantize) or quantize.
set -uo pipefail
what="${1:-all}"
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
mkdir -p /tmp/int8 && tar -xJf .device/bundle.tar.xz -C /tmp/int8
cd /tmp/int8/bundle
export WGPU_BACKEND=vulkan RUST_BACKTRACE=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
if [ "$what" = all ] || [ "$what" = tests ]; then
  # The MiniLM test needs the checkpoint cache, which does not travel: skipped here.
  for t in int8_wgpu gpu_quantize gpu_linear gpu_chunking gpu_errors gpu_course gpu_bench; do
    echo "=== $t"
    CI=true ./"$t" 2>&1 | tail -n 25
  done | tee "$OUT/tests.txt"
fi
# The single-threaded CPU reference takes minutes per call above 32 rows of the big shapes.
if [ "$what" = all ] || [ "$what" = bench ]; then
  INT8_BENCH=full INT8_BENCH_CPU_ROWS=32 INT8_BENCH_ONLY=linear ./bench_table 2>&1 | tee "$OUT/bench.md"
fi
if [ "$what" = all ] || [ "$what" = bench ] || [ "$what" = quantize ]; then
  INT8_BENCH=full INT8_BENCH_ONLY=quantize ./bench_table 2>&1 | tee "$OUT/quantize.md"
fi
