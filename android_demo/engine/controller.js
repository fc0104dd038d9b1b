// How much to speculate, from measurements of this device (port of edgespec/speculative/controller.py;
// the model is in that file's docstring):
//   E[tokens | K] = 1 + sum_{d=1..K} prod_{j<=d} a_j      time(K) = draft_time(K) + t(K + 1)
//   choose argmax E / time over K = 0..budget (K = 0: a plain step, 1 token in t(1))
// t(T) is measured on this device at load (costCurve); a_j is a decayed online estimate per drafter.
import { DraftTree } from "./tree.js";

export const CALIBRATION_SIZES = [1, 2, 3, 4, 6, 8, 12, 16];
export const CALIBRATION_TEXT = "def quicksort(items):\n    \"\"\"Sort a list of numbers.\"\"\"\n".repeat(4);
const PROBE_SHARE = 0.02; // at most this share of decode time goes to re-probing drafters that did not pay
const now = () => performance.now() / 1000;

/** Seconds of one forward pass of T tokens, interpolated from measured sizes. */
export class CostModel {
  constructor(sizes, seconds) {
    this.sizes = sizes;
    this.seconds = seconds;
    this.drift = 1.0; // observed / predicted, decayed
    this.table = new Map(); // T -> measured-curve seconds
  }

  passSeconds(T) {
    let base = this.table.get(T);
    if (base === undefined) this.table.set(T, (base = this.interpolate(T)));
    return this.drift * base;
  }

  interpolate(T) {
    const { sizes, seconds } = this;
    const n = sizes.length;
    if (T > sizes[n - 1]) { // extrapolate with the last segment's slope
      const slope = (seconds[n - 1] - seconds[n - 2]) / (sizes[n - 1] - sizes[n - 2]);
      return seconds[n - 1] + slope * (T - sizes[n - 1]);
    }
    if (T <= sizes[0]) return seconds[0];
    const i = sizes.findIndex((s) => s >= T);
    const f = (T - sizes[i - 1]) / (sizes[i] - sizes[i - 1]);
    return seconds[i - 1] + f * (seconds[i] - seconds[i - 1]);
  }

  observe(T, seconds, decay = 0.95) {
    const predicted = this.passSeconds(T) / this.drift;
    this.drift = decay * this.drift + (1 - decay) * seconds / predicted;
  }

  /**
   * Measure t(T) on this backend after a fixed prompt, as speculative/calibration/costs.py does: the sizes take
   * turns rep by rep (a burst of other work slows every size alike, not one size's whole window), each size's
   * time is the minimum of its reps (other work can only raise a time), and a pass of more rows never costs
   * less than a smaller one (noise that says otherwise would make long drafts look free).
   */
  static async measure(backend, promptIds, sizes = CALIBRATION_SIZES, reps = 3, clock = now) {
    backend.reset();
    await backend.forward(promptIds, { logitsFor: [promptIds.length - 1] });
    const inputs = sizes.map((T) => Array.from({ length: T }, (_, i) => promptIds[i % promptIds.length]));
    const best = sizes.map(() => Infinity);
    for (let r = 0; r <= reps; r++) { // the first round is a warm-up
      for (const [i, tokens] of inputs.entries()) {
        const start = clock();
        await backend.forward(tokens);
        const seconds = clock() - start;
        backend.rollback(tokens.length);
        if (r > 0) best[i] = Math.min(best[i], seconds);
      }
    }
    backend.reset();
    for (let i = 1; i < best.length; i++) best[i] = Math.max(best[i], best[i - 1]);
    return new CostModel([...sizes], best);
  }
}

/**
 * Decayed per-depth acceptance counts of one drafter, with a prior. Without `deeper` the prior is weak (worth one
 * draft) and a depth never tried borrows the rate of the deepest one tried above it; with `deeper` (a drafter that
 * knows its buckets: n-gram match lengths) every depth starts from a measured rate worth `weight` drafts:
 *   a_d = (hits_d + weight * p_d) / (trials_d + weight),   p_1 = prior, p_d = deeper for d > 1
 */
export class Acceptance {
  constructor(prior = 0.5, decay = 0.97, { deeper = null, weight = 1 } = {}) {
    Object.assign(this, { prior, decay, deeper, weight, hits: [], trials: [] });
  }

  /** a_1..a_depth. */
  rates(depth) {
    const out = [];
    if (this.deeper !== null) {
      for (let d = 0; d < depth; d++) {
        const p = d === 0 ? this.prior : this.deeper;
        out.push(((this.hits[d] ?? 0) + this.weight * p) / ((this.trials[d] ?? 0) + this.weight));
      }
      return out;
    }
    let current = this.prior;
    for (let d = 0; d < depth; d++) {
      if (d < this.trials.length && this.trials[d] >= 1) current = (this.hits[d] + this.prior) / (this.trials[d] + 1);
      out.push(current);
    }
    return out;
  }

  /** A chain of `drafted` tokens of which the first `accepted` were kept. */
  observe(drafted, accepted) {
    while (this.trials.length < drafted) { this.hits.push(0); this.trials.push(0); }
    for (let d = 0; d < drafted; d++) {
      this.hits[d] *= this.decay;
      this.trials[d] *= this.decay;
      if (d <= accepted) { // depth d+1 was reached: a trial
        this.trials[d] += 1;
        this.hits[d] += d < accepted ? 1 : 0;
      }
    }
  }

