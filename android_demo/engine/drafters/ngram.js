// Prompt lookup / n-gram drafting (port of edgespec/speculative/drafters/ngram.py): copy what followed
// earlier occurrences of the current suffix. Free (no model call): an index from every n-gram of the
// context (n = maxNgram..minNgram) to the positions right after its occurrences, updated incrementally.
// The longest suffix seen before wins; up to `branches` distinct continuations (most recent first)
// share their common prefixes in one tree. For `auto` the match length names the controller's acceptance bucket,
// each starting from the acceptance measured for it (PRIORS; the numbers and how they were measured: ngram.py).
// Where earlier occurrences were followed by different tokens the most recent one is often not what comes next:
// for `auto` (forAuto) such a context is its own bucket (SPLIT) when they part at the first token, and a draft
// stops where they part while the drafter's own score of such tokens (checked against the text as it grows) says
// they are seldom kept (stopAtDivergence; the numbers: ngram.py).
import { DraftTree } from "../tree.js";

// [shortest match length of the bucket, its name], longest first
export const BUCKETS = [[7, "ngram/n7+"], [4, "ngram/n4-6"], [3, "ngram/n3"], [2, "ngram/n2"], [1, "ngram/n1"]];
export const SPLIT = "ngram/split"; // the earlier occurrences were followed by different tokens
const PRIOR_WEIGHT = 8; // worth 8 drafts: one unlucky miss does not stop a bucket from being drafted
export const DIVERGENCE_PRIOR = 0.1; // P(the first continuation's token kept where continuations part), worth PRIOR_WEIGHT
export const STOP_BELOW = 0.3; // stop a draft where continuations part while that rate is below this
// bucket -> [P(first token kept), P(a deeper token kept | the one before was), worth in drafts]
export const PRIORS = {
  "ngram/n1": [0.25, 0.55, PRIOR_WEIGHT], "ngram/n2": [0.5, 0.7, PRIOR_WEIGHT], "ngram/n3": [0.55, 0.8, PRIOR_WEIGHT],
  "ngram/n4-6": [0.8, 0.85, PRIOR_WEIGHT], "ngram/n7+": [0.9, 0.9, PRIOR_WEIGHT], [SPLIT]: [0.1, 0.55, PRIOR_WEIGHT],
};

const key = (tokens) => tokens.join(",");
const sameList = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

/** How many leading tokens all continuations share; null when there is only one (nothing disagrees). */
export function agreedDepth(continuations) {
  if (continuations.length < 2) return null;
  let depth = 0;
  while (continuations.every((c) => c.length > depth) && new Set(continuations.map((c) => c[depth])).size === 1) depth++;
  return depth;
}

export class NgramDrafter {
  constructor({ maxNgram = 8, minNgram = 1, branches = 3, maxDepth = 8, stopAtDivergence = false } = {}) {
    Object.assign(this, { maxNgram, minNgram, branches, maxDepth, stopAtDivergence });
    this.name = "ngram";
    this.divergence = [0, 0]; // decayed [kept, scored] of first-continuation tokens where continuations part
    this.reset();
  }

  /** As `auto` drafts: matches of every length, chains that stop where continuations part. */
  static forAuto() {
    return new NgramDrafter({ minNgram: 1, stopAtDivergence: true });
  }

  reset() {
    this.tokens = [];
    this.ends = new Map(); // n-gram key -> positions just after each occurrence
    this.lastMatch = 0; // n of the suffix that matched in the last proposal (0: none)
    this.lookedUp = null; // {length, depth, found} of the last lookup
    this.pending = new Map(); // position -> the token predicted there where continuations part
  }

  /** How often the first continuation's token is what comes next where the continuations part. */
  divergenceRate() {
    const [kept, scored] = this.divergence;
    return (kept + PRIOR_WEIGHT * DIVERGENCE_PRIOR) / (scored + PRIOR_WEIGHT);
  }

  index(context) {
    let nOld = this.tokens.length;
    if (context.length < nOld || (nOld && context[nOld - 1] !== this.tokens[nOld - 1])) {
      this.reset(); // a different context: start over
      nOld = 0;
    }
    for (let i = nOld; i < context.length; i++) this.tokens.push(context[i]);
    const tokens = this.tokens;
    for (const [position, token] of [...this.pending]) { // score the predictions the text reached
      if (position >= tokens.length) continue;
      this.pending.delete(position);
      const kept = tokens[position] === token ? 1 : 0;
      this.divergence = [0.97 * this.divergence[0] + kept, 0.97 * this.divergence[1] + 1];
    }
    for (let end = nOld + 1; end <= tokens.length; end++) {
      for (let n = this.minNgram; n <= Math.min(this.maxNgram, end); n++) {
        const k = key(tokens.slice(end - n, end));
        if (!this.ends.has(k)) this.ends.set(k, []);
        this.ends.get(k).push(end);
      }
    }
  }

  /** Up to `branches` distinct continuations of the longest earlier-seen suffix of `context`. */
  candidates(context, depth) {
    this.index(context);
    const tokens = this.tokens;
    const length = tokens.length;
    this.lastMatch = 0;
    for (let n = Math.min(this.maxNgram, length); n >= this.minNgram; n--) {
      const found = [];
      const ends = this.ends.get(key(tokens.slice(length - n))) ?? [];
      for (let i = ends.length - 1; i >= 0; i--) {
        const end = ends[i];
        const continuation = tokens.slice(end, end + depth);
        if (end < length && continuation.length && !found.some((f) => sameList(f, continuation))) {
          found.push(continuation);
          if (found.length === this.branches) break;
        }
      }
      if (found.length) {
        this.lastMatch = n;
        return found;
      }
    }
    return [];
  }

  /** For the controller: the match length's bucket (BUCKETS), or null when no suffix occurred before. */
  bucket(context) {
    const found = this.candidates(context, this.maxDepth);
    this.lookedUp = { length: context.length, depth: this.maxDepth, found };
    if (!found.length) return null;
    const agreed = agreedDepth(found);
    if (agreed && found[0].length > agreed) this.pending.set(context.length + agreed, found[0][agreed]);
    return agreed === 0 ? SPLIT : BUCKETS.find(([shortest]) => this.lastMatch >= shortest)[1];
  }

  propose(context, budget) {
    const tree = new DraftTree();
    const depth = Math.min(this.maxDepth, budget);
    const lookedUp = this.lookedUp;
    this.lookedUp = null;
    let found;
    if (lookedUp !== null && lookedUp.length === context.length && lookedUp.depth >= depth) {
      found = lookedUp.found.map((c) => c.slice(0, depth)); // the lookup `bucket` just did
      found = found.filter((c, i) => !found.slice(0, i).some((f) => sameList(f, c)));
    } else {
      found = this.candidates(context, depth);
    }
    const agreed = agreedDepth(found);
    if (this.stopAtDivergence && agreed && this.divergenceRate() < STOP_BELOW) found = [found[0].slice(0, agreed)];
    for (const continuation of found) {
      let parent = -1;
      for (const token of continuation) {
        if (tree.length === budget && !tree.children(parent).some((c) => tree.tokens[c] === token)) return tree;
        parent = tree.add(token, parent);
      }
    }
    return tree;
  }

  observe() {} // the index catches up from the context on the next proposal
}
