#!/usr/bin/env bash
# Packs what a session runs on a lent GPU machine, which has no Rust toolchain: the release
# GPU test binaries, the bench_table example and the criterion bench, built here (x86-64) into
# .device/bundle.tar.xz. `.device/` and `.gl/` are ignored by git (.gitignore).
#
# Here, once per session:
#   scripts/device-bundle.sh
#   # the Vulkan loader, per the device tool's README:
#   mkdir -p .gl /tmp/amd64/partial; o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
#   apt-get $o update; (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
# There, one `run` with carry [".device", ".gl"] and the command:
#   bash scripts/device-run.sh            # GPU tests, then the full bench table, into $OUT
# or `bash scripts/device-run.sh tests`, `... bench` or `... quantize` for a part (each run is
# limited to 10 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .device
mkdir -p .device/bundle

# Every executable cargo builds for the GPU tests (lib unit tests included; the yardsticks' own
# tests, gpu_bench, are in the bench package), the bench table and the criterion bench (package
# int8-wgpu-bench), located from cargo's JSON messages.
{
  cargo test --release -p int8-wgpu -p int8-wgpu-bench --no-run --message-format=json
  cargo build --release -p int8-wgpu-bench --example bench_table --bench kernels --message-format=json
} 2>/dev/null | python3 -c '
import json, shutil, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    exe = m.get("executable")
    name = m.get("target", {}).get("name", "")
    # the lib unit tests (named after the crate), the GPU test files, the benches
    if not exe or not (name in ("int8_wgpu", "bench_table", "kernels") or name.startswith("gpu_")):
        continue
    shutil.copy(exe, ".device/bundle/" + name)
    print("bundled", name, file=sys.stderr)
'

tar -cJf .device/bundle.tar.xz -C .device bundle
rm -rf .device/bundle
du -sh .device/bundle.tar.xz
