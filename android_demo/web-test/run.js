// Headless Chromium test of the PWA (Debian's /usr/bin/chromium driven by playwright-core, which
// downloads no browser): a phone viewport with an Android WebView user agent, the page served from
// loopback, the web export downloaded with progress, a chat on WASM (n-gram drafter) and on WebGPU
// (SwiftShader: software, 20-40 s per pass, so only the first WEBGPU_TOKENS tokens), the greedy output
// compared with the golden trace, stats shown, offline reload from the caches, screenshots saved.
// Usage: node web-test/run.js WEB_EXPORT_DIR [--golden FILE] [--out DIR] [--only wasm|webgpu]
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";
import { GOLDEN } from "../test/helpers.js";
import { serve } from "../web/serve.js";
import { checkGpuKv } from "./gpu-kv.js";

const args = process.argv.slice(2);
const option = (name, fallback) => { const i = args.indexOf(name); return i < 0 ? fallback : args.splice(i, 2)[1]; };
const golden = JSON.parse(readFileSync(option("--golden", GOLDEN), "utf-8"));
const outDir = resolve(option("--out", "web-test/out"));
const only = option("--only", null);
const exportDir = args[0];
if (!exportDir) throw new Error("usage: node web-test/run.js WEB_EXPORT_DIR [--golden FILE] [--out DIR] [--only wasm|webgpu]");
const WEBGPU_TOKENS = 3; // prefill + 2 steps on SwiftShader: ~1-2 minutes
const CASE = golden.cases.find((c) => c.name === "chat-capital");
const PHONE = { viewport: { width: 412, height: 915 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
  userAgent: "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/UQ1A.240205.004; wv) AppleWebKit/537.36 " +
    "(KHTML, like Gecko) Version/4.0 Chrome/156.0.0.0 Mobile Safari/537.36" };
const FLAGS = ["--no-sandbox", "--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader",
  "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"];

/** The golden tokens a chat reply must reproduce: up to the first stop token (the page stops there). */
function expected(limit) {
  const stops = new Set([0, 2]);
  const upto = CASE.tokens.findIndex((t) => stops.has(t));
  return CASE.tokens.slice(0, Math.min(limit, upto < 0 ? CASE.tokens.length : upto));
}

async function chat(page, text, timeout) {
  await page.fill("#prompt", text);
  await page.click("#send");
  await page.waitForFunction(() => ["ready", "error"].includes(document.body.dataset.state) &&
    document.querySelector(".assistant") !== null, null, { timeout });
  const state = await page.evaluate(() => document.body.dataset.state);
  assert.equal(state, "ready", await page.textContent("#status"));
  return page.evaluate(() => globalThis.edgespecDemo.results.at(-1));
}

async function load(page, timeout) {
  await page.click("#load");
  await page.waitForFunction(() => ["ready", "error"].includes(document.body.dataset.state), null, { timeout });
  assert.equal(await page.evaluate(() => document.body.dataset.state), "ready", await page.textContent("#status"));
  return page.textContent("#status");
}

async function run(context, base, { backend, spec, tokens, timeout }) {
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error" && !/\[W:onnxruntime/.test(m.text())) errors.push(m.text()); });
  const started = Date.now();
  await page.goto(`${base}/web/index.html?model=smollm2&backend=${backend}&spec=${spec}&max_tokens=${tokens}`);
  await page.waitForFunction(() => document.querySelector("#model").options.length > 0, null, { timeout: 30000 });
  const status = await load(page, timeout);
  console.log(`[${backend}] loaded in ${((Date.now() - started) / 1000).toFixed(1)} s: ${status}`);
  assert.match(status, new RegExp(`on ${backend}`), `the page did not run on ${backend}: ${status}`);
  const result = await chat(page, CASE.messages[0].content, timeout);
  const stats = await page.textContent("#stats");
  console.log(`[${backend}] reply ${JSON.stringify(result.text)}; stats: ${stats}`);
  assert.deepEqual(result.promptIds, CASE.prompt_ids, "the page's chat template/tokenizer differ from the golden prompt");
  const want = expected(tokens);
  assert.deepEqual(result.tokens.slice(0, want.length), want, `[${backend}] greedy tokens differ from the golden trace`);
  assert.match(stats, /tok\/s · [\d.]+ tokens\/step · drafts accepted: .* · \d+ tokens/);
  await page.screenshot({ path: join(outDir, `chat-${backend}.png`) });
  assert.deepEqual(errors.filter((e) => !/favicon/.test(e)), [], "errors in the page's console");
  console.log(`[${backend}] ok: ${want.length} tokens equal the golden trace (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  return page;
}

const server = await serve({ smollm2: resolve(exportDir) }, { port: 0,
  log: (method, url, status) => { if (status >= 400) console.log(`[server] ${status} ${method} ${url}`); } });
const base = `http://127.0.0.1:${server.address().port}`;
const userDataDir = mkdtempSync(join(tmpdir(), "edgespec-chromium-"));
mkdirSync(outDir, { recursive: true });
const context = await chromium.launchPersistentContext(userDataDir, { executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true, args: FLAGS, ...PHONE });
try {
  if (only !== "webgpu") {
    const page = await run(context, base, { backend: "wasm", spec: "ngram", tokens: 16, timeout: 600000 });
    // offline: the page from the service worker's cache, the model from Cache Storage
    await context.setOffline(true);
    await page.reload();
    await page.waitForFunction(() => document.querySelector("#model").options.length > 0, null, { timeout: 30000 });
    console.log(`[offline] ${await load(page, 600000)}`);
    await context.setOffline(false);
    await page.close();
  }
  if (only !== "wasm") {
    const page = await run(context, base, { backend: "webgpu", spec: "off", tokens: WEBGPU_TOKENS, timeout: 1200000 });
    const kv = await checkGpuKv(page);
    assert.deepEqual(kv.problems, [], "GPU KV moves differ from the CPU scheme's");
    console.log(`[webgpu] KV buffers: growth past a chunk, keep of a non-first branch, rollback: ${kv.rows} rows equal the CPU scheme's`);
  }
} finally {
  await context.close();
  server.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
