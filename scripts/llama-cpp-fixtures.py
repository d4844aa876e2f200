#!/usr/bin/env python3
"""Writes llama.cpp's answers for SmolLM2-135M-Instruct into llm/tests/fixtures/, so the Rust
tests check the llm crate against llama.cpp without Python or a llama.cpp build:

  llama_cpp_tokenizer.json  token ids of tricky strings (tokenize with special=True, BOS as the
                            GGUF says), the end-of-generation ids, the chat template's rendering
                            (Jinja, as llama-cpp-python renders the GGUF's template, and
                            llama.cpp's built-in ChatML where it applies);
  llama_cpp_greedy.json     greedy continuations (24 tokens) of a few prompts on the Q4_1 file,
                            with each step's top-1 minus top-2 logit margin, on llama.cpp's
                            Vulkan backend (all layers) and on the CPU.

Usage (the model comes from scripts/fetch-smollm2.sh; nothing is downloaded here):

    apt-get install -y cmake g++ libvulkan-dev glslc   # Debian 12: newer llama-cpp-python needs newer Vulkan headers
    python3 -m venv /work/llamacpp-venv
    CMAKE_ARGS="-DGGML_VULKAN=on" /work/llamacpp-venv/bin/pip install llama-cpp-python==0.3.9
    XDG_RUNTIME_DIR=/tmp /work/llamacpp-venv/bin/python scripts/llama-cpp-fixtures.py

(llama-cpp-python 0.3.9 is the newest that builds against Debian 12's Vulkan headers; without
Vulkan it builds for the CPU, and the greedy file then records the CPU run alone.) The model
path defaults to ${INT8_WGPU_CACHE:-~/.cache/int8-wgpu}/SmolLM2-135M-Instruct.Q4_1.gguf. The
CPU pass runs in a child process with GGML_VK_VISIBLE_DEVICES="" so that llama.cpp cannot
offload the prompt's matrix products to the Vulkan device. Files are written atomically.
"""

import argparse
import contextlib
import ctypes
import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile

import llama_cpp
import numpy as np
from llama_cpp import Llama
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "llm", "tests", "fixtures")
MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GREEDY_TOKENS = 24

LONG = (
    "The quick brown fox jumps over the lazy dog. In 1969, Apollo 11 landed on the Moon; "
    "Neil Armstrong's first words were: \"That's one small step for [a] man, one giant leap for "
    "mankind.\" Today, over 3,000 satellites orbit Earth at altitudes between 160 km and "
    "35,786 km — some of them (like the ISS) visible to the naked eye!  Isn't that remarkable?\n\n"
    "    Indented lines, trailing spaces,   and\ttabs\tstay as they are.   \n"
    "Prices: $4.99, €12.50, ¥1000; ratios 3:2 and 16:9; e-mail: someone@example.org."
)

STRINGS = [
    "Hello world",
    "hello World HELLO",
    "",
    " ",
    "   ",
    " leading space",
    "   leading spaces",
    "trailing space ",
    "trailing spaces   ",
    "multiple   spaces    between     words",
    "\n",
    "line one\nline two\n\nline four\n",
    "\ttab\tseparated\tvalues\t",
    " \n \t mixed \n\n whitespace \t\n",
    "windows\r\nline\r\nends",
    "1234567",
    "0 12 345 6789 1234567890",
    "3.14159, 2,718 and 1e-10 or -42",
    "I'm sure you're right: we'll see, they've gone, she'd know, it's fine, don't.",
    "I'M SURE YOU'RE RIGHT, DON'T",
    "café naïve résumé Zürich façade Ærø",
    "e\u0301 (e + combining acute) vs \u00e9",
    "日本語のテキストです。中文文本也在这里。",
    "한국어 문장입니다",
    "Ελληνικά και русский текст",
    "العربية עברית हिन्दी ไทย",
    "emoji: 😀 👍🏽 👨\u200d👩\u200d👧 🇫🇷 ❤️",
    "mixed: English, français, 日本, Deutsch, 中文, 😀!",
    "fn main() {\n    let x = vec![1, 2, 3];\n    println!(\"{:?}\", x);\n}\n",
    "def f(a, b=2):\n\treturn a ** b  # power\n",
    "<html><body class=\"x\">&amp; &lt;tag&gt;</body></html>",
    "https://example.com/path/to?q=1&lang=en#frag",
    "$100.00 €50 £20 ¥1000 ∑ x² ≤ ∞ ± √2",
    "!!!???... --- *** ___ ||| ~~~",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "non\u00a0breaking\u00a0space and zero\u200bwidth",
    "bell\u0007 and null\u0000 controls",
    "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
    "text with <|endoftext|> inside",
    "<|im_start|><|im_end|><|im_start|>",
    "half a token: <|im_start and <|im_end| and <im_start|>",
    "<repo_name>x<file_sep>y<jupyter_code>z",
    LONG,
]

