#!/usr/bin/env python3
"""The peer's speed on this machine: llama.cpp (llama-cpp-python) running SmolLM2-135M-Instruct
on its Vulkan backend (all layers, n_gpu_layers=-1) and on the CPU (n_gpu_layers=0), each with
the original Q4_1 file and with a Q8_0 file requantized from it: prefill tokens/s for a 128-token
prompt and decode tokens/s for 32 greedy tokens. Out of CI; the figures go to BENCHMARKS.md.

Usage (the model comes from scripts/fetch-smollm2.sh):

    apt-get install -y cmake g++ libvulkan-dev glslc   # Debian 12: newer llama-cpp-python needs newer Vulkan headers
    python3 -m venv /work/llamacpp-venv
    CMAKE_ARGS="-DGGML_VULKAN=on" /work/llamacpp-venv/bin/pip install llama-cpp-python==0.3.9
    XDG_RUNTIME_DIR=/tmp /work/llamacpp-venv/bin/python scripts/llama-cpp-bench.py [--rounds 3]

How it measures:
- The Q8_0 file is made once by `llama_cpp.llama_model_quantize` (requantization allowed) next
  to the Q4_1 file in ${INT8_WGPU_CACHE:-~/.cache/int8-wgpu}, never in the repository.
- Each configuration runs in its own child process, loaded once (n_ctx 256, n_batch 512,
  n_threads 2 for both the prompt and decode). The CPU children get GGML_VK_VISIBLE_DEVICES=""
  so that llama.cpp cannot offload the prompt's large matrix products to the Vulkan device.
- One warm-up round first (Vulkan compiles its pipelines on first use), not counted; then
  `--rounds` rounds, interleaved: every round runs each configuration once, in turn.
- A round: clear the KV cache, evaluate the 128-token prompt in one batch and read its logits
  (prefill), then 32 times pick the arg-max, evaluate that token and read its logits (decode).
  Times are wall clock around those calls, logits read included (it waits for the device).
- The table gives the median over the rounds with the range, the load average before and
  after, the Vulkan adapter as llama.cpp names it, and whether each configuration's 32 greedy
  tokens are the same in every round and equal those of the Vulkan run of the same weights.
"""

import argparse
import contextlib
import ctypes
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

MODEL_Q4_1 = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_Q8_0 = "SmolLM2-135M-Instruct.Q8_0.gguf"
PROMPT_TOKENS = 128
DECODE_TOKENS = 32
THREADS = 2

PROMPT_TEXT = (
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg "
    "combined movable metal type, oil-based ink and a wooden press adapted from those used for "
    "wine and olive oil. Books, which had been copied by hand for centuries, could now be made "
    "in hundreds of identical copies, and within fifty years presses were running in more than "
    "two hundred cities across Europe. Prices fell, literacy rose, and ideas travelled faster "
    "than any ruler could control. Scholars compared texts line by line, printers standardised "
    "spelling and grammar, and pamphlets carried news, science and religious arguments to "
    "readers who had never owned a book before. Historians still debate how much of the modern "
    "world grew from this single invention, but few doubt that it changed how knowledge spreads."
)


