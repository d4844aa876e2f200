#!/usr/bin/env bash
# The semantic-search page (examples/web/) in one command:
#   bash scripts/web-page.sh          # build it and serve it at http://127.0.0.1:${PORT:-8000}/
#   bash scripts/web-page.sh --test   # build it and drive it in headless Chromium (scripts/web-page-test.py)
# Steps: the real all-MiniLM-L6-v2 (scripts/fetch-minilm.sh) quantized to int8 by the CLI
# (`int8-wgpu quantize`, compressed-tensors) into the served folder target/web-page/site/model/
# (never committed); the wasm module built and bound with `wasm-bindgen --target web`; the
# page's files beside it, with info.json giving the f32 model's size. Needs the wasm32 target and
# wasm-bindgen-cli of the wasm-bindgen version in Cargo.lock; --test also needs chromium and
# chromium-driver (.ci/run installs all of them).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=serve
case "${1:-}" in
  "") ;;
  --test) mode=test ;;
  *) echo "usage: bash scripts/web-page.sh [--test]" >&2; exit 2 ;;
esac
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
site=target/web-page/site
f32="${INT8_WGPU_CACHE:-$HOME/.cache/int8-wgpu}/all-MiniLM-L6-v2"

wasm_bindgen=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print }' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $wasm_bindgen" ]; then
  echo "error: needs wasm-bindgen $wasm_bindgen (cargo install wasm-bindgen-cli --version $wasm_bindgen)" >&2
  exit 1
fi

bash scripts/fetch-minilm.sh
echo "=== the int8 checkpoint (int8-wgpu quantize)"
mkdir -p "$site"
cargo run --release -q -p int8-wgpu-cli -- quantize "$f32" "$site/model" --force | tail -n 4
printf '{"f32_bytes": %s}\n' "$(stat -c %s "$f32/model.safetensors")" > "$site/info.json"
echo "$site/model/model.safetensors: $(stat -c %s "$site/model/model.safetensors") bytes (f32: $(stat -c %s "$f32/model.safetensors"))"

echo "=== the page (wasm32 + wasm-bindgen)"
cargo build --release -p int8-wgpu-web-example --target wasm32-unknown-unknown
wasm-bindgen --target web --no-typescript --out-dir "$site/pkg" \
  target/wasm32-unknown-unknown/release/int8_wgpu_web_example.wasm
cp examples/web/index.html examples/web/main.js "$site/"

if [ "$mode" = test ]; then
  exec python3 scripts/web-page-test.py --site "$site" --model "$f32"
fi
port="${PORT:-8000}"
echo "serving $site at http://127.0.0.1:$port/ (Chromium: WebGPU; on Linux start it with --enable-unsafe-webgpu)"
exec python3 -m http.server "$port" --bind 127.0.0.1 --directory "$site"
