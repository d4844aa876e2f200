#!/usr/bin/env python3
"""A synthetic Llama-shaped bf16 checkpoint, and int8-wgpu against llmcompressor on it.

    scripts/synthetic-llama.py build [DIR]     writes the checkpoint (default below)
    scripts/synthetic-llama.py compare [DIR] [--gpu] [--rounds=N]
        times `int8-wgpu quantize --cpu --group-size 128` on it (and on the GPU with --gpu),
        with and without --eval-rows 0, and llmcompressor's data-free W8A16 when it is
        installed; N rounds (3), each running every configuration in turn; best and median wall
        time, peak RSS; then how the two outputs' scales and ints differ

The job is the same on both sides: llmcompressor's `W8A16` preset (compressed-tensors'
`_int_wnam(8)`) is symmetric int8 in groups of 128 inputs, so int8-wgpu runs `--group-size 128`
(its default is one scale per output row). The two still differ by design: int8-wgpu's scale is
absmax / 127 in f32, rounded to the checkpoint's bf16 to nearest even; compressed-tensors'
is absmax / 127.5, computed in the weight's dtype.

The checkpoint is built here, from a fixed seed, with no download: 18 decoder layers of hidden
size 1536 (12 heads, 4 KV heads of 128), MLP 4096, vocabulary 28000, an untied lm_head; 539 M
parameters, 1.08 GB of bf16 in 3 shards with model.safetensors.index.json and a config.json
that transformers reads as LlamaForCausalLM. Needs numpy only; `compare` uses GNU time
(/usr/bin/time -v) for wall time and peak RSS, and the release binary (cargo build --release;
another one with INT8_WGPU_EXE=path).

The default folder is ~/.cache/int8-wgpu/synthetic-llama-540m, outside the repository.
"""

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

HIDDEN, INTER, LAYERS, VOCAB, HEADS, KV_HEADS = 1536, 4096, 18, 28000, 12, 4
HEAD_DIM = HIDDEN // HEADS
SHARDS = 3
DEFAULT_DIR = os.path.expanduser("~/.cache/int8-wgpu/synthetic-llama-540m")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tensors():
    """(name, shape, std) of every tensor, in the order transformers lists them."""
    yield "model.embed_tokens.weight", (VOCAB, HIDDEN), 0.02
    for i in range(LAYERS):
        p = f"model.layers.{i}"
        yield f"{p}.input_layernorm.weight", (HIDDEN,), None
        yield f"{p}.self_attn.q_proj.weight", (HEADS * HEAD_DIM, HIDDEN), 0.02
        yield f"{p}.self_attn.k_proj.weight", (KV_HEADS * HEAD_DIM, HIDDEN), 0.02
        yield f"{p}.self_attn.v_proj.weight", (KV_HEADS * HEAD_DIM, HIDDEN), 0.02
        yield f"{p}.self_attn.o_proj.weight", (HIDDEN, HEADS * HEAD_DIM), 0.02
        yield f"{p}.post_attention_layernorm.weight", (HIDDEN,), None
        yield f"{p}.mlp.gate_proj.weight", (INTER, HIDDEN), 0.02
        yield f"{p}.mlp.up_proj.weight", (INTER, HIDDEN), 0.02
        yield f"{p}.mlp.down_proj.weight", (HIDDEN, INTER), 0.02
    yield "model.norm.weight", (HIDDEN,), None
    yield "lm_head.weight", (VOCAB, HIDDEN), 0.02


def bf16_bytes(x):
    """float32 array -> bf16 little-endian bytes, rounded to nearest even."""
    u = x.astype(np.float32).view(np.uint32)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype("<u2").tobytes()


def write_shard(path, entries, rng):
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, _ in entries:
        n = 2 * int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for name, shape, std in entries:
            if std is None:
                x = np.ones(shape, np.float32)
            else:
                x = rng.standard_normal(shape, dtype=np.float32) * std
            f.write(bf16_bytes(x))
    return offset


