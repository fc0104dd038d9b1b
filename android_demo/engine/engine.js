// The decode loop: plain or speculative, on any backend, with any drafter (port of
// edgespec/speculative/engine.py; the invariant and exact mode are explained there).
//
// Between steps the backend's cache holds every emitted token except the last (the next root):
//   tree   = drafter.propose(context, budget)          (no drafter: an empty tree)
//   logits = backend.forward([root] + tree, depth positions, ancestor mask)
//   path, next = verify(tree, logits)                  (greedy or rejection sampling)
//   backend.keep([root] + path); emit path tokens, then next (the new root)
import { ContextOverflowError } from "./errors.js";
import { penalize, probabilities } from "./sampling.js";
import { DraftTree, treeLayout } from "./tree.js";
import { verifyGreedy, verifySampling } from "./verify.js";

const now = () => performance.now() / 1000;

export class SpecStats {
  constructor() {
    Object.assign(this, { steps: 0, drafted: 0, accepted: 0, acceptedAtDepth: [], draftSeconds: 0,
      verifySeconds: 0, byDrafter: {} });
  }

  get tokensPerStep() {
    return this.steps ? (this.steps + this.accepted) / this.steps : 0;
  }
}

/**
 * Yield up to maxTokens new tokens ({token, fromDraft}) continuing `prompt`.
 * reusePrefix: leading prompt tokens the backend's cache already holds (chat turns).
 * maxRows: at most this many tokens per pass (the prompt is fed in chunks, trees cut to maxRows - 1).
 */
export async function* decode(backend, prompt, sampler, maxTokens, { drafter = null, budget = 8, stats = new SpecStats(),
  reusePrefix = 0, exact = false, maxRows = null } = {}) {
  prompt = [...prompt];
  if (prompt.length + maxTokens > backend.maxLen + 1) {
    throw new ContextOverflowError(`${prompt.length} prompt + ${maxTokens} new tokens exceed the context of ` +
      `${backend.maxLen} tokens`);
  }
  if (backend.cacheLen > reusePrefix) backend.rollback(backend.cacheLen - reusePrefix);
  if (drafter !== null) drafter.reset();
  const history = [...prompt]; // the emitted context; its last token is the root, not cached
  let emitted = 0;
  try {
    let fresh = prompt.slice(reusePrefix);
    const chunk = Math.max(2, maxRows || fresh.length);
    while (fresh.length > chunk) { // a bounded pass size bounds the activations
      await backend.forward(fresh.slice(0, chunk), { logitsFor: [chunk - 1] });
      fresh = fresh.slice(chunk);
    }
    const pad = exact && fresh.length === 1 ? 1 : 0; // exact mode: never a 1-row pass
    const logits = await backend.forward(pad ? [...fresh, fresh[0]] : fresh, { logitsFor: [fresh.length - 1] });
    if (pad) backend.rollback(1);
    if (maxRows) budget = Math.min(budget, maxRows - 1);
    let step = [{ token: sampler.sample(logits.row(0), history), fromDraft: false }];
    for (;;) {
      for (const event of step) {
        history.push(event.token);
        emitted += 1;
        yield event;
        if (emitted >= maxTokens) return;
      }
      step = await decodeStep(backend, history, sampler, drafter, Math.min(budget, maxTokens - emitted - 1), stats,
        exact);
    }
  } finally {
    const cached = prompt.length + emitted - 1; // every emitted token but the last is in the cache
    if (backend.cacheLen > cached) backend.rollback(backend.cacheLen - cached);
  }
}

/** One verify pass -> accepted drafts ({fromDraft: true}) then the target's next token. */
export async function decodeStep(backend, history, sampler, drafter, budget, stats, exact) {
  const start = now();
  // a drafter with passes of its own (layer-skip, S3D) proposes asynchronously
  let tree = drafter !== null && budget > 0 ? await drafter.propose(history, budget) : new DraftTree();
  if (tree.length > budget) tree = tree.truncated(budget);
  if (exact && !tree.isChain()) tree = tree.firstChain(); // a tree node sits at another cache row: other rounding
  const proposed = tree.length; // the drafter's own tokens (not exact mode's guess below)
  if (exact && !tree.length) tree = DraftTree.chain(history.slice(-1)); // a 2-row pass; the guess is verified
  const treeS = now();
  const tokens = [history[history.length - 1], ...tree.tokens];
  let parents = [-1, ...tree.parents.map((p) => p + 1)];
  // A drafter may append input rows of its own (PPD prompt tokens) after the tree rows; no tree row
  // attends to them, so the rows verified below are unchanged, and keep() below drops their KV.
  const extra = drafter?.verifyRows ? drafter.verifyRows(tree) : null;
  if (extra !== null) parents = [...parents, ...extra.parents];
  const { depths, mask } = treeLayout(parents);
  const chain = parents.every((p, i) => p === i - 1);
  const logits = await backend.forward(tokens, { positions: depths.map((d) => backend.cacheLen + d),
    treeMask: chain ? null : mask, extraEmbeds: extra?.embeds ?? null });
  const params = sampler.params;
  // the history a row predicts after: for the repetition penalty (no penalty: no copy per row)
  const context = (row) => (!row || params.repetitionPenalty === 1 ? history
    : [...history, ...tree.path(row - 1).map((i) => tree.tokens[i])]);
  const { accepted: path, next } = params.greedy
    ? verifyGreedy(tree, (row) => sampler.sample(logits.row(row), context(row)))
    : verifySampling(tree, (row) => probabilities(penalize(logits.row(row), context(row), params.repetitionPenalty),
      params), sampler.rng);
  backend.keep([0, ...path.map((i) => i + 1)]);
  if (extra !== null) { // the drafter reads its rows' logits: the prompt rows of the accepted path's end
    drafter.readRows(logits.from(tokens.length), path.length ? path[path.length - 1] + 1 : 0);
  }
  stats.steps += 1;
  stats.drafted += tree.length;
  stats.accepted += path.length;
  while (stats.acceptedAtDepth.length < path.length) stats.acceptedAtDepth.push(0);
  for (let d = 0; d < path.length; d++) stats.acceptedAtDepth[d] += 1;
  stats.draftSeconds += treeS - start;
  stats.verifySeconds += now() - treeS;
  const accepted = path.map((i) => tree.tokens[i]);
  if (drafter !== null) {
    // which drafter paid: the controlled drafter names the one it used, a fixed drafter is itself
    const used = proposed ? (drafter.lastDrafter ?? drafter.name) : "plain";
    stats.byDrafter[used] = (stats.byDrafter[used] ?? 0) + path.length;
    drafter.observe([...accepted, next]);
  }
  return [...accepted.map((token) => ({ token, fromDraft: true })), { token: next, fromDraft: false }];
}

/** How many leading tokens two sequences share (what a cache holding `a` can keep for `b`). */
export function commonPrefix(a, b) {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}
