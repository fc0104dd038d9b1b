// The controller's cost curve, measured as Python's speculative/calibration/costs.py measures it: sizes in
// turns, the minimum of the reps, never cheaper for more rows. A scripted clock makes it exact.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Acceptance, Controller, CostModel } from "../engine/controller.js";
import { BUCKETS, DIVERGENCE_PRIOR, NgramDrafter, PRIORS, STOP_BELOW } from "../engine/drafters/ngram.js";
import { python } from "./helpers.js";

/** A backend whose forward of T rows takes script(T, call) seconds on a fake clock. */
function scriptedBackend(script) {
  const clock = { t: 0 };
  let cached = 0, call = 0;
  const backend = {
    order: [],
    reset() { cached = 0; },
    rollback(n) { cached -= n; },
    async forward(tokens) { backend.order.push(tokens.length); clock.t += script(tokens.length, call++); cached += tokens.length; },
    get cacheLen() { return cached; },
  };
  return { backend, clock: () => clock.t };
}

test("cost curve: sizes take turns, the minimum of the reps, monotone in T", async () => {
  // 4-row passes cost 3 s but 5 s in one burst; 3-row passes look slower (9 s) than 4-row ones (noise)
  const base = { 1: 1, 2: 2, 3: 9, 4: 3 };
  const { backend, clock } = scriptedBackend((T, call) => (T === 4 && call === 8 ? 5 : base[T] ?? 50));
  const cost = await CostModel.measure(backend, [7, 8, 9], [1, 2, 3, 4], 2, clock);
  assert.deepEqual(backend.order, [3, 1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4], "prefill, then rounds over every size");
  assert.deepEqual(cost.seconds, [1, 2, 9, 9], "the warm-up round is dropped; 4 rows never cheaper than 3");
  assert.equal(backend.cacheLen, 0);
});

test("cost curve: a burst in the measured rounds does not raise a size's time", async () => {
  const { backend, clock } = scriptedBackend((T, call) => (call >= 5 && call <= 8 ? 10 * T : T)); // round 1 slowed
  const cost = await CostModel.measure(backend, [1, 2], [1, 2, 4, 8], 3, clock);
  assert.deepEqual(cost.seconds, [1, 2, 4, 8]);
});

test("n-gram buckets: the match length's tier, as ngram.py names them", () => {
  const drafter = new NgramDrafter({ minNgram: 1 });
  assert.equal(drafter.bucket([5, 6, 7, 8, 9, 5, 6, 7]), "ngram/n3");
  const long = [...Array(10).keys()].map((i) => 10 + i).concat([0], [...Array(9).keys()].map((i) => 10 + i));
  assert.equal(drafter.bucket(long), "ngram/n7+");
  assert.equal(drafter.lastMatch, 8);
  assert.equal(drafter.bucket(long.slice(0, -4)), "ngram/n4-6");
  assert.equal(drafter.bucket([1, 2, 3]), null);
});

test("n-gram buckets, their priors and the parting-point constants are ngram.py's, value for value", () => {
  const py = JSON.parse(python("import json; from edgespec.speculative.drafters import ngram; " +
    "print(json.dumps({'buckets': ngram.BUCKETS, 'priors': ngram.PRIORS, " +
    "'divergence_prior': ngram.DIVERGENCE_PRIOR, 'stop_below': ngram.STOP_BELOW}))"));
  assert.deepEqual(BUCKETS, py.buckets);
  assert.deepEqual(PRIORS, py.priors);
  assert.deepEqual([DIVERGENCE_PRIOR, STOP_BELOW], [py.divergence_prior, py.stop_below]);
});

test("auto's n-gram drafts stop where earlier continuations part, as ngram.py's do", () => {
  const cases = [
    [[9, 1, 2, 3, 4, 5, 9, 1, 2, 3, 4, 6, 9, 1, 2], 6], [[9, 1, 2, 3, 4, 5, 9, 1, 2, 3, 4, 6, 9, 1, 2], 8],
    [[9, 1, 2, 3, 4, 5, 9, 1, 2, 3, 4, 6, 9, 1, 2], 2], [[1, 7, 2, 1, 5, 3, 1], 1], [[1, 7, 2, 1, 5, 3, 1], 4],
    [[5, 6, 7, 8, 9, 5, 6, 7], 3], [[1, 2, 3], 2],
  ];
  const run = (make, context, budget) => { const d = make(); return [d.bucket(context), d.propose(context, budget).tokens]; };
  const js = cases.map(([c, k]) => [run(() => NgramDrafter.forAuto(), c, k), run(() => new NgramDrafter(), c, k)]);
  const py = JSON.parse(python("import json; from edgespec.speculative.drafters.ngram import NgramDrafter as N\n" +
    `cases = ${JSON.stringify(cases)}\n` +
    "def run(d, c, k): return [d.bucket(c), d.propose(c, k).tokens]\n" +
    "print(json.dumps([[run(N.for_auto(), c, k), run(N(), c, k)] for c, k in cases]))"));
  assert.deepEqual(js, py);
  assert.deepEqual(js[0][0], ["ngram/n3", [3, 4]], "auto stops where 3 4 5 and 3 4 6 part");
  assert.deepEqual(js[3][0], ["ngram/split", [5]], "1 was followed by 7, then by 5");
});

test("auto's n-gram drafter scores its parting-point predictions as ngram.py's does", () => {
  const context = [9, 1, 2, 3, 4, 5, 9, 1, 2, 3, 4, 6, 9, 1, 2];
  const steps = [context, context.concat([3, 4, 6]), context.concat([3, 4, 6, 9, 1, 2, 3, 4, 5]), context.concat([3, 4, 5])];
  const js = NgramDrafter.forAuto();
  const scored = steps.map((c) => { js.bucket(c); return [...js.divergence, js.divergenceRate()]; });
  const py = JSON.parse(python("import json; from edgespec.speculative.drafters.ngram import NgramDrafter\n" +
    `d = NgramDrafter.for_auto()\nsteps = ${JSON.stringify(steps)}\n` +
    "print(json.dumps([(d.bucket(c), [*d.divergence, d.divergence_rate()])[1] for c in steps]))"));
  assert.deepEqual(scored, py);
  assert.deepEqual(scored[1].slice(0, 2), [1, 1], "the 6 predicted at the parting point came");
  js.divergence = [30, 30];
  assert.deepEqual(js.propose(context, 6).tokens, [3, 4, 6, 9, 1, 2], "kept often: drafts go through");
});

test("acceptance with a measured prior starts there and learns at its weight (as controller.py)", () => {
  const a = new Acceptance(0.8, 1.0, { deeper: 0.9, weight: 8 });
  assert.deepEqual(a.rates(3), [0.8, 0.9, 0.9]);
  a.observe(2, 0);
  assert.deepEqual(a.rates(2), [(8 * 0.8) / 9, 0.9]);
});

test("a bucket with a measured prior survives an unlucky first miss; without priors it is starved", () => {
  for (const [priors, draftsOn] of [[PRIORS, true], [{}, false]]) {
    const controller = new Controller(new CostModel([1, 2, 4, 8, 16], [0.014, 0.0173, 0.026, 0.0438, 0.0794]),
      { free: ["ngram"], priors });
    const buckets = new Map([["ngram", "ngram/n7+"]]);
    assert.ok(controller.plan(["ngram"], buckets).k >= 1);
    controller.observe("ngram", 4, 0, 0, 5, 0.03, "ngram/n7+");
    const { name, k } = controller.plan(["ngram"], buckets);
    assert.equal(name === "ngram" && k >= 3, draftsOn);
  }
});
