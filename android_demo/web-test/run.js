// Headless Chromium test of the PWA (Debian's /usr/bin/chromium driven by playwright-core, which
// downloads no browser): a phone viewport with an Android WebView user agent, the page served from
// loopback, the web export downloaded with progress, a chat on WASM (n-gram drafter) and on WebGPU
// (SwiftShader: software, 20-40 s per pass, so only the first WEBGPU_TOKENS tokens), the greedy output
// compared with the golden trace, stats shown, offline reload from the caches, screenshots saved.
// Usage: node web-test/run.js WEB_EXPORT_DIR [--golden FILE] [--out DIR] [--only wasm|webgpu]
// WEB_EXPORT_DIR: `python -m tests.golden.make --target web --print-export` (the export its golden was made from).
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";
import { checkExportIdentity, checkLogits, checkTokens } from "../test/golden-compare.js";
import { REPO } from "../test/helpers.js";
import { serve } from "../web/serve.js";
import { checkGpuKv } from "./gpu-kv.js";

const args = process.argv.slice(2);
const option = (name, fallback) => { const i = args.indexOf(name); return i < 0 ? fallback : args.splice(i, 2)[1]; };
// the web export's own golden traces: the browser computes fp32 activations (export/targets.py)
const golden = JSON.parse(readFileSync(option("--golden", join(REPO, "tests/golden/smollm2-135m-web.json")), "utf-8"));
const outDir = resolve(option("--out", "web-test/out"));
const only = option("--only", null);
const exportDir = args[0];
if (!exportDir) throw new Error("usage: node web-test/run.js WEB_EXPORT_DIR [--golden FILE] [--out DIR] [--only wasm|webgpu]");
checkExportIdentity(golden, JSON.parse(readFileSync(join(exportDir, "edgespec.json"), "utf-8")), exportDir);
const WEBGPU_TOKENS = 3; // prefill + 2 steps on SwiftShader: ~1-2 minutes
const CASE = golden.cases.find((c) => c.name === "chat-capital");
const PHONE = { viewport: { width: 412, height: 915 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
  userAgent: "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/UQ1A.240205.004; wv) AppleWebKit/537.36 " +
    "(KHTML, like Gecko) Version/4.0 Chrome/156.0.0.0 Mobile Safari/537.36" };
const FLAGS = ["--no-sandbox", "--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader",
  "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"];

/**
 * Plain greedy in the page on its backend (the prompt in one pass, then one token per pass, as the golden
 * protocol): the tokens, each row's logits of the golden step's top ids, and each row's top-1 minus top-2
 * gap. The cache is left empty.
 */
function replayPlain(page, steps) {
  return page.evaluate(async ({ ids, topIds, steps }) => {
    const model = globalThis.edgespecDemo.model;
    const backend = model.backend;
    backend.reset();
    model.cached = [];
    const tokens = [], rows = [], gaps = [];
    let logits = await backend.forward(ids, { logitsFor: [ids.length - 1] });
    for (let s = 0; s < steps; s++) {
      const row = logits.row(0);
      let best = 0, second = -Infinity;
      for (let v = 1; v < row.length; v++) {
        if (row[v] > row[best]) { second = row[best]; best = v; } else if (row[v] > second) second = row[v];
      }
      tokens.push(best);
      gaps.push(row[best] - second);
      rows.push(Object.fromEntries((topIds[s] ?? []).map((id) => [id, row[id]])));
      if (s + 1 < steps) logits = await backend.forward([best]);
    }
    backend.reset();
    return { tokens, rows, gaps };
  }, { ids: CASE.prompt_ids, topIds: CASE.steps.map((st) => st.top_ids), steps });
}

/**
 * Max |difference| between the page's row after `prompt + tokens` computed as plain greedy does (the prompt
 * in one pass, then one token per pass) and in one multi-token pass (as node's checkSpeculative).
 */
function passDifference(page, prompt, tokens) {
  return page.evaluate(async ({ prompt, tokens }) => {
    const backend = globalThis.edgespecDemo.model.backend;
    backend.reset();
    let one = Float32Array.from((await backend.forward(prompt, { logitsFor: [prompt.length - 1] })).row(0));
    for (const token of tokens) one = Float32Array.from((await backend.forward([token])).row(0));
    backend.reset();
    const prefix = [...prompt, ...tokens];
    const many = (await backend.forward(prefix, { logitsFor: [prefix.length - 1] })).row(0);
    backend.reset();
    let most = 0;
    for (let v = 0; v < many.length; v++) most = Math.max(most, Math.abs(many[v] - one[v]));
    return most;
  }, { prompt, tokens });
}

/**
 * The page's plain greedy replays the golden trace (tokens up to a near-tie, logits within tolerance);
 * the chat reply (n-gram drafts: multi-token passes) equals that replay up to a divergence where the
 * replay's top-1/top-2 gap is below the one-pass vs multi-token-pass difference (as the node test).
 */
async function checkAgainstGolden(page, backend, reply, maxTokens) {
  const stops = new Set([0, 2]);
  // a reply shorter than maxTokens ended at a stop token: replay that step too
  const steps = Math.max(1, Math.min(reply.length + (reply.length < maxTokens ? 1 : 0), CASE.tokens.length));
  const plain = await replayPlain(page, steps);
  const compared = { ...CASE, tokens: CASE.tokens.slice(0, steps), steps: CASE.steps.slice(0, steps) };
  const n = checkTokens(golden, plain.tokens, compared, `[${backend}] plain greedy`);
  if (backend === "wasm") {
    checkLogits(golden, (s, id) => plain.rows[s][id], CASE, Math.min(n, steps - 1), `[${backend}] plain greedy`);
  } else { // WebGPU on SwiftShader: tokens only (its logits measured 1.05 apart from the CPU's on this row); shown
    const worst = Math.max(...CASE.steps.slice(0, Math.min(n + 1, steps)).flatMap((st, s) =>
      st.top_ids.map((id, j) => Math.abs(plain.rows[s][id] - st.top_logits[j]))));
    console.log(`[${backend}] largest |logit - golden| over the golden top-5 of ${Math.min(n + 1, steps)} steps: ${worst.toFixed(4)}`);
  }
  const upto = plain.tokens.findIndex((t) => stops.has(t));
  const want = upto < 0 ? plain.tokens.slice(0, reply.length) : plain.tokens.slice(0, upto);
  const first = want.findIndex((t, i) => reply[i] !== t);
  if (first >= 0) {
    const difference = await passDifference(page, CASE.prompt_ids, want.slice(0, first));
    assert.ok(plain.gaps[first] < difference, `[${backend}] the chat reply ${JSON.stringify(reply)} parts from ` +
      `plain greedy ${JSON.stringify(want)} at token ${first}, where plain's top-1/top-2 gap ` +
      `${plain.gaps[first]} is not below the one-pass/multi-token-pass difference ${difference}`);
  } else {
    assert.equal(reply.length, want.length, `[${backend}] the chat reply stopped elsewhere than plain greedy`);
  }
  return { goldenTokens: n, plainTokens: first < 0 ? want.length : first };
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
  const agreed = await checkAgainstGolden(page, backend, result.tokens, tokens);
  assert.match(stats, /tok\/s · [\d.]+ tokens\/step · drafts accepted: .* · \d+ tokens/);
  await page.screenshot({ path: join(outDir, `chat-${backend}${spec === "layerskip" ? "-layerskip" : ""}.png`) });
  assert.deepEqual(errors.filter((e) => !/favicon/.test(e)), [], "errors in the page's console");
  console.log(`[${backend}] ok: plain greedy in the page equals the golden trace for ${agreed.goldenTokens} tokens ` +
    `(${backend === "wasm" ? `logits within ${golden.tolerance.logit_abs}` : "tokens only"}), the chat reply equals plain greedy for ${agreed.plainTokens} ` +
    `tokens (${((Date.now() - started) / 1000).toFixed(1)} s)`);
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
    // layer plans in onnxruntime-web: layer-skip draft passes (If branches skipped; the WASM KV scheme pads
    // the skipped layers' rows) rolled back, the reply still plain greedy's
    await (await run(context, base, { backend: "wasm", spec: "layerskip", tokens: 16, timeout: 600000 })).close();
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
