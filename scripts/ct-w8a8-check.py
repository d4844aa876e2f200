#!/usr/bin/env python3
"""How transformers + compressed-tensors run a W8A8 checkpoint of MiniLM (`int8-wgpu quantize
--method w8a8`), with and without `CompressedTensorsConfig(dequantize=True)`.

    scripts/ct-w8a8-check.py DIR

Loads DIR both ways, runs two sentences, and compares the first layer's query projection output
with the same float-dequantized weight applied to (a) the float input, (b) the input quantized
per token with scale absmax / 127 (this crate's rule) and (c) with absmax / 127.5
(compressed-tensors' rule). A mode whose output equals (a) ran weight-only. Needs torch,
transformers and compressed-tensors (llmcompressor installs all three); reads nothing outside DIR.
"""

import sys

import torch
import compressed_tensors
import transformers
from transformers import AutoModel, AutoTokenizer, CompressedTensorsConfig


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def fake_quant(x, div):
    """Per-token (last axis) symmetric int8 quantization and back, scale absmax / div."""
    s = x.abs().amax(dim=-1, keepdim=True) / div
    return torch.clamp(torch.round(x / s), -128, 127) * s


def main(path):
    print(f"transformers {transformers.__version__}, compressed-tensors {compressed_tensors.__version__}")
    tok = AutoTokenizer.from_pretrained(path)
    batch = tok(["A man is playing a guitar.", "The weather is lovely today, isn't it?"], padding=True,
                return_tensors="pt")
    runs = {}
    for dequantize in (False, True):
        kw = {"quantization_config": CompressedTensorsConfig(dequantize=True)} if dequantize else {}
        model = AutoModel.from_pretrained(path, **kw).eval()
        lin = model.encoder.layer[0].attention.self.query
        cap = {}
        hook = lin.register_forward_hook(lambda m, i, o: cap.update(x=i[0].detach().clone(), y=o.detach().clone()))
        with torch.no_grad():
            model(**batch)
        hook.remove()
        runs[dequantize] = (cap, lin.weight.detach().float(), lin.bias.detach())
    (cap, w, b) = runs[True]
    x = cap["x"]
    ref = {
        "float input (weight-only)": torch.nn.functional.linear(x, w, b),
        "input per token, absmax / 127": torch.nn.functional.linear(fake_quant(x, 127.0), w, b),
        "input per token, absmax / 127.5": torch.nn.functional.linear(fake_quant(x, 127.5), w, b),
    }
    for dequantize, (c, _, _) in runs.items():
        print(f"dequantize={dequantize}: " + "; ".join(f"{k}: rel L2 {rel(c['y'], r):.3g}" for k, r in ref.items()))
    a, b2 = ref["input per token, absmax / 127"], ref["input per token, absmax / 127.5"]
    print(f"absmax / 127 against absmax / 127.5: rel L2 {rel(a, b2):.3g}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
