// Rejection sampling keeps the target's distribution (chi-square), as tests/test_spec_sampling.py:
// verifySampling alone on fixed p/q tables, a deliberately wrong verifier failing the same test, and the
// whole decode loop (drafts, tree verify, keep/rollback) on a small synthetic language model.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { NgramDrafter } from "../engine/drafters/ngram.js";
import { decode } from "../engine/engine.js";
import { Rng, Sampler, SamplingParams } from "../engine/sampling.js";
import { DraftTree } from "../engine/tree.js";
import { draw, verifySampling } from "../engine/verify.js";
import { chi2PValue, twoSamplePValue } from "./helpers.js";

const V = 6;
const seeded = new Rng(7);
const dirichlet = () => { const g = Array.from({ length: V }, () => (-Math.log(seeded.random())) ** 1.4); const s = g.reduce((a, b) => a + b); return g.map((x) => x / s); };
const TARGET = Array.from({ length: 8 }, dirichlet);
const DRAFT_Q = Array.from({ length: 8 }, dirichlet); // deliberately different from TARGET

function stochasticTree(rng) { // two independent draws from q_0 as root children, a draw from q below the first
  const tree = new DraftTree([], [], []);
  const a = tree.add(draw(DRAFT_Q[0], rng), -1, DRAFT_Q[0]);
  tree.tokens.push(draw(DRAFT_Q[0], rng)); // an independent sibling, even if it repeats the token
  tree.parents.push(-1);
  tree.draftProbs.push(DRAFT_Q[0]);
  tree.add(draw(DRAFT_Q[a + 1], rng), a, DRAFT_Q[a + 1]);
  return tree;
}

function deterministicTree(rng) { // point masses: three distinct root children, a chain below the first
  const order = Array.from({ length: V }, (_, i) => i).sort(() => rng.random() - 0.5);
  const tree = new DraftTree();
  const a = tree.add(order[0]);
  tree.add(order[1]);
  tree.add(order[2]);
  tree.add(Math.floor(rng.random() * V), a);
  return tree;
}

function naiveVerifier(tree, targetProbs, rng) { // wrong on purpose: rejection redraws from p, not the residual
  const children = tree.childrenByNode();
  const accepted = [];
  for (let node = -1; ;) {
    const p = targetProbs(node + 1);
    const next = (children.get(node) ?? []).find((c) => {
      const q = tree.draftProbs?.[c] ?? null;
      return rng.random() * (q === null ? 1 : q[tree.tokens[c]]) < p[tree.tokens[c]];
    });
    if (next === undefined) return { accepted, next: draw(p, rng) };
    accepted.push(next);
    node = next;
  }
}

function sampleFirstTwo(verifier, makeTree, n, seed = 0) {
  const rng = new Rng(seed);
  const first = new Array(V).fill(0), secondAfter = new Map();
  for (let i = 0; i < n; i++) {
    const tree = makeTree(rng);
    const { accepted, next } = verifier(tree, (row) => TARGET[row], rng);
    const emitted = [...accepted.map((c) => tree.tokens[c]), next];
    first[emitted[0]] += 1;
    if (accepted.length) {
      const row = accepted[0] + 1;
      if (!secondAfter.has(row)) secondAfter.set(row, new Array(V).fill(0));
      secondAfter.get(row)[emitted[1]] += 1;
    }
  }
  return { first, secondAfter };
}

/**
 * A synthetic LM behind the Backend contract: row i's logits depend on its token and the token it attends
 * to just before it (the nearest ancestor in the tree mask, else the last cached token), so a wrong
 * tree/keep/rollback in the engine changes the emitted distribution.
 */
class BigramBackend {
  constructor(vocab, maxLen = 64) {
    Object.assign(this, { vocab, maxLen, cache: [], lastStart: 0, name: "bigram" });
  }

  get cacheLen() { return this.cache.length; }

  logitsFor(prev, token) {
    // mostly the cycle 1 -> 2 -> 3 -> 1 (so n-gram drafts are often accepted), spread by both tokens
    return Float32Array.from({ length: this.vocab }, (_, v) => 1.5 * Math.sin(1.7 * v + 0.9 * token + 0.37 * prev * (v + 1)) +
      (v === (token % 3) + 1 ? 2 : 0));
  }

  async forward(tokens, { treeMask = null, logitsFor = null } = {}) {
    const start = this.cache.length, T = tokens.length;
    const rows = logitsFor ?? tokens.map((_, i) => i);
    const data = new Float32Array(rows.length * this.vocab);
    rows.forEach((i, r) => {
      let j = i - 1;
      while (j >= 0 && !(treeMask === null || treeMask[i][j])) j--;
      const prev = j >= 0 ? tokens[j] : (start ? this.cache[start - 1] : 0);
      data.set(this.logitsFor(prev, tokens[i]), r * this.vocab);
    });
    this.cache.push(...tokens);
    this.lastStart = start;
    assert.ok(this.cache.length <= this.maxLen);
    return { rows: rows.length, row: (r) => data.subarray(r * this.vocab, (r + 1) * this.vocab) };
  }

  rollback(n) { this.cache.length -= n; }

  keep(indices) { this.cache = [...this.cache.slice(0, this.lastStart), ...indices.map((i) => this.cache[this.lastStart + i])]; }

  reset() { this.cache = []; }
}

async function thirdTokens(drafterFactory, n) {
  const backend = new BigramBackend(8);
  const prompt = [1, 2, 3, 1, 2, 3, 1, 2]; // the n-gram drafter finds "3 1 2 ..." continuations
  const counts = new Array(8).fill(0);
  let accepted = 0;
  for (let seed = 0; seed < n; seed++) {
    const sampler = new Sampler(new SamplingParams({ temperature: 1.0, seed }));
    const stats = { steps: 0, drafted: 0, accepted: 0, acceptedAtDepth: [], draftSeconds: 0, verifySeconds: 0, byDrafter: {} };
    const out = [];
    for await (const { token } of decode(backend, prompt, sampler, 3, { drafter: drafterFactory(), budget: 4, stats })) out.push(token);
    counts[out[2]] += 1;
    accepted += stats.accepted;
  }
  return { counts, accepted };
}

describe("rejection sampling keeps the target distribution", () => {
  for (const [name, makeTree] of [["stochastic", stochasticTree], ["deterministic", deterministicTree]]) {
    it(`verifySampling on a ${name} tree: first and second token ~ target (chi-square)`, () => {
      const { first, secondAfter } = sampleFirstTwo(verifySampling, makeTree, 40000);
      assert.ok(chi2PValue(first, TARGET[0]) > 1e-3);
      for (const [row, counts] of secondAfter) {
        if (counts.reduce((a, b) => a + b) > 2000) assert.ok(chi2PValue(counts, TARGET[row]) > 1e-3, `row ${row}`);
      }
    });
  }

  it("a wrong verifier (redraws from p on rejection) fails the same test", () => {
    const { first } = sampleFirstTwo(naiveVerifier, stochasticTree, 40000);
    assert.ok(chi2PValue(first, TARGET[0]) < 1e-6);
  });

  it("the decode loop with n-gram drafts samples the 3rd token as plain sampling does (two-sample chi-square)", async () => {
    const plain = await thirdTokens(() => null, 3000);
    const spec = await thirdTokens(() => new NgramDrafter(), 3000);
    assert.ok(spec.accepted > 500, `only ${spec.accepted} drafts accepted: the speculative path was barely exercised`);
    assert.ok(twoSamplePValue(plain.counts, spec.counts) > 1e-3, `${plain.counts} vs ${spec.counts}`);
  });
});