def build(folder):
    if os.path.exists(os.path.join(folder, "config.json")):
        print(f"{folder} exists; remove it to rebuild")
        return
    entries = list(tensors())
    total = sum(int(np.prod(s)) for _, s, _ in entries)
    tmp = tempfile.mkdtemp(prefix=".synthetic-", dir=os.path.dirname(folder) or ".")
    # Contiguous shards of about equal bytes, in listing order.
    target, shards, cur, size = 2 * total / SHARDS, [], [], 0
    for e in entries:
        cur.append(e)
        size += 2 * int(np.prod(e[1]))
        if size >= target * (len(shards) + 1) and len(shards) < SHARDS - 1:
            shards.append(cur)
            cur = []
    shards.append(cur)
    rng = np.random.default_rng(540)
    weight_map, nbytes = {}, 0
    for i, s in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        nbytes += write_shard(os.path.join(tmp, name), s, rng)
        weight_map.update({t: name for t, _, _ in s})
    with open(os.path.join(tmp, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": nbytes}, "weight_map": weight_map}, f, indent=2)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": HIDDEN,
        "intermediate_size": INTER,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": HEAD_DIM,
        "vocab_size": VOCAB,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    os.rename(tmp, folder)
    print(f"{folder}: {total / 1e6:.1f} M parameters, {nbytes / 1e9:.2f} GB in {len(shards)} shards")


def timed(cmd):
    """Runs cmd under GNU time; returns (wall seconds, peak RSS GB)."""
    r = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    wall = rss = None
    for line in r.stderr.splitlines():
        line = line.strip()
        if line.startswith("Elapsed (wall clock) time"):
            t = line.rsplit(" ", 1)[1].split(":")
            wall = sum(float(v) * 60 ** i for i, v in enumerate(reversed(t)))
        if line.startswith("Maximum resident set size"):
            rss = int(line.rsplit(" ", 1)[1]) / 1e6
    return wall, rss


def read_safetensors(folder):
    """{name: (dtype, shape, bytes)} over every .safetensors file of a folder (numpy only)."""
    out = {}
    for fname in sorted(os.listdir(folder)):
        if not fname.endswith(".safetensors"):
            continue
        with open(os.path.join(folder, fname), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
            data = f.read()
        for name, t in header.items():
            if name != "__metadata__":
                a, b = t["data_offsets"]
                out[name] = (t["dtype"], t["shape"], data[a:b])
    return out


def layer_ints(tensors, prefix):
    """The int8 weight of layer `prefix`: from `weight_packed` (I32 words of four offset-binary
    bytes, element 4i+j in byte j) or a plain I8 `weight`."""
    if prefix + ".weight_packed" in tensors:
        raw = tensors[prefix + ".weight_packed"][2]
        out, inp = (int(v) for v in np.frombuffer(tensors[prefix + ".weight_shape"][2], "<i8"))
        return (np.frombuffer(raw, np.uint8).astype(np.int16) - 128).reshape(out, -1)[:, :inp].astype(np.int8)
    dtype, shape, raw = tensors[prefix + ".weight"]
    if dtype != "I8":
        sys.exit(f"{prefix}.weight is {dtype}, not a quantized layer")
    return np.frombuffer(raw, np.int8).reshape(shape)


def compare_outputs(ours_dir, theirs_dir):
    """How two W8A16 outputs of the same job differ: bf16 scales in ulps (bit patterns of
    positive bf16 values are ordered, so their difference counts ulps) and ints."""
    ours, theirs = read_safetensors(ours_dir), read_safetensors(theirs_dir)
    layers = sorted(n[: -len(".weight_scale")] for n in ours if n.endswith(".weight_scale"))
    ulps, ints, groups, values, theirs_below = {}, {}, 0, 0, 0
    for p in layers:
        if p + ".weight_scale" not in theirs:
            sys.exit(f"llmcompressor's output has no {p}.weight_scale")
        a, b = (np.frombuffer(t[p + ".weight_scale"][2], "<u2").astype(np.int32) for t in (ours, theirs))
        if ours[p + ".weight_scale"][0] != "BF16" or theirs[p + ".weight_scale"][0] != "BF16" or a.shape != b.shape:
            sys.exit(f"{p}: scales are not both bf16 of one shape")
        for d, c in zip(*np.unique(b - a, return_counts=True)):
            ulps[int(d)] = ulps.get(int(d), 0) + int(c)
        theirs_below += int((b < a).sum())
        groups += a.size
        qa, qb = layer_ints(ours, p), layer_ints(theirs, p)
        for d, c in zip(*np.unique(qb.astype(np.int16) - qa.astype(np.int16), return_counts=True)):
            ints[int(d)] = ints.get(int(d), 0) + int(c)
        values += qa.size
    print(f"Outputs compared over {len(layers)} layers, {groups} scale groups, {values} ints:")
    print("  bf16 scale, llmcompressor's minus int8-wgpu's, in ulps: "
          + ", ".join(f"{d:+d}: {100 * c / groups:.2f} %" for d, c in sorted(ulps.items()))
          + f" (llmcompressor's below in {100 * theirs_below / groups:.2f} % of groups)")
    print("  ints, llmcompressor's minus int8-wgpu's: "
          + ", ".join(f"{d:+d}: {100 * c / values:.3f} %" for d, c in sorted(ints.items())))


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


LLMCOMPRESSOR = """
import sys, torch
from transformers import AutoModelForCausalLM
from llmcompressor import oneshot
from llmcompressor.modifiers.quantization import QuantizationModifier
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], torch_dtype=torch.bfloat16)
oneshot(model=model, recipe=QuantizationModifier(targets="Linear", scheme="W8A16", ignore=["lm_head"]))
model.save_pretrained(sys.argv[2], save_compressed=True)
"""


def compare(folder, gpu, rounds):
    """Each round runs every configuration once, in turn, so that a busy spell of a shared
    machine does not fall on one of them only; reports the best and the median of the rounds.
    int8-wgpu's time includes syncing its files to disk; llmcompressor's save does not sync."""
    build(folder)
    exe = os.environ.get("INT8_WGPU_EXE") or os.path.join(REPO, "target", "release", "int8-wgpu")
    if not os.path.exists(exe):
        sys.exit(f"{exe} is missing: run `cargo build --release` first")
    try:
        import llmcompressor  # noqa: F401
    except ImportError:
        llmcompressor = None
        print("llmcompressor is not installed: int8-wgpu alone")
    out = tempfile.mkdtemp(prefix="int8-wgpu-compare-")
    script = os.path.join(out, "llmc.py")
    with open(script, "w") as f:
        f.write(LLMCOMPRESSOR)
    runs = {}
    # llmcompressor's W8A16 job: symmetric, groups of 128.
    job = ["--group-size", "128"]
    for b in [["--cpu"]] + ([["--gpu"]] if gpu else []):
        for extra in [[], ["--eval-rows", "0"]]:
            label = " ".join(["int8-wgpu quantize"] + b + job + extra)
            runs[label] = [exe, "quantize", folder, os.path.join(out, "q")] + b + job + extra
    outputs = {label: os.path.join(out, "q") for label in runs}
    if llmcompressor:
        runs["llmcompressor W8A16 oneshot + save_pretrained"] = [sys.executable, script, folder, os.path.join(out, "llmc")]
        outputs["llmcompressor W8A16 oneshot + save_pretrained"] = os.path.join(out, "llmc")
    try:
        print(f"load average before: {loadavg()}", flush=True)
        results = {label: [] for label in runs}
        for _ in range(rounds):
            for label, cmd in runs.items():
                # Each run starts alike: no output of its own to replace, no other run's writes
                # pending. The last outputs of each side stay, to be compared below.
                shutil.rmtree(outputs[label], ignore_errors=True)
                os.sync()
                results[label].append(timed(cmd))
        print(f"load average after: {loadavg()}")
        print(f"| run ({rounds} rounds) | wall best | wall median | peak RSS max |\n|---|---|---|---|")
        for label, r in results.items():
            walls = sorted(w for w, _ in r)
            print(f"| {label} | {walls[0]:.2f} s | {walls[len(walls) // 2]:.2f} s | {max(m for _, m in r):.2f} GB |")
        if llmcompressor:
            ours = sorted(w for w, _ in results["int8-wgpu quantize --cpu --group-size 128 --eval-rows 0"])
            theirs = sorted(w for w, _ in results["llmcompressor W8A16 oneshot + save_pretrained"])
            print(f"llmcompressor / int8-wgpu --cpu --group-size 128 --eval-rows 0: {theirs[0] / ours[0]:.1f}x (best), "
                  f"{theirs[len(theirs) // 2] / ours[len(ours) // 2]:.1f}x (median)")
            # What llmcompressor wrote, read back by int8-wgpu.
            r = subprocess.run([exe, "inspect", os.path.join(out, "llmc")], capture_output=True, text=True)
            lines = [l for l in r.stdout.splitlines() if "quantized linear layers" in l]
            print(f"llmcompressor's output, by int8-wgpu inspect: {lines[0] if lines else r.stderr.strip()}")
            compare_outputs(os.path.join(out, "q"), os.path.join(out, "llmc"))
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if not args or args[0] not in ("build", "compare"):
        sys.exit(__doc__)
    folder = os.path.abspath(args[1]) if len(args) > 1 else DEFAULT_DIR
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    if args[0] == "build":
        build(folder)
    else:
        rounds = next((int(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--rounds=")), 3)
        compare(folder, "--gpu" in sys.argv, rounds)
