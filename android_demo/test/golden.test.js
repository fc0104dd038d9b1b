// The JS engine on onnxruntime-node replays the golden traces of the Python tests (same export):
// tokenizer and chat template give the same prompt ids; plain greedy gives the same tokens and logits
// (within the golden's tolerance) with every CPU KV scheme ("appended" on the export's variant with new-row
// outputs, same weights); n-gram and auto speculation give the same tokens up to near-ties of multi-token passes
// (as tests/test_spec_real.py), and exactly in exact mode.
import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { OrtBackend } from "../engine/backend/ort.js";
import { autoDrafter } from "../engine/drafters/auto.js";
import { NgramDrafter } from "../engine/drafters/ngram.js";
import { decode, SpecStats } from "../engine/engine.js";
import { loadNode } from "../engine/node.js";
import { Sampler } from "../engine/sampling.js";
import { checkExportIdentity, checkLogits, checkSpeculative as checkSpeculativeRun, checkTokens as checkTokensOf }
  from "./golden-compare.js";
import { exportDir, golden, recording } from "./helpers.js";

let model, rowsModel, trace;
const checkTokens = (got, c, label) => checkTokensOf(trace, got, c, label);

before(async () => {
  trace = golden();
  const dir = exportDir();
  model = await loadNode(dir);
  checkExportIdentity(trace, model.manifest, dir);
  const rowsDir = exportDir({ newRows: true });
  rowsModel = await loadNode(rowsDir);
  assert.equal(rowsModel.manifest.files["model.onnx.data"].sha256, model.manifest.files["model.onnx.data"].sha256,
    `${rowsDir} (--new-rows) does not hold the default export's weights`);
});

/** Speculative greedy vs the golden (plain) tokens, judged at the golden's own top-1/top-2 gaps. */
const checkSpeculative = (got, golden, label) => checkSpeculativeRun(model.backend, golden.prompt_ids, golden.tokens,
  got, label, (step) => golden.steps[step].top_logits[0] - golden.steps[step].top_logits[1]);

async function greedy(backend, ids, drafter, stats = new SpecStats()) {
  const out = [];
  for await (const { token } of decode(backend, ids, new Sampler(), trace.protocol.tokens, { drafter, stats })) out.push(token);
  return out;
}

describe("golden traces of smollm2-135m's default export", () => {
  it("tokenizer and chat template give the golden prompt ids", () => {
    for (const c of trace.cases) {
      const ids = c.chat_template ? model.tokenizer.chatIds(c.messages) : model.tokenizer.encode(c.text);
      assert.deepEqual(ids, c.prompt_ids, c.name);
      assert.equal(model.tokenizer.decode(c.tokens), c.output_text, `${c.name}: detokenized output`);
    }
  });

  it("node's KV scheme: appended where the export returns its new rows, else hybrid; appended refused without", () => {
    assert.equal(model.backend.kvScheme, "hybrid");
    assert.equal(rowsModel.backend.kvScheme, "appended");
    assert.throws(() => new OrtBackend(model.backend.ort, model.backend.session, model.manifest.config,
      model.backend.maxLen, { kvScheme: "appended" }), /does not return \(made without --new-rows\)/);
  });

  // appended (node's default on an export with new rows) on that variant, the others on the default export;
  // hybrid switching at 40 rows: the 37-token case switches to aliased mid-trace, the 18-token one switches
  // back after the reset and again mid-trace, the 7-token one stays returned
  for (const kvScheme of ["appended", "aliased", "returned", "hybrid"]) {
    it(`plain greedy equals the golden tokens and logits (KV scheme ${kvScheme})`, async (t) => {
      const on = kvScheme === "appended" ? rowsModel : model;
      const backend = new OrtBackend(on.backend.ort, on.backend.session, on.manifest.config, on.backend.maxLen,
        { kvScheme });
      const switches = { toAliased: 0, toReturned: 0 };
      if (kvScheme === "hybrid") {
        backend.kv.switchAt = 40;
        for (const move of Object.keys(switches)) {
          const original = backend.kv[move].bind(backend.kv);
          backend.kv[move] = () => { switches[move] += 1; original(); };
        }
      }
      for (const c of trace.cases) {
        const rec = recording(backend);
        const tokens = await greedy(rec.backend, c.prompt_ids, null);
        const n = checkTokens(tokens, c, `${c.name} (${kvScheme})`);
        t.diagnostic(`${c.name}: ${n} of ${c.steps.length} tokens equal the golden trace`);
        checkLogits(trace, (step, id) => rec.rows[step][id], c, n, c.name);
      }
      if (kvScheme === "hybrid") {
        t.diagnostic(`switches: ${JSON.stringify(switches)}`);
        assert.ok(switches.toAliased >= 2 && switches.toReturned >= 1, JSON.stringify(switches));
      }
    });
  }

  for (const variant of ["default", "new-rows"]) { // the hybrid and appended schemes' keep and rollback
    it(`n-gram speculative greedy equals the golden tokens, with drafts accepted (${variant} export)`, async (t) => {
      const { backend } = variant === "default" ? model : rowsModel;
      let accepted = 0;
      for (const c of trace.cases) {
        const stats = new SpecStats();
        const n = await checkSpeculative(await greedy(backend, c.prompt_ids, new NgramDrafter(), stats), c,
          `${c.name} (ngram, ${backend.kvScheme})`);
        t.diagnostic(`${c.name}: ${n} tokens equal, ${stats.accepted} drafts accepted in ${stats.steps} steps`);
        accepted += stats.accepted;
      }
      assert.ok(accepted > 0, "the n-gram drafter never had a draft accepted: the speculative path was not exercised");
    });
  }

  it("exact mode: n-gram speculative greedy equals exact plain greedy token for token (appended)", async (t) => {
    for (const c of trace.cases.slice(0, 2)) { // two cases: every pass has 2+ rows here, so this costs 2x
      const exact = async (drafter, stats) => {
        const out = [];
        for await (const { token } of decode(rowsModel.backend, c.prompt_ids, new Sampler(), trace.protocol.tokens,
          { drafter, stats, exact: true })) out.push(token);
        return out;
      };
      const stats = new SpecStats();
      const plain = await exact(null, new SpecStats());
      assert.deepEqual(await exact(new NgramDrafter(), stats), plain, `${c.name}: exact speculative != exact plain`);
      t.diagnostic(`${c.name}: ${plain.length} tokens equal, ${stats.accepted} drafts accepted`);
    }
  });

  it("auto (controller over n-gram) speculative greedy equals the golden tokens", async (t) => {
    const drafter = await autoDrafter(model.backend, (t) => model.tokenizer.encode(t), { reps: 1 });
    for (const c of trace.cases) {
      t.diagnostic(`${c.name}: ${await checkSpeculative(await greedy(model.backend, c.prompt_ids, drafter), c, `${c.name} (auto)`)} tokens equal`);
    }
  });
});
