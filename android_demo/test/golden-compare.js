// The golden traces' comparison rule (tests/golden/*.json "tolerance"), shared by the node test and the
// browser test so that both judge a replay the same way as the Python side.
import assert from "node:assert/strict";

/**
 * How many leading tokens of a plain greedy replay agree with the golden case. A replay may part from
 * the golden only at a near-tie (golden top-1 minus top-2 gap under 2 x logit_abs); the comparison ends there.
 */
export function checkTokens(trace, got, golden, label) {
  const tie = 2 * trace.tolerance.logit_abs;
  for (let i = 0; i < golden.tokens.length; i++) {
    if (got[i] !== golden.tokens[i]) {
      const gap = golden.steps[i].top_logits[0] - golden.steps[i].top_logits[1];
      assert.ok(gap < tie, `${label}: token ${i} is ${got[i]}, the golden trace has ${golden.tokens[i]} ` +
        `(top-1/top-2 gap ${gap}, not a near-tie)`);
      return i;
    }
  }
  return golden.tokens.length;
}

/**
 * A speculative greedy run `got` against the plain greedy tokens `plain` after `promptIds`, with
 * tests/test_spec_real.py's rule: a T-token pass rounds differently from a 1-token pass (int8 activations), so
 * the runs may part only at a near-tie: where the top-1/top-2 gap (gapAt(step, plain's 1-token-pass logits);
 * by default those logits' own) is below the measured difference between the 1-token-pass and the
 * multi-token-pass logits for the same input. Returns how many tokens agree.
 */
export async function checkSpeculative(backend, promptIds, plain, got, label, gapAt = (_, one) => topGap(one)) {
  const first = plain.findIndex((t, i) => got[i] !== t);
  if (first < 0) return plain.length;
  const prefix = [...promptIds, ...plain.slice(0, first)];
  backend.reset(); // plain's numerics: the prompt, then one token per pass
  let one = (await backend.forward(promptIds, { logitsFor: [promptIds.length - 1] })).row(0);
  for (const token of plain.slice(0, first)) one = Float32Array.from((await backend.forward([token])).row(0));
  backend.reset(); // the same input through one multi-token pass
  const many = (await backend.forward(prefix, { logitsFor: [prefix.length - 1] })).row(0);
  backend.reset();
  let rounding = 0;
  for (let v = 0; v < one.length; v++) rounding = Math.max(rounding, Math.abs(one[v] - many[v]));
  const gap = gapAt(first, one);
  assert.ok(gap < rounding, `${label}: diverged at token ${first} with top-1/top-2 gap ${gap} >= pass difference ${rounding}`);
  return first;
}

function topGap(logits) {
  let a = -Infinity, b = -Infinity;
  for (const v of logits) if (v > a) [a, b] = [v, a]; else if (v > b) b = v;
  return a - b;
}

/**
 * The replay's logits of each golden top id are within logit_abs of the golden's, for the first `n + 1`
 * steps (step n chose the token that differed). rowLogit(step, id) -> the replay's logit.
 */
export function checkLogits(trace, rowLogit, golden, n, label) {
  for (let s = 0; s < Math.min(n + 1, golden.steps.length); s++) {
    golden.steps[s].top_ids.forEach((id, j) => {
      const diff = Math.abs(rowLogit(s, id) - golden.steps[s].top_logits[j]);
      assert.ok(diff <= trace.tolerance.logit_abs, `${label} step ${s}: logit of ${id} off by ${diff}`);
    });
  }
}

/**
 * The export is the one the traces were made from: the same graph (model.onnx: the same on every
 * machine). Its weights may differ in bytes when it was made on another CPU (GPTQ's float arithmetic
 * rounds a few int4 levels the other way): then the logit tolerance decides, and `note` says so.
 */
export function checkExportIdentity(trace, manifest, dir, note = console.log) {
  assert.equal(manifest.files["model.onnx"]?.sha256, trace.export.files["model.onnx"].sha256,
    `${dir}/model.onnx is not the graph the golden traces were made from: regenerate them (${trace.regenerate})`);
  if (manifest.files["model.onnx.data"]?.sha256 !== trace.export.files["model.onnx.data"].sha256) {
    note(`${dir}: the weights differ in bytes from the golden's (made on ${trace.produced_by.cpu}): comparing under the tolerance`);
  }
}
