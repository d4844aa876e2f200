// The semantic-search page: fetches the int8 checkpoint, hands its bytes to the wasm module
// (int8-wgpu on WebGPU), and ranks CORPUS for each query. `window.page` holds what the page
// shows, for scripts and scripts/web-page-test.py.
import init, { SemanticSearch } from './pkg/int8_wgpu_web_example.js';

// The served folder's checkpoint: `int8-wgpu quantize` output (scripts/web-page.sh).
const MODEL = './model/';

const CORPUS = [
  'A man is eating food.',
  'A man is eating a piece of bread.',
  'The girl is carrying a baby.',
  'A man is riding a horse.',
  'A woman is playing violin.',
  'Two men pushed carts through the woods.',
  'A man is riding a white horse on an enclosed ground.',
  'A monkey is playing drums.',
  'A cheetah is running behind its prey.',
  'The new movie is awesome.',
  'The cat sits outside.',
  'A man is playing guitar.',
  'I love pasta.',
  'Do you like pizza?',
  'The stock market fell sharply today.',
  'Quantized weights take a quarter of the memory.',
];

const page = { state: 'loading', error: null, corpus: CORPUS, queries: 0, times: [], last: null };
window.page = page;
const $ = (id) => document.getElementById(id);

async function fetchOk(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`fetching ${url}: HTTP ${r.status}`);
  return r;
}

const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;

function median(v) {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function main() {
  await init();
  if (!navigator.gpu) {
    throw new Error('this browser has no WebGPU (navigator.gpu): Chromium on Linux needs --enable-unsafe-webgpu');
  }
  $('status').textContent = 'downloading the model…';
  const t0 = performance.now();
  const [model, config, tokenizer, sbert, info] = await Promise.all([
    fetchOk(MODEL + 'model.safetensors').then((r) => r.arrayBuffer()),
    fetchOk(MODEL + 'config.json').then((r) => r.text()),
    fetchOk(MODEL + 'tokenizer.json').then((r) => r.arrayBuffer()),
    fetch(MODEL + 'sentence_bert_config.json').then((r) => (r.ok ? r.text() : undefined)),
    // The float model's size, written beside the page by scripts/web-page.sh.
    fetch('./info.json').then((r) => (r.ok ? r.json() : {})),
  ]);
  const t1 = performance.now();
  page.int8Bytes = model.byteLength;
  page.f32Bytes = info.f32_bytes ?? null;
  $('download').textContent = page.f32Bytes
    ? `${mb(page.int8Bytes)} int8 checkpoint (f32: ${mb(page.f32Bytes)}, ${(page.f32Bytes / page.int8Bytes).toFixed(2)}x larger)`
    : `${mb(page.int8Bytes)} int8 checkpoint`;
  $('status').textContent = `loading the model and embedding ${CORPUS.length} sentences…`;
  const search = await SemanticSearch.load(new Uint8Array(model), config, new Uint8Array(tokenizer), sbert, CORPUS);
  const t2 = performance.now();
  // wgpu's WebGPU backend leaves the adapter's name empty: the browser's own adapter info names
  // it (the same adapter: one request with the default options, as wgpu makes).
  const gpuInfo = (await navigator.gpu.requestAdapter())?.info ?? {};
  const name = gpuInfo.description || [gpuInfo.vendor, gpuInfo.architecture, gpuInfo.device].filter(Boolean).join(' ');
  page.adapter = `${name || 'unnamed adapter'} (${search.adapter()})`;
  page.precision = search.precision();
  page.corpusEmbeddings = JSON.parse(search.corpus_embeddings_json());
  page.loadMs = { fetch: t1 - t0, model: t2 - t1 };
  $('adapter').textContent = page.adapter;
  $('precision').textContent = `${page.precision}; ${mb(search.weight_bytes())} of weights on the GPU`;
  $('load').textContent = `fetch ${(t1 - t0).toFixed(0)} ms; GPU upload + corpus embedding ${(t2 - t1).toFixed(0)} ms`;

  $('search').addEventListener('submit', (e) => {
    e.preventDefault();
    run(search, $('query').value).catch(fail);
  });
  $('query').disabled = false;
  $('go').disabled = false;
  page.state = 'ready';
  $('status').textContent = 'ready: type a query';
}

// One query: embed it, rank the corpus, show the ranking and the time.
async function run(search, text) {
  $('go').disabled = true;
  page.state = 'busy';
  const t = performance.now();
  const result = JSON.parse(await search.query(text));
  const ms = performance.now() - t;
  page.times.push(ms);
  page.last = { query: text, ms, ...result };
  page.queries += 1;
  $('time').textContent = `${ms.toFixed(1)} ms (${result.tokens} tokens; median of ${page.times.length}: ${median(page.times).toFixed(1)} ms)`;
  const rows = result.ranking.map(({ sentence, score }) => {
    const tr = document.createElement('tr');
    const width = Math.max(0, score) * 8;
    tr.innerHTML = `<td class="score">${score.toFixed(4)}</td><td><span class="bar" style="width:${width}rem"></span></td><td></td>`;
    tr.lastChild.textContent = sentence;
    return tr;
  });
  $('ranking').replaceChildren(...rows);
  page.state = 'ready';
  $('status').textContent = 'ready: type a query';
  $('go').disabled = false;
}

function fail(e) {
  page.state = 'error';
  page.error = String(e?.stack ?? e);
  $('status').textContent = `error: ${e?.message ?? e}`;
  $('status').className = 'error';
  console.error(e);
}

main().catch(fail);