CHATS = [
    ([{"role": "user", "content": "What is the capital of France?"}], True),
    ([{"role": "user", "content": "What is the capital of France?"}], False),
    ([{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi!"}], True),
    (
        [
            {"role": "user", "content": "Name a prime."},
            {"role": "assistant", "content": "7"},
            {"role": "user", "content": "Another one,\nplease."},
        ],
        True,
    ),
    ([{"role": "system", "content": ""}, {"role": "user", "content": " spaced "}], False),
    ([{"role": "user", "content": "日本語 😀 <b>bold</b>"}], True),
]

PLAIN_PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time", "1, 2, 3, 4, 5,"]
CHAT_PROMPTS = [[{"role": "user", "content": "What is the capital of France?"}]]


def model_path(arg):
    if arg:
        return arg
    cache = os.environ.get("INT8_WGPU_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "int8-wgpu")
    return os.path.join(cache, MODEL_NAME)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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


def adapter_from_log(path):
    """The Vulkan device llama.cpp reports when it starts (`ggml_vulkan: 0 = ...`), else None."""
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("ggml_vulkan: 0 = "):
                return line[len("ggml_vulkan: 0 = "):].split(" | ")[0].strip()
    return None


ADAPTER = []


def load(path, **kwargs):
    """The model, its stderr captured. llama.cpp names its Vulkan device once per process, when
    the first model loads: `ADAPTER` keeps that name (empty without Vulkan devices)."""
    log = tempfile.NamedTemporaryFile(prefix="llama-cpp-", suffix=".log", delete=False).name
    try:
        with stderr_to(log):
            llm = Llama(path, verbose=True, **kwargs)
        if not ADAPTER:
            ADAPTER.append(adapter_from_log(log))
        return llm
    finally:
        os.unlink(log)


def render_jinja(template, messages, add_generation_prompt):
    formatter = Jinja2ChatFormatter(template, eos_token="<|im_end|>", bos_token="<|im_start|>",
                                    add_generation_prompt=add_generation_prompt)
    return formatter(messages=messages).prompt


def render_builtin(template, messages, add_generation_prompt):
    """llama.cpp's own `llama_chat_apply_template` (it detects ChatML; no Jinja)."""
    keep = [(m["role"].encode(), m["content"].encode()) for m in messages]
    chat = (llama_cpp.llama_chat_message * len(keep))(
        *[llama_cpp.llama_chat_message(role=r, content=c) for r, c in keep])
    size = 4096
    buf = ctypes.create_string_buffer(size)
    n = llama_cpp.llama_chat_apply_template(template.encode(), chat, len(keep), add_generation_prompt, buf, size)
    if n < 0 or n > size:
        raise RuntimeError(f"llama_chat_apply_template returned {n}")
    return buf.raw[:n].decode()


def tokenizer_fixture(path):
    llm = load(path, vocab_only=True)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    eog = [i for i in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, i)]
    template = llm.metadata["tokenizer.chat_template"]
    tokens = []
    for text in STRINGS:
        ids = llm.tokenize(text.encode(), add_bos=add_bos, special=True)
        tokens.append({"text": text, "ids": ids})
    chats = []
    for messages, gen in CHATS:
        jinja = render_jinja(template, messages, gen)
        builtin = render_builtin(template, messages, gen)
        chats.append({"messages": messages, "add_generation_prompt": gen, "jinja": jinja, "builtin": builtin,
                      "ids": llm.tokenize(jinja.encode(), add_bos=add_bos, special=True)})
    tokens.append({"text": chats[0]["jinja"], "ids": chats[0]["ids"]})
    return {"add_bos": add_bos, "n_vocab": n_vocab, "eos": llama_cpp.llama_vocab_eos(vocab), "eog": eog,
            "tokenize": tokens, "chat": chats}, template


def greedy(path, gpu_layers, prompts):
    """Each prompt's greedy continuation: ids and top-1 minus top-2 logit margins."""
    llm = load(path, n_gpu_layers=gpu_layers, n_ctx=512, n_batch=512, n_threads=2, seed=0)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    runs = []
    for prompt in prompts:
        ids = llm.tokenize(prompt.encode(), add_bos=add_bos, special=True)
        llm.reset()
        llm.eval(ids)
        out, margins = [], []
        for _ in range(GREEDY_TOKENS):
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(n_vocab,)).copy()
            top2 = np.argsort(logits)[-2:]
            best = int(top2[1])
            out.append(best)
            margins.append(round(float(logits[top2[1]] - logits[top2[0]]), 4))
            llm.eval([best])
        runs.append({"prompt": prompt, "prompt_ids": ids, "ids": out, "text": llm.detokenize(out).decode(errors="replace"),
                     "margins": margins})
    return {"adapter": ADAPTER[0] if gpu_layers else None, "n_gpu_layers": gpu_layers, "runs": runs}


def write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, indent=1)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    print(f"wrote {os.path.relpath(path, REPO)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help=f"the GGUF (default: the cache's {MODEL_NAME})")
    ap.add_argument("--out-dir", default=FIXTURES)
    ap.add_argument("--cpu-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    path = model_path(args.model)
    if not os.path.exists(path):
        sys.exit(f"error: no {path} (run scripts/fetch-smollm2.sh)")

    if args.cpu_worker:
        json.dump(greedy(path, 0, json.loads(sys.stdin.read())), sys.stdout)
        return

    about = {"generator": "scripts/llama-cpp-fixtures.py", "llama_cpp_python": llama_cpp.__version__,
             "model": MODEL_NAME, "model_sha256": sha256(path),
             "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
             "machine": f"{platform.machine()} {platform.system()}"}
    tok, template = tokenizer_fixture(path)
    for chat in tok["chat"]:
        if chat["messages"][0]["role"] == "system" and chat["jinja"] != chat["builtin"]:
            sys.exit(f"error: Jinja and llama.cpp's ChatML disagree on {chat['messages']}")

    prompts = PLAIN_PROMPTS + [render_jinja(template, m, True) for m in CHAT_PROMPTS]
    env = dict(os.environ, GGML_VK_VISIBLE_DEVICES="")
    child = subprocess.run([sys.executable, os.path.abspath(__file__), "--cpu-worker", "--model", path],
                           input=json.dumps(prompts), capture_output=True, text=True, env=env, check=True)
    cpu = json.loads(child.stdout)
    backends = {"cpu": cpu}
    if llama_cpp.llama_supports_gpu_offload():
        vulkan = greedy(path, -1, prompts)
        if vulkan["adapter"] is None:
            sys.exit("error: built with GPU offload but no Vulkan device was reported")
        backends = {"vulkan": vulkan, "cpu": cpu}
    for name, run in backends.items():
        for r in run["runs"]:
            print(f"{name:6} {r['prompt'][-40:]!r:44} -> {r['text']!r}")

    write_json(os.path.join(args.out_dir, "llama_cpp_tokenizer.json"), {"about": about, **tok})
    write_json(os.path.join(args.out_dir, "llama_cpp_greedy.json"),
               {"about": about, "greedy_tokens": GREEDY_TOKENS, "n_ctx": 512, "backends": backends})


if __name__ == "__main__":
    main()
