// The controller's cost curve, measured as Python's speculative/calibration/costs.py measures it: sizes in
// turns, the minimum of the reps, never cheaper for more rows. A scripted clock makes it exact.
import assert from "node:assert/strict";
import { test } from "node:test";
import { CostModel } from "../engine/controller.js";

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
