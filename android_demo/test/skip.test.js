// The drafters that run the target with layers skipped (layer-skip, S3D) in the JS engine: speculative output
// equals plain output on smollm2's export with layer plans (bit for bit in exact mode), and S3D with a drafter
// file the Python side wrote drafts exactly as Python's S3DDrafter on the same export (the same drafts kept);
// the default export (no layer plans) refuses them.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CostModel } from "../engine/controller.js";
import { autoDrafter } from "../engine/drafters/auto.js";
import { LayerSkipDrafter, middleSkip, S3DDrafter } from "../engine/drafters/skip.js";
import { decode, SpecStats } from "../engine/engine.js";
import { EdgespecError } from "../engine/errors.js";
import { Model } from "../engine/model.js";
import { Sampler } from "../engine/sampling.js";
import { exportDir, openFixture, python } from "./helpers.js";
import { loadNode } from "../engine/node.js";

const TOKENS = 48;
let model, trace, scratch;
before(async () => ({ trace, model, scratch } = await openFixture("edgespec-skip-", { layerPlans: true })));
after(() => rmSync(scratch, { recursive: true, force: true }));

async function run(ids, drafter, exact, stats = new SpecStats()) {
  const out = [];
  for await (const { token } of decode(model.backend, ids, new Sampler(), TOKENS, { drafter, stats, exact })) out.push(token);
  return out;
}

