// Loading an export in the browser: files downloaded once with progress into Cache Storage (offline
// afterwards), checked against the manifest (size + sha256) and the graph contract, then run by
// onnxruntime-web on WebGPU (KV in GPU buffers) or WASM (KV returned by each pass).
import * as ort from "onnxruntime-web/webgpu";
import { OrtBackend } from "../engine/backend/ort.js";
import { checkManifest, checkSession, MANIFEST, sha256Hex } from "../engine/contract.js";
import { EdgespecError, ModelFormatError } from "../engine/errors.js";
import { Model } from "../engine/model.js";
import { ChatTokenizer } from "../engine/tokenizer.js";

export const MODEL_CACHE = "edgespec-models-v1";
ort.env.wasm.wasmPaths = new URL("../vendor/ort/", import.meta.url).href;
ort.env.logLevel = "error";
// threads need cross-origin isolation (SharedArrayBuffer); a phone has few big cores
ort.env.wasm.numThreads = globalThis.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;

/** A file from the cache, else downloaded (reporting bytes as they arrive) and cached. */
async function cachedBytes(url, onBytes) {
  const cache = await caches.open(MODEL_CACHE);
  let response = await cache.match(url);
  if (response) {
    const bytes = new Uint8Array(await response.arrayBuffer());
    onBytes(bytes.byteLength);
    return bytes;
  }
  response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new EdgespecError(`download of ${url} failed: HTTP ${response.status}`);
  const reader = response.body.getReader();
  const chunks = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    total += value.byteLength;
    onBytes(value.byteLength);
  }
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) { bytes.set(chunk, offset); offset += chunk.byteLength; }
  await cache.put(url, new Response(bytes));
  return bytes;
}

/** The models a server lists (cached, so the choice works offline too). */
export async function listModels(base) {
  const url = new URL("index.json", base).href;
  try {
    const response = await fetch(url, { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const models = await response.json();
    await (await caches.open(MODEL_CACHE)).put(url, new Response(JSON.stringify(models)));
    return models;
  } catch (error) {
    const cached = await (await caches.open(MODEL_CACHE)).match(url);
    if (cached) return cached.json();
    throw new EdgespecError(`cannot list the models at ${url} (${error.message}) and none are cached`);
  }
}

/** "webgpu" where it can run this export, else "wasm"; with the reason for the log. */
export async function chooseBackend(preference, manifest) {
  if (preference === "wasm") return { kind: "wasm", why: "chosen" };
  const adapter = navigator.gpu ? await navigator.gpu.requestAdapter() : null;
  const f16Embeddings = manifest.quantization?.embed === "fp16";
  let problem = null;
  if (!adapter) problem = "this browser has no WebGPU adapter";
  else if (f16Embeddings && !adapter.features.has("shader-f16")) {
    problem = "this GPU lacks shader-f16, which the export's fp16 embedding table needs (export with --target web)";
  }
  if (problem && preference === "webgpu") throw new EdgespecError(`WebGPU cannot run this export: ${problem}`);
  return problem ? { kind: "wasm", why: problem } : { kind: "webgpu", why: "available", adapter };
}

/** Open the export at `base` (a URL ending in /). onProgress(loadedBytes, totalBytes, stage). */
export async function loadWeb(base, { backend = "auto", onProgress = () => {}, context = 2048 } = {}) {
  const manifestBytes = await cachedBytes(new URL(MANIFEST, base).href, () => {});
  const manifest = JSON.parse(new TextDecoder().decode(manifestBytes));
  checkManifest(manifest, base);
  const total = Object.values(manifest.files).reduce((a, f) => a + f.size, 0);
  let loaded = 0;
  const files = {};
  for (const [name, expected] of Object.entries(manifest.files)) {
    const bytes = await cachedBytes(new URL(name, base).href, (n) => onProgress((loaded += n), total, `downloading ${name}`));
    onProgress(loaded, total, `checking ${name}`);
    if (bytes.byteLength !== expected.size || await sha256Hex(bytes) !== expected.sha256) {
      await (await caches.open(MODEL_CACHE)).delete(new URL(name, base).href);
      throw new ModelFormatError(`${name} of ${base} does not match its manifest (sha256 ${expected.sha256.slice(0, 16)}...); removed from the cache — load again`);
    }
    files[name] = bytes;
  }
  const choice = await chooseBackend(backend, manifest);
  // WASM runs in a worker (the page stays responsive while a pass computes); WebGPU cannot be proxied
  ort.env.wasm.proxy = choice.kind === "wasm";
  onProgress(total, total, `creating the ${choice.kind} session`);
  const graph = manifest.graph.file;
  const session = await ort.InferenceSession.create(files[graph], { executionProviders: [choice.kind],
    graphOptimizationLevel: "all", logSeverityLevel: 3, // errors only: placement warnings are not the user's business
    externalData: Object.keys(files).filter((n) => n.startsWith(`${graph}.`)).map((path) => ({ path, data: files[path] })) });
  checkSession(session, manifest, base);
  // the KV buffers must live on onnxruntime's own GPU device (a buffer of another device cannot be bound)
  const device = choice.kind === "webgpu" ? await ort.env.webgpu.device : null;
  const maxLen = Math.min(context, manifest.max_len);
  const engine = new OrtBackend(ort, session, manifest.config, maxLen,
    { kvScheme: choice.kind === "webgpu" ? "gpu" : "returned", device, name: choice.kind });
  const json = (name) => JSON.parse(new TextDecoder().decode(files[name]));
  const tokenizer = new ChatTokenizer(json("tokenizer.json"), json("tokenizer_config.json"), manifest.tokenizer,
    manifest.chat_template);
  // trained drafter files (listed under the manifest's drafters, not its files) download on first use
  const readFile = async (name) => files[name] ?? cachedBytes(new URL(name, base).href, () => {});
  const model = new Model(engine, tokenizer, manifest, { readFile });
  model.backendWhy = choice.why;
  return model;
}
