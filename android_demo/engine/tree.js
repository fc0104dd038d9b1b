// Draft token trees and their flattening into one verify pass (port of edgespec/speculative/tree.py).
//
// A tree hangs below the root, the last accepted token (not yet in the KV cache). Nodes are listed
// parents-first; parents[i] == -1 means a child of the root. The verify pass feeds [root, node 0, ...]
// (node i at row i + 1) at positions cacheLen + depth with an ancestor mask, so row r's logits are the
// target's prediction after the root-to-r path: all paths in one pass.

export class DraftTree {
  constructor(tokens = [], parents = [], draftProbs = null) {
    this.tokens = tokens;
    this.parents = parents;
    // The distribution each node was sampled from (null: chosen deterministically, a point mass).
    this.draftProbs = draftProbs;
  }

  static chain(tokens, draftProbs = null) {
    return new DraftTree([...tokens], tokens.map((_, i) => i - 1), draftProbs);
  }

  get length() {
    return this.tokens.length;
  }

  /** Append a node; returns its index (an existing sibling with the same token is reused). */
  add(token, parent = -1, probs = null) {
    for (const i of this.children(parent)) if (this.tokens[i] === token) return i;
    this.tokens.push(token);
    this.parents.push(parent);
    if (this.draftProbs !== null || probs !== null) {
      this.draftProbs = [...(this.draftProbs ?? new Array(this.tokens.length - 1).fill(null)), probs];
    }
    return this.tokens.length - 1;
  }

  /** Children of `node` (-1: of the root), in insertion order. */
  children(node) {
    const out = [];
    this.parents.forEach((p, i) => { if (p === node) out.push(i); });
    return out;
  }

  /** Every node's children at once (key -1: the root's), in insertion order. */
  childrenByNode() {
    const children = new Map();
    this.parents.forEach((p, i) => {
      if (!children.has(p)) children.set(p, []);
      children.get(p).push(i);
    });
    return children;
  }

  /** Node indices from the root's first child down to `node`. */
  path(node) {
    const out = [];
    for (; node >= 0; node = this.parents[node]) out.push(node);
    return out.reverse();
  }

  depth() {
    let best = 0;
    for (let i = 0; i < this.length; i++) best = Math.max(best, this.path(i).length);
    return best;
  }

  /** The first `maxNodes` nodes (still a tree: parents come first). */
  truncated(maxNodes) {
    return new DraftTree(this.tokens.slice(0, maxNodes), this.parents.slice(0, maxNodes),
      this.draftProbs === null ? null : this.draftProbs.slice(0, maxNodes));
  }

  /** The path that follows each node's first child (the drafter's favourite branch). */
  firstChain() {
    const nodes = [];
    for (let node = -1, kids; (kids = this.children(node)).length; node = kids[0]) nodes.push(kids[0]);
    return DraftTree.chain(nodes.map((i) => this.tokens[i]),
      this.draftProbs === null ? null : nodes.map((i) => this.draftProbs[i]));
  }

  isChain() {
    return this.parents.every((p, i) => p === i - 1);
  }
}

/** Parent indices (-1 = below the cached prefix) -> {depths, mask: ancestor rows incl. the diagonal}. */
export function treeLayout(parents) {
  const n = parents.length;
  const depths = new Array(n).fill(0);
  const mask = parents.map((_, i) => { const row = new Array(n).fill(false); row[i] = true; return row; });
  parents.forEach((p, i) => {
    if (p >= 0) {
      depths[i] = depths[p] + 1;
      for (let j = 0; j < n; j++) mask[i][j] = mask[i][j] || mask[p][j];
    }
  });
  return { depths, mask };
}
