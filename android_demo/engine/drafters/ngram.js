// Prompt lookup / n-gram drafting (port of edgespec/speculative/drafters/ngram.py): copy what followed
// earlier occurrences of the current suffix. Free (no model call): an index from every n-gram of the
// context (n = maxNgram..minNgram) to the positions right after its occurrences, updated incrementally.
// The longest suffix seen before wins; up to `branches` distinct continuations (most recent first)
// share their common prefixes in one tree. For `auto` the match length names the controller's acceptance bucket,
// each starting from the acceptance measured for it (PRIORS; the numbers and how they were measured: ngram.py).
import { DraftTree } from "../tree.js";

// [shortest match length of the bucket, its name], longest first
export const BUCKETS = [[7, "ngram/n7+"], [4, "ngram/n4-6"], [3, "ngram/n3"], [2, "ngram/n2"], [1, "ngram/n1"]];
const PRIOR_WEIGHT = 8; // worth 8 drafts: one unlucky miss does not stop a bucket from being drafted
// bucket -> [P(first token kept), P(a deeper token kept | the one before was), worth in drafts]
export const PRIORS = {
  "ngram/n1": [0.25, 0.55, PRIOR_WEIGHT], "ngram/n2": [0.5, 0.7, PRIOR_WEIGHT], "ngram/n3": [0.55, 0.8, PRIOR_WEIGHT],
  "ngram/n4-6": [0.8, 0.85, PRIOR_WEIGHT], "ngram/n7+": [0.9, 0.9, PRIOR_WEIGHT],
};

const key = (tokens) => tokens.join(",");
const sameList = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

export class NgramDrafter {
  constructor({ maxNgram = 8, minNgram = 1, branches = 3, maxDepth = 8 } = {}) {
    Object.assign(this, { maxNgram, minNgram, branches, maxDepth });
    this.name = "ngram";
    this.reset();
  }

  reset() {
    this.tokens = [];
    this.ends = new Map(); // n-gram key -> positions just after each occurrence
    this.lastMatch = 0; // n of the suffix that matched in the last proposal (0: none)
    this.lookedUp = null; // {length, depth, found} of the last lookup
  }

  index(context) {
    let nOld = this.tokens.length;
    if (context.length < nOld || (nOld && context[nOld - 1] !== this.tokens[nOld - 1])) {
      this.reset(); // a different context: start over
      nOld = 0;
    }
    for (let i = nOld; i < context.length; i++) this.tokens.push(context[i]);
    const tokens = this.tokens;
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
    return found.length ? BUCKETS.find(([shortest]) => this.lastMatch >= shortest)[1] : null;
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