describe("layer-skip and S3D in the JS engine", () => {
  for (const exact of [true, false]) {
    it(`layer-skip: speculative output equals plain output${exact ? " bit for bit (exact mode)" : " (greedy)"}`, async (t) => {
      const c = trace.cases[exact ? 0 : 2]; // chat-capital's first token is a near-tie between 1-row and wider passes
      const plain = await run(c.prompt_ids, null, exact);
      const layers = model.manifest.config.num_layers;
      const stats = new SpecStats();
      const spec = await run(c.prompt_ids, new LayerSkipDrafter(model.backend, layers, middleSkip(layers), 3), exact, stats);
      t.diagnostic(`${c.name}: ${stats.accepted} of ${stats.drafted} drafts accepted in ${stats.steps} passes`);
      assert.ok(stats.accepted > 0 && stats.accepted < stats.drafted, JSON.stringify(stats));
      assert.deepEqual(spec, plain, `${c.name}: layer-skip speculative != plain`);
      assert.equal(model.backend.cacheLen, c.prompt_ids.length + TOKENS - 1); // the draft passes left no rows
    });
  }

  it("S3D from a Python-written drafter file drafts as Python's S3DDrafter and equals plain (exact mode)", async (t) => {
    // untrained mask rows (two token embeddings), as tests/test_ppd.py's smollm2 S3D test: the root row is a
    // layer-skip draft that verifies often, so drafts are both kept and rejected
    const c = trace.cases[2];
    const file = join(scratch, "s3d.npz");
    const py = JSON.parse(python(`
import json, sys, numpy as np
from edgespec.api import load
from edgespec.export.manifest import read_manifest
from edgespec.export.trained import export_hash, save_drafter
from edgespec.formats import open_weights
from edgespec import hub
from edgespec.sampling import Sampler, SamplingParams
from edgespec.speculative.drafters.s3d import S3DDrafter, middle_skip
from edgespec.speculative.engine import SpecStats, decode
model = load("smollm2-135m", threads=2, layer_plans=True)
layers = model.config.num_layers
rows = np.asarray(open_weights(hub.resolve_model("smollm2-135m").path).rows("embed", np.array([28, 29])), np.float32)
save_drafter(sys.argv[1], rows, {"kind": "s3d", "gamma": 3, "skip": middle_skip(layers),
                                 "export_hash": export_hash(read_manifest(model.source))})
stats = SpecStats()
drafter = S3DDrafter(model.backend, layers, middle_skip(layers), rows)
ids = json.loads(sys.argv[2])
tokens = [e.token for e in decode(model.backend, ids, Sampler(SamplingParams()), int(sys.argv[3]), drafter, 8, stats, exact=True)]
print(json.dumps({"tokens": tokens, "accepted": stats.accepted, "drafted": stats.drafted}))
`, [file, JSON.stringify(c.prompt_ids), String(TOKENS)]).trim().split("\n").pop());
    const bytes = new Uint8Array(readFileSync(file));
    const manifest = { ...model.manifest, drafters: [{ kind: "s3d", file: "s3d.npz",
      sha256: createHash("sha256").update(bytes).digest("hex") }] };
    const withDrafter = new Model(model.backend, model.tokenizer, manifest, { readFile: async () => bytes });
    await withDrafter.setSpec("s3d");
    assert.ok(withDrafter.drafter instanceof S3DDrafter && withDrafter.drafter.gamma === 3);
    assert.deepEqual(withDrafter.drafter.plan.map((on, i) => on ? -1 : i).filter((i) => i >= 0),
      middleSkip(model.manifest.config.num_layers));
    const plain = await run(c.prompt_ids, null, true);
    const stats = new SpecStats();
    const spec = await run(c.prompt_ids, withDrafter.drafter, true, stats);
    t.diagnostic(`${c.name}: JS ${stats.accepted} of ${stats.drafted} drafts kept, Python ${py.accepted} of ${py.drafted}`);
    assert.deepEqual(spec, plain, `${c.name}: S3D speculative != plain`);
    assert.deepEqual(py.tokens, plain, "Python's S3D output is the same tokens");
    assert.ok(stats.accepted > 0 && stats.accepted < stats.drafted, JSON.stringify(stats));
    assert.deepEqual([stats.accepted, stats.drafted], [py.accepted, py.drafted]); // the same drafts, kept alike

    // inside auto (an asynchronous candidate of the controller), with a fixed GPU-like cost curve
    const cost = new CostModel([1, 2, 4, 8, 16], [1, 1.05, 1.1, 1.2, 1.4]);
    const auto = await autoDrafter(model.backend, (text) => model.tokenizer.encode(text), { s3d: withDrafter.drafter, cost });
    const autoStats = new SpecStats();
    assert.deepEqual(await run(c.prompt_ids, auto, true, autoStats), plain, `${c.name}: auto (n-gram + S3D) != plain`);
    t.diagnostic(`auto: accepted by drafter ${JSON.stringify(autoStats.byDrafter)}`);
    assert.ok("s3d" in autoStats.byDrafter, JSON.stringify(autoStats.byDrafter)); // S3D was tried
  });

  it("the default export has no layer plans: it refuses layer-skip and S3D, naming the flag that makes them", async () => {
    const plain = await loadNode(exportDir());
    assert.equal(plain.backend.supportsPlan(), false);
    const layers = plain.manifest.config.num_layers;
    assert.throws(() => new LayerSkipDrafter(plain.backend, layers, middleSkip(layers), 3),
      /needs layer plans, which this export does not have \(made without --layer-plans\)/);
  });

  it("refuses an export without layer plans or extra rows, and a skip set outside the model", () => {
    const noPlans = { supportsPlan: () => false, hasExtraEmbeds: true };
    assert.throws(() => new S3DDrafter(noPlans, 30, [10], new Float32Array(8), 8), (e) => e instanceof EdgespecError &&
      /S3D drafting needs layer plans/.test(e.message));
    assert.throws(() => new S3DDrafter({ supportsPlan: () => true, hasExtraEmbeds: false }, 30, [10], new Float32Array(8), 8),
      /needs an export with the extra_embeds input/);
    // layers 0..6 and 23..29 are no If nodes in the graph (contract.js skippableLayers): a plan cannot skip them
    assert.throws(() => new LayerSkipDrafter(model.backend, 30, [3, 10, 30]),
      /skip set names layers 3,30; a layer plan of this 30-layer model may skip layers 7\.\.22 only/);
  });
});
