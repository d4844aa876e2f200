#!/usr/bin/env bash
# SmolLM2-135M decode and prefill speed: int8-wgpu (bench/examples/llm_speed.rs: W8A16, W8A32,
# dense f32 on the GPU) beside llama.cpp (scripts/llama-cpp-bench.py: Vulkan and CPU, Q8_0 and
# Q4_1), interleaved: each of ROUNDS rounds runs one round of ours, then one of llama.cpp's; the
# summary gives each figure's median (min-max) over the rounds. Out of CI (llama.cpp is built
# by hand, see scripts/llama-cpp-bench.py); the figures go to BENCHMARKS.md.
#
#   LLAMA_PY=/path/to/venv/bin/python ROUNDS=3 bash scripts/llm-speed.sh
#
# INT8_LLM_MODES, INT8_LLM_PROMPT, INT8_LLM_DECODE pass through to llm_speed.
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
rounds="${ROUNDS:-3}"
py="${LLAMA_PY:-python3}"
log="$(mktemp -d)"
trap 'rm -rf "$log"' EXIT

cargo build --release -q -p int8-wgpu-bench --example llm_speed
echo "commit $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (modified)'), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$rounds"); do
  INT8_LLM_ROUNDS=1 target/release/examples/llm_speed >"$log/ours.$r" 2>&1 || { cat "$log/ours.$r"; exit 1; }
  "$py" scripts/llama-cpp-bench.py --rounds 1 >"$log/peer.$r" 2>"$log/peer.$r.err" || { cat "$log/peer.$r.err"; exit 1; }
  echo "round $r/$rounds done, load $(cut -d' ' -f1 /proc/loadavg)" >&2
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
grep -m1 '^adapter' "$log/ours.1"
grep -m1 '^read limit' "$log/ours.1" | sed 's/^/first round /'
grep -m1 '^llama-cpp-python' "$log/peer.1"

# Each table row's numbers: median (min-max) over the rounds, keyed by the row's text cells.
python3 - "$log" "$rounds" <<'EOF'
import re, statistics, sys
log, rounds = sys.argv[1], int(sys.argv[2])
num = re.compile(r"^-?\d+(\.\d+)?$")
for who in ("ours", "peer"):
    tables, order = {}, []
    for r in range(1, rounds + 1):
        header = None
        for line in open(f"{log}/{who}.{r}"):
            if not line.startswith("|"):
                header = None
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = tuple(cells)
                if header not in tables:
                    tables[header] = {}
                    order.append(header)
                continue
            if set(cells[0]) <= set("-"):
                continue
            key = tuple(c for c in cells if not num.match(c.split(";")[0].split(" ")[0]))
            row = tables[header].setdefault(key, [])
            row.append(cells)
    for header in order:
        print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
        for key, runs in tables[header].items():
            out = []
            for i, cell in enumerate(runs[0]):
                values = [r[i] for r in runs]
                parts = [v.split(";") for v in values]
                if all(num.match(p[0].strip().split(" ")[0]) for p in parts):
                    cols = []
                    for j in range(len(parts[0])):
                        xs = [float(p[j].strip().split(" ")[0]) for p in parts if j < len(p)]
                        m = statistics.median(xs)
                        cols.append(f"{m:.2f} ({min(xs):.2f}-{max(xs):.2f})" if len(xs) > 1 else f"{m:.2f}")
                    out.append("; ".join(cols))
                else:
                    out.append(cell)
            print("| " + " | ".join(out) + " |")
EOF
