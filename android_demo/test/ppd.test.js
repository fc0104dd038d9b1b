// PPD (trained prompt tokens riding on the verify pass) in the JS engine: the drafter file written by the
// Python side is read and checked as export/trained.py checks it, and speculative output equals plain
// output on smollm2's default export (bit for bit in exact mode; greedy up to near-ties of multi-token
// passes, the rule of golden-compare.js's checkSpeculative) with prompt rows that know the answer
// most of the time (as tests/test_ppd.py's OraclePPD), so drafts are accepted and rejected.
import assert from "node:assert/strict";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CostModel } from "../engine/controller.js";
import { autoDrafter } from "../engine/drafters/auto.js";
import { exportHash, loadDrafterRows, PPDDrafter } from "../engine/drafters/ppd.js";
import { decode, SpecStats } from "../engine/engine.js";
import { ModelFormatError } from "../engine/errors.js";
import { readNpy } from "../engine/npz.js";
import { Sampler } from "../engine/sampling.js";
import { treeLayout } from "../engine/tree.js";
import { checkSpeculative } from "./golden-compare.js";
import { openFixture, python } from "./helpers.js";

let model, trace, scratch;
before(async () => ({ trace, model, scratch } = await openFixture("edgespec-ppd-")));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** Prompt rows fed the embeddings of the tokens plain decoding emits there, right 85% of the time. */
class OraclePPD extends PPDDrafter {
  constructor(truth, promptLen, embedRow, hidden) {
    super(new Float32Array(3 * hidden), hidden);
    Object.assign(this, { truth, promptLen, embedRow, state: 12345 });
  }