  /** E[tokens | K] for K = 0..kMax: 1 + sum_{d<=K} prod_{j<=d} a_j. */
  expectedTokensUpto(kMax) {
    const totals = [1];
    let reach = 1;
    for (const a of this.rates(kMax)) {
      reach *= a;
      totals.push(totals[totals.length - 1] + reach);
    }
    return totals;
  }
}

export class Controller {
  /**
   * passRows: drafter -> (k -> rows of its verify pass for k drafts), default k + 1 (PPD's prompt rows add more).
   * priors: bucket -> [first-token rate, deeper rate, worth in drafts], where its acceptance starts (ngram.js PRIORS).
   */
  constructor(cost, { maxBudget = 16, probeEvery = 16, free = [], passRows = {}, priors = {} } = {}) {
    Object.assign(this, { cost, maxBudget, probeEvery, passRows, priors });
    this.acceptance = new Map();
    this.draftSeconds = new Map(); // per drafted token, decayed
    this.plainSteps = 0;
    this.free = new Set(free); // drafters that cost nothing to ask (n-gram lookup)
  }

  acceptanceOf(bucket) {
    if (!this.acceptance.has(bucket)) {
      const prior = this.priors[bucket];
      this.acceptance.set(bucket, prior === undefined ? new Acceptance()
        : new Acceptance(prior[0], 0.97, { deeper: prior[1], weight: prior[2] }));
    }
    return this.acceptance.get(bucket);
  }

  /** {name, k} with the highest expected tokens per second; {name: null, k: 0} = a plain step. */
  plan(names, buckets = new Map()) {
    let best = { name: null, k: 0 };
    let bestRate = 1 / this.cost.passSeconds(1);
    for (const name of names) {
      const acceptance = this.acceptanceOf(buckets.get(name) ?? name);
      const perToken = this.free.has(name) ? 0 : (this.draftSeconds.get(name) ?? 0.5 * this.cost.passSeconds(1));
      const expected = acceptance.expectedTokensUpto(this.maxBudget);
      const rows = this.passRows[name] ?? ((k) => k + 1);
      for (let k = 1; k <= this.maxBudget; k++) {
        const rate = expected[k] / (k * perToken + this.cost.passSeconds(rows(k)));
        if (rate > bestRate) { best = { name, k }; bestRate = rate; }
      }
    }
    if (best.name === null && names.length) {
      this.plainSteps += 1;
      // re-probe: estimates move only when drafts are tried
      if (this.plainSteps % this.probeInterval() === 0) return { name: names[0], k: 1 };
    }
    return best;
  }

  probeInterval() {
    const extra = this.cost.passSeconds(2) / this.cost.passSeconds(1) - 1; // a 1-token probe's cost, in steps
    return Math.max(this.probeEvery, Math.ceil(extra / PROBE_SHARE));
  }

  observe(name, drafted, accepted, draftS, verifyT, verifyS, bucket = null) {
    if (drafted) {
      this.acceptanceOf(bucket ?? name).observe(drafted, accepted);
      if (!this.free.has(name)) {
        const perToken = draftS / drafted;
        this.draftSeconds.set(name, 0.8 * (this.draftSeconds.get(name) ?? perToken) + 0.2 * perToken);
      }
    }
    this.cost.observe(verifyT, verifyS);
  }
}

/** A drafter that asks the controller which of its drafters to use and how far to draft (`--spec auto`). */
export class ControlledDrafter {
  constructor(drafters, controller) {
    this.name = "auto";
    this.drafters = drafters; // Map name -> drafter
    this.controller = controller;
    this.last = null;
  }

  async propose(context, budget) {
    const buckets = new Map();
    for (const [name, drafter] of this.drafters) {
      const bucket = drafter.bucket ? drafter.bucket(context) : name;
      if (bucket !== null) buckets.set(name, bucket); // null: nothing to draft here this step
    }
    const { name, k } = this.controller.plan([...buckets.keys()], buckets);
    if (name === null || budget <= 0) {
      this.last = null;
      return new DraftTree();
    }
    const started = now();
    const tree = await this.drafters.get(name).propose(context, Math.min(k, budget));
    this.last = { name, bucket: buckets.get(name), tree, draftS: now() - started, verifyStarted: now(), extra: 0 };
    return tree;
  }

  /** The chosen drafter's own rows for this pass (PPD prompt tokens), or null. */
  verifyRows(tree) {
    const drafter = this.last === null ? null : this.drafters.get(this.last.name);
    const extra = drafter?.verifyRows ? drafter.verifyRows(tree) : null;
    if (this.last !== null) this.last.extra = extra === null ? 0 : extra.parents.length;
    return extra;
  }

  readRows(logits, endRow) {
    this.drafters.get(this.last.name).readRows(logits, endRow);
  }

  /** Which drafter the last step used (null: a plain step), for the UI's "which drafter pays". */
  get lastDrafter() {
    return this.last?.name ?? null;
  }

  observe(accepted) {
    if (this.last === null) return;
    const { name, bucket, tree, draftS, verifyStarted, extra } = this.last;
    this.controller.observe(name, tree.depth(), accepted.length - 1, draftS, tree.length + 1 + extra,
      now() - verifyStarted, bucket);
    this.drafters.get(name).observe(accepted);
  }

  reset() {
    for (const drafter of this.drafters.values()) drafter.reset();
  }
}
