// Bad inputs give one clear error naming the bad value and what was expected.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { GRAPH_CONTRACT_VERSION } from "../engine/contract.js";
import { decode } from "../engine/engine.js";
import { ContextOverflowError, EdgespecError, ModelFormatError } from "../engine/errors.js";
import { loadNode, readExport } from "../engine/node.js";
import { Sampler, SamplingParams } from "../engine/sampling.js";
import { exportDir } from "./helpers.js";

let dir, scratch;
before(() => {
  dir = exportDir();
  scratch = mkdtempSync(join(tmpdir(), "edgespec-js-"));
});
after(() => rmSync(scratch, { recursive: true, force: true }));

/** A copy of the export (its files symlinked, minus `drop`) whose manifest `change` edits. */
function exportCopy(name, change = () => {}, drop = []) {
  const out = join(scratch, name);
  const manifest = JSON.parse(readFileSync(join(dir, "edgespec.json"), "utf-8"));
  change(manifest);
  mkdirSync(out);
  for (const file of Object.keys(manifest.files)) if (!drop.includes(file)) symlinkSync(join(dir, file), join(out, file));
  writeFileSync(join(out, "edgespec.json"), JSON.stringify(manifest));
  return out;
}

describe("bad inputs", () => {
  it("a directory that is not an export", async () => {
    await assert.rejects(readExport(scratch), (e) => e instanceof ModelFormatError && /has no edgespec.json/.test(e.message));
  });

  it("a missing export file is named", async () => {
    const out = exportCopy("missing", () => {}, ["model.onnx.data"]);
    await assert.rejects(readExport(out), (e) => e instanceof ModelFormatError &&
      e.message.includes("is missing model.onnx.data, which its manifest lists"));
  });

  it("a file that does not match its manifest hash", async () => {
    const out = exportCopy("corrupt", (m) => { m.files["tokenizer_config.json"].sha256 = "0".repeat(64); });
    await assert.rejects(readExport(out), (e) => e instanceof ModelFormatError &&
      e.message.includes("tokenizer_config.json does not match its manifest"));
  });

  it("another graph contract version is refused with both versions named", async () => {
    const out = exportCopy("contract", (m) => { m.graph_contract.version = 99; });
    await assert.rejects(readExport(out), (e) => e instanceof ModelFormatError &&
      e.message.includes("graph contract version 99") && e.message.includes(`runs graph contract version ${GRAPH_CONTRACT_VERSION}`));
    const none = exportCopy("no-contract", (m) => { delete m.graph_contract; });
    await assert.rejects(readExport(none), /no graph contract/);
  });

  it("a prompt over the context, and bad sampling values", async () => {
    const model = await loadNode(dir, { context: 64, verify: false });
    const prompt = model.tokenizer.encode("word ".repeat(80));
    await assert.rejects(async () => { for await (const _ of decode(model.backend, prompt, new Sampler(), 8)) { /* drain */ } },
      (e) => e instanceof ContextOverflowError && e.message === `${prompt.length} prompt + 8 new tokens exceed the context of 64 tokens`);
    assert.equal(model.backend.cacheLen, 0, "a refused prompt left tokens in the cache");
    assert.throws(() => new SamplingParams({ topP: 0 }), (e) => e instanceof EdgespecError && /top_p must be in \(0, 1\], got 0/.test(e.message));
    await assert.rejects(model.setSpec("lookahead"), /unknown spec 'lookahead'; expected off \| ngram \| ppd \| s3d \| layerskip \| auto/);
    await assert.rejects(model.setSpec("ppd"), /this export has no trained ppd drafter; train one with `edgespec train ppd/);
    await assert.rejects(model.setSpec("s3d"), /this export has no trained s3d drafter; train one with `edgespec train s3d/);
  });
});
