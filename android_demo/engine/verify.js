// Verification of a draft tree against the target's logits: pure functions (port of
// edgespec/speculative/verify.py; the math is in that file's docstrings).
//
// Rows: the verify pass puts the root at row 0 and node i at row i + 1, so target(r) is the
// target's prediction after the root-to-r path. Both return {accepted: node indices along one
// root-to-node path, next: the next token}, distributed exactly as the target alone would emit.

/** Longest path the target agrees with, then the target's own next token (plain greedy, token for token). */
export function verifyGreedy(tree, targetToken) {
  const children = tree.childrenByNode();
  const accepted = [];
  for (let node = -1; ;) {
    const want = targetToken(node + 1);
    const match = (children.get(node) ?? []).find((c) => tree.tokens[c] === want);
    if (match === undefined) return { accepted, next: want };
    accepted.push(match);
    node = match;
  }
}

/**
 * Recursive rejection sampling over siblings (Leviathan/Chen; SpecInfer for trees).
 * At a node with target p, try children c in order (c drew x from q_c, a point mass if deterministic):
 * accept with probability min(1, p(x)/q_c(x)) and descend, else p <- max(p - q_c, 0)/Z; if all are
 * rejected, draw from the final residual. P(emit y) = p(y) whatever the drafter proposes.
 */
export function verifySampling(tree, targetProbs, rng) {
  const children = tree.childrenByNode();
  const accepted = [];
  let node = -1;
  for (;;) {
    let p = Float64Array.from(targetProbs(node + 1));
    let descended = false;
    for (const c of children.get(node) ?? []) {
      const x = tree.tokens[c];
      const q = tree.draftProbs === null ? null : tree.draftProbs[c];
      const qx = q === null ? 1.0 : q[x];
      if (qx > 0 && rng.random() * qx < p[x]) { // u < p(x) / q(x)
        accepted.push(c);
        node = c;
        descended = true;
        break;
      }
      if (q === null) p[x] = 0;
      else for (let i = 0; i < p.length; i++) p[i] = Math.max(p[i] - q[i], 0);
      let total = 0;
      for (let i = 0; i < p.length; i++) total += p[i];
      if (total <= 0) p = Float64Array.from(targetProbs(node + 1)); // p == q: rejection impossible exactly
      else for (let i = 0; i < p.length; i++) p[i] /= total;
    }
    if (!descended) return { accepted, next: draw(p, rng) };
  }
}

/** One draw from a (possibly unnormalised) distribution (numpy's searchsorted(side="right") rule). */
export function draw(p, rng) {
  let total = 0;
  for (let i = 0; i < p.length; i++) total += p[i];
  const u = rng.random() * total;
  let cumulative = 0;
  for (let i = 0; i < p.length; i++) {
    cumulative += p[i];
    if (cumulative > u) return i;
  }
  return p.length - 1;
}