  random() { // mulberry32: a fixed sequence
    let t = (this.state = (this.state + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  propose(context, budget) {
    this.done = context.length - this.promptLen; // tokens emitted, the root included
    return super.propose(context, budget);
  }

  verifyRows(tree) {
    const extra = super.verifyRows(tree);
    const { depths } = treeLayout([-1, ...tree.parents.map((p) => p + 1)]);
    let at = 0;
    for (const r of this.attached) {
      for (let j = 0; j < this.m; j++, at++) {
        const i = this.done + depths[r] + j;
        const right = i < this.truth.length ? this.truth[i] : 0;
        extra.embeds.set(this.embedRow(this.random() < 0.85 ? right : (right + 1) % 1000), at * this.hidden);
      }
    }
    return extra;
  }
}

async function run(ids, drafter, exact, stats = new SpecStats()) {
  const out = [];
  for await (const { token } of decode(model.backend, ids, new Sampler(), 48, { drafter, stats, exact })) out.push(token);
  return out;
}

/** Embedding rows of smollm2's GGUF (the source of the export), id -> Float32Array. */
function embeddings(ids) {
  const file = join(scratch, "rows.npy");
  python("import sys, numpy as np; from edgespec import hub; from edgespec.formats import open_weights; " +
    "ids = [int(x) for x in sys.argv[2].split(',')]; " +
    "np.save(sys.argv[1], np.asarray(open_weights(hub.resolve_model('smollm2-135m').path).rows('embed', np.array(ids)), np.float32))",
  [file, ids.join(",")]);
  const { data, shape } = readNpy(new Uint8Array(readFileSync(file)));
  return new Map(ids.map((id, i) => [id, data.subarray(i * shape[1], (i + 1) * shape[1])]));
}

describe("PPD in the JS engine", () => {
  it("reads a drafter file the Python side wrote and refuses one trained for another export", async () => {
    const manifest = { graph: { file: "model.onnx" }, config: { hidden_size: 8 }, files: {
      "model.onnx": { sha256: "a".repeat(64) }, "model.onnx.data": { sha256: "b".repeat(64) } } };
    writeFileSync(join(scratch, "edgespec.json"), JSON.stringify(manifest));
    python("import sys, json, numpy as np; from pathlib import Path; " +
      "from edgespec.export.trained import export_hash, save_drafter, file_entry; " +
      "m = json.load(open(sys.argv[1] + '/edgespec.json')); p = Path(sys.argv[1]) / 'ppd.npz'; " +
      "save_drafter(p, np.arange(24, dtype=np.float32).reshape(3, 8) / 7, {'kind': 'ppd', 'k': 3, 'export_hash': export_hash(m)}); " +
      "print(json.dumps(file_entry(p)))", [scratch]);
    const bytes = new Uint8Array(readFileSync(join(scratch, "ppd.npz")));
    const { createHash } = await import("node:crypto");
    manifest.drafters = [{ kind: "ppd", file: "ppd.npz", sha256: createHash("sha256").update(bytes).digest("hex") }];
    const readFile = async () => bytes;
    const { rows, record } = await loadDrafterRows(manifest, readFile);
    assert.deepEqual(Array.from(rows), Array.from({ length: 24 }, (_, i) => Math.fround(i / 7)));
    assert.equal(record.export_hash, await exportHash(manifest)); // the same hash as Python's
    const other = { ...manifest, files: { ...manifest.files, "model.onnx.data": { sha256: "c".repeat(64) } } };
    await assert.rejects(loadDrafterRows(other, readFile), (e) => e instanceof ModelFormatError &&
      e.message.includes(record.export_hash) && e.message.includes("this export is"));
    await assert.rejects(loadDrafterRows({ ...manifest, drafters: [] }, readFile), /no trained ppd drafter/);
    await assert.rejects(loadDrafterRows(manifest, async () => bytes.slice(1)), /does not match the manifest's sha256/);
  });

  for (const exact of [true, false]) {
    it(`speculative output equals plain output${exact ? " bit for bit (exact mode)" : " (greedy)"}`, async (t) => {
      const c = trace.cases[exact ? 0 : 2];
      const plain = await run(c.prompt_ids, null, exact);
      const ids = [...new Set(plain.flatMap((id) => [id, (id + 1) % 1000]).concat([0, 1]))];
      const rows = embeddings(ids);
      const stats = new SpecStats();
      const drafter = new OraclePPD(plain, c.prompt_ids.length, (id) => rows.get(id), model.manifest.config.hidden_size);
      const spec = await run(c.prompt_ids, drafter, exact, stats);
      t.diagnostic(`${c.name}: ${stats.accepted} of ${stats.drafted} drafts accepted in ${stats.steps} passes`);
      assert.ok(stats.accepted > 10 && stats.accepted < stats.drafted, JSON.stringify(stats));
      if (exact) assert.deepEqual(spec, plain, `${c.name}: PPD speculative != plain`);
      else t.diagnostic(`${c.name}: ${await checkSpeculative(model.backend, c.prompt_ids, plain, spec,
        `${c.name}: PPD speculative vs plain`)} of ${plain.length} tokens equal plain's`);
    });
  }

  it("auto with PPD among its candidates equals plain output bit for bit (exact mode), PPD's drafts kept", async (t) => {
    const c = trace.cases[1];
    const plain = await run(c.prompt_ids, null, true);
    const rows = embeddings([...new Set(plain.flatMap((id) => [id, (id + 1) % 1000]).concat([0, 1]))]);
    const oracle = new OraclePPD(plain, c.prompt_ids.length, (id) => rows.get(id), model.manifest.config.hidden_size);
    // a fixed, GPU-like cost curve (a measured one moves with the machine's load): the choices are the
    // controller's, not the timer's (its drift rescales every pass size alike)
    const cost = new CostModel([1, 2, 4, 8, 16], [1, 1.05, 1.1, 1.2, 1.4]);
    const drafter = await autoDrafter(model.backend, (text) => model.tokenizer.encode(text), { ppd: oracle, cost });
    const stats = new SpecStats();
    const spec = await run(c.prompt_ids, drafter, true, stats);
    t.diagnostic(`${c.name}: accepted by drafter ${JSON.stringify(stats.byDrafter)} in ${stats.steps} passes`);
    assert.ok((stats.byDrafter.ppd ?? 0) > 0, JSON.stringify(stats.byDrafter)); // chosen, and its drafts kept
    assert.deepEqual(spec, plain, `${c.name}: auto (n-gram + PPD) speculative != plain`);
  });
});
