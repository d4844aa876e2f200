#!/usr/bin/env python3
"""The semantic-search page (examples/web/) driven in headless Chromium through WebDriver
(chromedriver, plain HTTP; Python's standard library only), checked against the native MiniLM
example on the same int8 checkpoint. Run by `bash scripts/web-page.sh --test`, which builds the
served folder first.

It serves the folder, opens the page on WebGPU (SwiftShader; web/webdriver.json's flags), waits
for the model to load and embed the corpus, types a query and submits it (then resubmits it
for the time per query), reads the ranking and the corpus and query embeddings from
`window.page`, saves a screenshot to target/web-page/screenshot.png, and runs
`cargo run --example embed -- --quantized <served checkpoint> --json ...` on the same sentences.
Fails (exit 1, with the reason) unless every embedding has cosine >= 0.9999 to the native one,
the page's scores match its embeddings, and the ranking is the native one (pairs whose native
scores differ by less than TIE may swap); the TRICKY queries (the tokenizer compiled to wasm)
must give the native token counts and embeddings too. Any page error or timeout fails.
"""

import argparse
import base64
import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUERY = "Someone is riding a horse."
# Queries that test the tokenizer compiled to wasm against the native one: accents, CJK, emoji,
# nothing, and more than the model's 256 tokens (truncated). Set as the box's value by script
# (chromedriver types only characters of the Basic Multilingual Plane).
TRICKY = [
    "Crème brûlée, café au lait and a naïve façade.",
    "東京は日本の首都です。",
    "Pizza night 🍕🔥 with friends 👩‍👩‍👧!",
    "",
    " ".join(f"word{i}" for i in range(300)),
]
REPEATS = 5  # resubmissions of the query, for the time per query
MIN_COSINE = 0.9999
TIE = 1e-4
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C web element key


class Failure(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, deadline, what):
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            if time.time() > deadline:
                raise Failure(f"{what} did not answer at {url}")
            time.sleep(0.2)


class WebDriver:
    """The few W3C WebDriver commands the test needs."""

    def __init__(self, base):
        self.base = base
        self.session = None

    def call(self, method, path, body=None, timeout=120):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read())["value"]
        except urllib.error.HTTPError as e:
            raise Failure(f"WebDriver {method} {path}: HTTP {e.code}: {e.read().decode(errors='replace')[:2000]}")

    def start(self, args):
        caps = {"browserName": "chrome", "goog:chromeOptions": {"args": args}}
        value = self.call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})
        self.session = value["sessionId"]
        return value["capabilities"]

    def s(self, method, path, body=None, timeout=120):
        return self.call(method, f"/session/{self.session}{path}", body, timeout)

    def script(self, source):
        return self.s("POST", "/execute/sync", {"script": source, "args": []})

    def element(self, css):
        return self.s("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def quit(self):
        if self.session:
            try:
                self.call("DELETE", f"/session/{self.session}", timeout=30)
            except Exception as e:  # noqa: BLE001 - cleaning up after a failure already reported
                print(f"warning: closing the browser session: {e}", file=sys.stderr)


def wait_page(driver, deadline, done, what):
    """Polls window.page until done(page) or an error on the page or the deadline."""
    while True:
        page = driver.script("return window.page ? JSON.stringify(window.page) : null")
        page = json.loads(page) if page else None
        if page and page.get("state") == "error":
            raise Failure(f"the page failed while {what}: {page.get('error')}")
        if page and done(page):
            return page
        if time.time() > deadline:
            status = driver.script("return document.getElementById('status')?.textContent")
            raise Failure(f"timed out while {what}; the page says: {status!r}")
        time.sleep(0.5)


def dot(a, b):
    return math.fsum(x * y for x, y in zip(a, b))


def cosine(a, b):
    return dot(a, b) / math.sqrt(dot(a, a) * dot(b, b))


def native_embeddings(model, checkpoint, sentences, out):
    """The native example's embeddings of `sentences` for every model it runs (lavapipe)."""
    cmd = ["cargo", "run", "--release", "-q", "--example", "embed", "--", "--model", str(model),
           "--quantized", str(checkpoint), "--iters", "1", "--json", str(out), *sentences]
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, timeout=1800)
    return json.loads(Path(out).read_text())