def cache_dir():
    return os.environ.get("INT8_WGPU_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "int8-wgpu")


@contextlib.contextmanager
def stderr_to(path):
    """Sends the C library's stderr (fd 2) to `path` for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "w") as f:
        os.dup2(f.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def make_q8_0(src, dst):
    """Requantizes `src` to Q8_0 at `dst` (atomically) unless it is there."""
    import llama_cpp

    if os.path.exists(dst):
        return
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    params.allow_requantize = True
    params.nthread = THREADS
    tmp = dst + ".tmp"
    if llama_cpp.llama_model_quantize(src.encode(), tmp.encode(), ctypes.byref(params)) != 0:
        sys.exit(f"error: llama_model_quantize failed for {src}")
    os.replace(tmp, dst)
    print(f"wrote {dst}", file=sys.stderr)


def worker(path, gpu_layers):
    """A child process: loads the model, then answers one JSON line per request on stdin."""
    import llama_cpp
    import numpy as np
    from llama_cpp import Llama

    log = tempfile.NamedTemporaryFile(prefix="llama-cpp-bench-", suffix=".log", delete=False).name
    try:
        with stderr_to(log):
            llm = Llama(path, n_gpu_layers=gpu_layers, n_ctx=256, n_batch=512, n_threads=THREADS,
                        n_threads_batch=THREADS, seed=0, verbose=True)
        adapter = None
        with open(log, errors="replace") as f:
            for line in f:
                if line.startswith("ggml_vulkan: 0 = "):
                    adapter = line[len("ggml_vulkan: 0 = "):].split(" | ")[0].strip()
    finally:
        os.unlink(log)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    ctx = llm._ctx.ctx
    prompt = llm.tokenize(PROMPT_TEXT.encode(), add_bos=False, special=False)
    if len(prompt) < PROMPT_TOKENS:
        sys.exit(f"error: the prompt text has {len(prompt)} tokens, fewer than {PROMPT_TOKENS}")
    prompt = prompt[:PROMPT_TOKENS]

    def argmax():
        return int(np.argmax(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))))

    print(json.dumps({"ready": True, "adapter": adapter}), flush=True)
    for _ in sys.stdin:
        llm.reset()  # the next eval drops the KV cache from position 0
        t0 = time.perf_counter()
        llm.eval(prompt)
        token = argmax()
        t1 = time.perf_counter()
        ids = []
        for _ in range(DECODE_TOKENS):
            ids.append(token)
            llm.eval([token])
            token = argmax()
        t2 = time.perf_counter()
        print(json.dumps({"prefill_s": t1 - t0, "decode_s": t2 - t1, "ids": ids}), flush=True)


class Child:
    def __init__(self, name, path, gpu_layers):
        env = dict(os.environ)
        if gpu_layers == 0:
            env["GGML_VK_VISIBLE_DEVICES"] = ""
        self.name, self.gpu_layers = name, gpu_layers
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", path, "--gpu-layers", str(gpu_layers)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.adapter = self.read()["adapter"]
        self.rounds = []

    def read(self):
        line = self.proc.stdout.readline()
        if not line:
            sys.exit(f"error: the {self.name} worker stopped (exit {self.proc.wait()})")
        return json.loads(line)

    def run(self):
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def fmt(values):
    med = statistics.median(values)
    return f"{med:.2f} ({min(values):.2f}–{max(values):.2f})" if len(values) > 1 else f"{med:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="measured rounds after the warm-up (default 3)")
    ap.add_argument("--model", help=f"the Q4_1 GGUF (default: the cache's {MODEL_Q4_1})")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--gpu-layers", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.gpu_layers)
    if args.rounds < 1:
        sys.exit("error: --rounds must be at least 1")

    import llama_cpp

    q4_1 = args.model or os.path.join(cache_dir(), MODEL_Q4_1)
    if not os.path.exists(q4_1):
        sys.exit(f"error: no {q4_1} (run scripts/fetch-smollm2.sh)")
    q8_0 = os.path.join(os.path.dirname(os.path.abspath(q4_1)), MODEL_Q8_0)
    make_q8_0(q4_1, q8_0)

    configs = [("Vulkan", "Q8_0", q8_0, -1), ("Vulkan", "Q4_1", q4_1, -1),
               ("CPU", "Q8_0", q8_0, 0), ("CPU", "Q4_1", q4_1, 0)]
    if not llama_cpp.llama_supports_gpu_offload():
        print("llama-cpp-python was built without GPU offload: CPU rows only", file=sys.stderr)
        configs = [c for c in configs if c[3] == 0]
    load_before = os.getloadavg()
    children = [Child(f"{backend} {weights}", path, layers) for backend, weights, path, layers in configs]
    for child in children:
        child.run()  # warm-up
    for r in range(args.rounds):
        for child in children:
            child.rounds.append(child.run())
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    load_after = os.getloadavg()
    for child in children:
        child.close()

    adapter = next((c.adapter for c in children if c.gpu_layers != 0 and c.adapter), "none")
    vulkan_ids = {weights: child.rounds[0]["ids"] for (backend, weights, _, _), child in zip(configs, children)
                  if backend == "Vulkan"}
    print(f"llama-cpp-python {llama_cpp.__version__}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; Vulkan adapter: {adapter}")
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}; "
          f"{PROMPT_TOKENS}-token prompt, {DECODE_TOKENS} greedy tokens, {THREADS} threads, "
          f"median (range) of {args.rounds} rounds after a warm-up\n")
    print("| llama.cpp | weights | prefill tokens/s | decode tokens/s | greedy tokens = Vulkan's, same weights |")
    print("|---|---|---|---|---|")
    for (backend, weights, _, layers), child in zip(configs, children):
        prefill = [PROMPT_TOKENS / r["prefill_s"] for r in child.rounds]
        decode = [DECODE_TOKENS / r["decode_s"] for r in child.rounds]
        reference = vulkan_ids.get(weights, child.rounds[0]["ids"])
        same = all(r["ids"] == reference for r in child.rounds)
        where = f"{backend} (n_gpu_layers={layers})"
        print(f"| {where} | {weights} | {fmt(prefill)} | {fmt(decode)} | {'yes' if same else 'no'} |")


if __name__ == "__main__":
    main()
