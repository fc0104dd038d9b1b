// Speed of the JS engine on onnxruntime-node beside edgespec's Python engine on onnxruntime, same
// export, same prompts, greedy: plain, n-gram, auto (controller over n-gram, built alike on both
// sides, budget 8) and, with --modes ...,ppd,s3d, the export's trained PPD drafter sized by each side's c(T)
// and its trained S3D drafter. One interleaved run: for each repetition and prompt, each mode runs on both sides
// back to back in alternating order; the JS/Python ratio is the median of those pairs' tok/s ratios.
// Usage (from android_demo/): node bench/node-vs-python.js EXPORT_DIR [--reps 2] [--tokens 128]
//   [--threads 2] [--modes off,ngram,auto] [--kv appended|hybrid|aliased|returned] [--json FILE] [--markdown FILE]; PYTHON (default python) runs
//   the Python side.
import { spawn } from "node:child_process";
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import * as ort from "onnxruntime-node";
import { CALIBRATION_TEXT } from "../engine/controller.js";
import { autoDrafter } from "../engine/drafters/auto.js";
import { NgramDrafter } from "../engine/drafters/ngram.js";
import { loadDrafterRows, PPDDrafter } from "../engine/drafters/ppd.js";
import { S3DDrafter } from "../engine/drafters/skip.js";
import { decode, SpecStats } from "../engine/engine.js";
import { loadNode } from "../engine/node.js";
import { Sampler } from "../engine/sampling.js";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const args = process.argv.slice(2);
const option = (name, fallback) => { const i = args.indexOf(name); return i < 0 ? fallback : args.splice(i, 2)[1]; };
const reps = Number(option("--reps", 2)), maxTokens = Number(option("--tokens", 128)), threads = Number(option("--threads", 2));
const jsonOut = option("--json", null), markdownOut = option("--markdown", null);
const dir = resolve(args[0]);
const MODES = option("--modes", "off,ngram,auto").split(",");
const median = (v) => { const s = [...v].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

const loadAtStart = loadavg(); // what else ran: timings mean little on a loaded machine
const prompts = readFileSync(join(REPO, "edgespec/bench/prompts/default.jsonl"), "utf-8").trim().split("\n").map((l) => JSON.parse(l));
const kvScheme = option("--kv", null); // the JS KV scheme (engine/backend/kv.js); default: loadNode's choice
const model = await loadNode(dir, { threads, kvScheme });
const python = spawn(process.env.PYTHON ?? "python", [join(REPO, "android_demo/bench/python_worker.py"), dir, String(threads)],
  { cwd: REPO, env: { ...process.env, PYTHONPATH: REPO }, stdio: ["pipe", "pipe", "inherit"] });
const replies = createInterface({ input: python.stdout })[Symbol.asyncIterator]();
const ask = async (request) => { python.stdin.write(`${JSON.stringify(request)}\n`); return JSON.parse((await replies.next()).value); };

const calibration = model.tokenizer.encode(CALIBRATION_TEXT);
await ask({ calibrate: calibration });
const jsAuto = await autoDrafter(model.backend, (t) => model.tokenizer.encode(t), { maxBudget: 8 });
const jsDrafters = { off: null, ngram: new NgramDrafter(), auto: jsAuto };
if (MODES.includes("ppd")) {
  const { rows } = await loadDrafterRows(model.manifest, model.readFile, "ppd");
  jsDrafters.ppd = new PPDDrafter(rows, model.manifest.config.hidden_size, { cost: jsAuto.controller.cost });
}
if (MODES.includes("s3d")) {
  const { rows, record } = await loadDrafterRows(model.manifest, model.readFile, "s3d");
  const { num_layers: layers, hidden_size: hidden } = model.manifest.config;
  jsDrafters.s3d = new S3DDrafter(model.backend, layers, record.skip, rows, hidden);
}

async function runJs(ids, spec) {
  const tokens = [];
  const stats = new SpecStats();
  let first = null;
  for await (const { token } of decode(model.backend, ids, new Sampler(), maxTokens, { drafter: jsDrafters[spec], budget: 8, stats })) {
    first ??= performance.now();
    tokens.push(token);
  }
  model.backend.reset();
  return { tokens, decode_s: (performance.now() - first) / 1000, drafted: stats.drafted, accepted: stats.accepted };
}

const rows = [];
let order = 0;
for (let rep = 0; rep < reps; rep++) {
  for (const prompt of prompts) {
    const ids = model.tokenizer.chatIds([{ role: "user", content: prompt.turns[0] }]);
    for (const spec of MODES) {
      const sides = order++ % 2 ? ["python", "js"] : ["js", "python"]; // alternate who goes first
      const result = {};
      for (const side of sides) result[side] = side === "js" ? await runJs(ids, spec) : await ask({ prompt_ids: ids, spec, tokens: maxTokens });
      const tps = (r) => (r.tokens.length - 1) / r.decode_s;
      const same = result.js.tokens.every((t, i) => t === result.python.tokens[i]);
      rows.push({ rep, prompt: prompt.question_id, category: prompt.category, spec, js_tps: tps(result.js),
        python_tps: tps(result.python), ratio: tps(result.js) / tps(result.python), same_tokens: same,
        drafted: { js: result.js.drafted, python: result.python.drafted },
        accepted: { js: result.js.accepted, python: result.python.accepted } });
      console.log(`rep ${rep} prompt ${prompt.question_id} ${spec}: js ${tps(result.js).toFixed(1)} tok/s, python ${tps(result.python).toFixed(1)} tok/s, same tokens: ${same}`);
    }
  }
}
python.stdin.end();

const summary = Object.fromEntries(MODES.map((spec) => {
  const r = rows.filter((x) => x.spec === spec);
  return [spec, { js_tps: median(r.map((x) => x.js_tps)), python_tps: median(r.map((x) => x.python_tps)),
    ratio: median(r.map((x) => x.ratio)), same_tokens: r.filter((x) => x.same_tokens).length, runs: r.length,
    accepted_of_drafted: Object.fromEntries(["js", "python"].map((side) => [side,
      `${r.reduce((a, x) => a + x.accepted[side], 0)} / ${r.reduce((a, x) => a + x.drafted[side], 0)}`])) }];
}));
const machine = { cpu: cpus()[0].model, logical_cpus: cpus().length,
  avx512: /avx512f/.test(readFileSync("/proc/cpuinfo", "utf-8")), vnni: /avx512_vnni/.test(readFileSync("/proc/cpuinfo", "utf-8")),
  threads, load_average_at_start: loadAtStart, load_average_at_end: loadavg() };
const manifest = model.manifest;
const report = { command: `node bench/node-vs-python.js ${args[0]} --reps ${reps} --tokens ${maxTokens} --threads ${threads} --modes ${MODES}`,
  model: manifest.source.name, export: { quantization: manifest.quantization?.precision, embed: manifest.quantization?.embed,
    lm_head: manifest.quantization?.lm_head }, versions: { node: process.version, "onnxruntime-node": ort.env.versions.node },
  machine, prompts: "edgespec/bench/prompts/default.jsonl (chat template, first turn)", summary, rows };
console.log(JSON.stringify(summary, null, 1));
if (jsonOut) writeFileSync(jsonOut, `${JSON.stringify(report, null, 1)}\n`);
if (markdownOut) {
  const lines = [`| mode | JS (onnxruntime-node) tok/s | Python (onnxruntime) tok/s | JS / Python (median of paired runs) | same tokens |`,
    "|---|---|---|---|---|", ...MODES.map((m) => { const s = summary[m];
      return `| ${m} | ${s.js_tps.toFixed(1)} | ${s.python_tps.toFixed(1)} | ${s.ratio.toFixed(2)}x | ${s.same_tokens}/${s.runs} |`; })];
  appendFileSync(markdownOut, `${lines.join("\n")}\n`);
}