def check(page, native, checkpoint):
    corpus, last, tricky = page["corpus"], page["last"], page["tricky"]
    sentences = corpus + [QUERY] + TRICKY
    if native["sentences"] != sentences:
        raise Failure("the native run embedded other sentences")
    got_tokens = [t["tokens"] for t in tricky]
    want_tokens = native["tokens"][len(corpus) + 1:]
    print(f"tricky queries' tokens: page {got_tokens}, native {want_tokens}; "
          f"their times {[round(t['ms'], 1) for t in tricky]} ms")
    if got_tokens != want_tokens:
        raise Failure("the tokenizer in the page counts other tokens than the native one")
    models = {m["name"]: m["embeddings"] for m in native["models"]}
    name = next((n for n in models if n.endswith(f"from {checkpoint}")), None)
    if name is None:
        raise Failure(f"no native run of {checkpoint} among {list(models)}")
    ref = models[name]
    got = page["corpusEmbeddings"] + [last["embedding"]] + [t["embedding"] for t in tricky]
    if len(got) != len(ref) or any(len(g) != len(r) for g, r in zip(got, ref)):
        raise Failure("the page's embeddings have other shapes than the native ones")
    cos = [cosine(g, r) for g, r in zip(got, ref)]
    print(f"native: {name} on {native['adapter']}")
    print("cosine page vs native, per sentence (corpus, the query, the tricky queries): "
          + " ".join(f"{c:.7f}" for c in cos))
    print(f"min {min(cos):.7f}, mean {sum(cos) / len(cos):.7f}")
    f32 = next((e for n, e in models.items() if n.startswith("f32")), None)
    if f32:
        c32 = [cosine(g, r) for g, r in zip(got, f32)]
        print(f"(beside the native f32 model: min {min(c32):.6f}, mean {sum(c32) / len(c32):.6f})")
    bad = [(i, c) for i, c in enumerate(cos) if not c >= MIN_COSINE]
    if bad:
        raise Failure(f"cosine below {MIN_COSINE} for sentences {bad}")
    # The page's scores are the cosines of its own embeddings.
    qe = last["embedding"]
    for r in last["ranking"]:
        if abs(r["score"] - cosine(page["corpusEmbeddings"][r["index"]], qe)) > 1e-6:
            raise Failure(f"the page's score for sentence {r['index']} is not its embeddings' cosine")
    page_order = [r["index"] for r in last["ranking"]]
    native_scores = [cosine(ref[i], ref[len(corpus)]) for i in range(len(corpus))]
    native_order = sorted(range(len(corpus)), key=lambda i: -native_scores[i])
    print(f"query {QUERY!r}: page top 3 {page_order[:3]}, native top 3 {native_order[:3]} "
          f"(native scores {[round(native_scores[i], 4) for i in native_order[:3]]})")
    if sorted(page_order) != list(range(len(corpus))):
        raise Failure(f"the page's ranking {page_order} is not a ranking of the corpus")
    rank = {i: k for k, i in enumerate(page_order)}
    for i in range(len(corpus)):
        for j in range(len(corpus)):
            if native_scores[i] - native_scores[j] > TIE and rank[i] > rank[j]:
                raise Failure(f"the page ranks sentence {j} above {i}; natively {i} scores "
                              f"{native_scores[i]:.5f} > {native_scores[j]:.5f}")
    if page_order[0] != native_order[0]:
        raise Failure(f"top result {page_order[0]} differs from the native {native_order[0]}")
    print(f"ranking: the native order ({len(corpus)} sentences; ties within {TIE} may swap)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--site", required=True, help="the served folder (scripts/web-page.sh)")
    ap.add_argument("--model", required=True, help="the float all-MiniLM-L6-v2 folder")
    ap.add_argument("--timeout", type=float, default=900, help="seconds for the page to load")
    args = ap.parse_args()
    site = (ROOT / args.site).resolve()
    out_dir = ROOT / "target/web-page"
    out_dir.mkdir(parents=True, exist_ok=True)
    flags = json.loads((ROOT / "web/webdriver.json").read_text())["goog:chromeOptions"]["args"]
    flags = ["--headless=new", "--window-size=1000,1100", *flags]
    chromedriver = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")

    http_port, driver_port = free_port(), free_port()
    procs = []
    driver = WebDriver(f"http://127.0.0.1:{driver_port}")
    try:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "http.server", str(http_port), "--bind", "127.0.0.1", "--directory", str(site)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen([chromedriver, f"--port={driver_port}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        url = f"http://127.0.0.1:{http_port}/"
        wait_http(url, time.time() + 30, "the HTTP server")
        wait_http(f"http://127.0.0.1:{driver_port}/status", time.time() + 30, "chromedriver")
        caps = driver.start(flags)
        print(f"browser: {caps.get('browserName')} {caps.get('browserVersion')} {' '.join(flags)}")
        driver.s("POST", "/url", {"url": url})
        t0 = time.time()
        page = wait_page(driver, t0 + args.timeout, lambda p: p["state"] == "ready", "loading the model")
        print(f"page ready in {time.time() - t0:.1f} s: adapter {page['adapter']}; {page['precision']}")
        box = driver.element("#query")
        driver.s("POST", f"/element/{box}/clear", {})
        driver.s("POST", f"/element/{box}/value", {"text": QUERY})
        go = driver.element("#go")
        for n in range(1, REPEATS + 2):
            driver.s("POST", f"/element/{go}/click", {})
            page = wait_page(driver, time.time() + 300,
                             lambda p, n=n: p["queries"] >= n and p["state"] == "ready", "answering the query")
        if page["last"]["query"] != QUERY:
            raise Failure(f"the page answered {page['last']['query']!r}, not the typed {QUERY!r}")
        shot = out_dir / "screenshot.png"
        shot.write_bytes(base64.b64decode(driver.s("GET", "/screenshot")))
        timed, typed = page["times"], page["last"]
        tricky = []
        for text in TRICKY:
            n = page["queries"] + 1
            driver.s("POST", "/execute/sync", {"script": "document.getElementById('query').value = arguments[0]",
                                               "args": [text]})
            driver.s("POST", f"/element/{go}/click", {})
            page = wait_page(driver, time.time() + 600,
                             lambda p, n=n: p["queries"] >= n and p["state"] == "ready", "answering a tricky query")
            if page["last"]["query"] != text:
                raise Failure(f"the page answered {page['last']['query']!r}, not {text!r}")
            tricky.append(page["last"])
        page.update(times=timed, last=typed, tricky=tricky)
        times = page["times"]
        later = sorted(times[1:])
        print(f"download: int8 checkpoint {page['int8Bytes']} bytes, f32 model.safetensors {page['f32Bytes']} bytes "
              f"({page['f32Bytes'] / page['int8Bytes']:.2f}x)")
        print(f"load: fetch {page['loadMs']['fetch']:.0f} ms, model + corpus ({len(page['corpus'])} sentences) "
              f"{page['loadMs']['model']:.0f} ms")
        print(f"time per query ({page['last']['tokens']} tokens): first {times[0]:.1f} ms (makes its plan), "
              f"then median {later[len(later) // 2]:.1f} ms of {len(later)} [{', '.join(f'{t:.1f}' for t in later)}]; "
              f"load average {' '.join(os.getloadavg().__repr__().strip('()').split(', '))}")
        print(f"screenshot: {shot.relative_to(ROOT)}")
    finally:
        driver.quit()
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()

    checkpoint = Path(args.site) / "model"
    native = native_embeddings(args.model, checkpoint, page["corpus"] + [QUERY] + TRICKY, out_dir / "native.json")
    check(page, native, checkpoint)
    print("web page test: ok")


if __name__ == "__main__":
    try:
        main()
    except (Failure, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        print(f"web page test FAILED: {e}", file=sys.stderr)
        sys.exit(1)
