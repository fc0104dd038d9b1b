// JS beside Python with each side alone on the machine: fresh processes in turn (JS, Python, JS, ...), greedy,
// plain or auto, the 5 default prompts. node-vs-python.js keeps both engines loaded at once, and measured: a node
// process that has the Python worker beside it decodes 20-30% slower than alone, even once the worker is
// idle or killed, while Python is not slowed by node (benchmarks/js-engine.md). This bench is the other view.
// Usage (from android_demo/): node bench/alternate.js EXPORT_DIR [--reps 3] [--tokens 96] [--threads 2]
//   [--spec off|auto] [--kv appended] [--node-flags "--single-threaded-gc"] [--json FILE]; PYTHON (default python)
//   runs the Python side. --node-flags: V8/node flags for the JS side's process (README: on 2 cores V8's GC
//   helper threads preempt onnxruntime's compute threads; --single-threaded-gc keeps them off).
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const args = process.argv.slice(2);
const option = (name, fallback) => { const i = args.indexOf(name); return i < 0 ? fallback : args.splice(i, 2)[1]; };
const side = option("--side", null), idsFile = option("--ids", join(tmpdir(), "edgespec-alternate-ids.json"));
const reps = Number(option("--reps", 3)), maxTokens = Number(option("--tokens", 96)), threads = Number(option("--threads", 2));
const nodeFlags = option("--node-flags", "").split(" ").filter(Boolean);
const kvScheme = option("--kv", null), jsonOut = option("--json", null), spec = option("--spec", "off");
if (!["off", "auto"].includes(spec)) throw new Error(`--spec ${spec}: expected off or auto`);
const dir = resolve(args[0]);
const median = (v) => { const s = [...v].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

if (side === "js") { // one fresh JS process: decode every prompt, print {tps, tokens}
  const { loadNode } = await import("../engine/node.js");
  const { decode } = await import("../engine/engine.js");
  const { Sampler } = await import("../engine/sampling.js");
  const model = await loadNode(dir, { threads, kvScheme, verify: false });
  // auto as node-vs-python.js builds it on both sides: the controller over n-gram, this device's cost curve
  const { autoDrafter } = await import("../engine/drafters/auto.js");
  const drafter = spec === "auto" ? await autoDrafter(model.backend, (t) => model.tokenizer.encode(t), { maxBudget: 8 }) : null;
  const out = [];
  for (const ids of JSON.parse(readFileSync(idsFile, "utf-8"))) {
    const tokens = [];
    let first = null;
    for await (const { token } of decode(model.backend, ids, new Sampler(), maxTokens, { drafter, budget: 8 })) { first ??= performance.now(); tokens.push(token); }
    model.backend.reset();
    out.push({ tps: (tokens.length - 1) / ((performance.now() - first) / 1000), tokens });
  }
  console.log(JSON.stringify(out));
  process.exit(0);
}

// the prompts' chat ids, made once by the JS tokenizer (the same ids for both sides)
const prompts = readFileSync(join(REPO, "edgespec/bench/prompts/default.jsonl"), "utf-8").trim().split("\n").map((l) => JSON.parse(l));
const { readExport, readTokenizer } = await import("../engine/node.js"); // no session in this process
const tokenizer = readTokenizer(dir, await readExport(dir, { verify: false }));
writeFileSync(idsFile, JSON.stringify(prompts.map((p) => tokenizer.chatIds([{ role: "user", content: p.turns[0] }]))));
const { CALIBRATION_TEXT } = await import("../engine/controller.js");
const calibration = tokenizer.encode(CALIBRATION_TEXT); // the cost-curve prompt, as node-vs-python.js sends it

const pythonSide = `
import json, sys, time
from edgespec.export.manifest import manifest_config, read_manifest
from edgespec.runtimes.ort import OrtBackend
from edgespec.sampling import Sampler, SamplingParams
from edgespec.speculative.calibration.costs import measure_cost_model
from edgespec.speculative.controller import ControlledDrafter, Controller
from edgespec.speculative.drafters.ngram import NgramDrafter
from edgespec.speculative.engine import decode
d, ids_file, tokens, threads, spec, calibration = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], json.loads(sys.argv[6])
m = read_manifest(d, verify=False)
backend = OrtBackend(f"{d}/{m['graph']['file']}", manifest_config(m), m["max_len"], threads=threads)
drafter = None
if spec == "auto":
    cost = measure_cost_model(backend, calibration, reps=3)
    drafter = ControlledDrafter({"ngram": NgramDrafter(min_ngram=1)}, Controller(cost, max_budget=8, free={"ngram"}))
out = []
for ids in json.load(open(ids_file)):
    got, first = [], None
    for e in decode(backend, ids, Sampler(SamplingParams()), tokens, drafter, budget=8):
        first = first or time.perf_counter()
        got.append(e.token)
    out.append({"tps": (len(got) - 1) / (time.perf_counter() - first), "tokens": got})
    backend.reset()
print(json.dumps(out))
`;
const run = (which) => JSON.parse((which === "js"
  ? execFileSync(process.execPath, [...nodeFlags, fileURLToPath(import.meta.url), dir, "--side", "js", "--ids", idsFile, "--tokens", String(maxTokens), "--threads", String(threads), ...(kvScheme ? ["--kv", kvScheme] : []), "--spec", spec], { encoding: "utf-8", stdio: ["ignore", "pipe", "inherit"] })
  : execFileSync(process.env.PYTHON ?? "python", ["-c", pythonSide, dir, idsFile, String(maxTokens), String(threads), spec,
    JSON.stringify(calibration)], { cwd: REPO, env: { ...process.env, PYTHONPATH: REPO }, encoding: "utf-8", stdio: ["ignore", "pipe", "inherit"] })
).trim().split("\n").pop());

const loadAtStart = loadavg();
const runs = { js: [], python: [] };
for (let rep = 0; rep < reps; rep++) {
  for (const which of rep % 2 ? ["python", "js"] : ["js", "python"]) {
    const result = run(which);
    runs[which].push(result);
    console.log(`rep ${rep} ${which}: ${result.map((r) => r.tps.toFixed(1)).join(" ")} tok/s`);
  }
}
const perRep = (which) => runs[which].map((r) => median(r.map((x) => x.tps)));
const ratios = perRep("js").map((js, i) => js / perRep("python")[i]);
const same = runs.js.flatMap((r, i) => r.map((x, p) => x.tokens.every((t, j) => t === runs.python[i][p].tokens[j]))).filter(Boolean).length;
const summary = { js_tps: median(perRep("js")), python_tps: median(perRep("python")), ratio: median(ratios), ratios,
  same_tokens: `${same}/${runs.js.length * prompts.length}` };
console.log(JSON.stringify(summary));
if (jsonOut) {
  const versions = JSON.parse(readFileSync(join(REPO, "android_demo/node_modules/onnxruntime-node/package.json"), "utf-8")).version;
  writeFileSync(jsonOut, JSON.stringify({ command: `node bench/alternate.js ${process.argv.slice(2).join(" ")}`, export: dir,
    machine: { cpu: cpus()[0]?.model, logical_cpus: cpus().length, threads, load_average_at_start: loadAtStart, load_average_at_end: loadavg() },
    versions: { node: process.version, "onnxruntime-node": versions }, kvScheme: kvScheme ?? "loadNode default (appended with --new-rows, else hybrid)", spec, tokens: maxTokens, nodeFlags, summary,
    runs: Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, v.map((r) => r.map((x) => x.tps))])) }, null, 1));
}
