"""The decode loop: plain or speculative, on any Backend, with any Drafter.

Invariant between steps: the backend's cache holds every emitted token except the
last one (the root of the next draft tree), so a step is

    tree   = drafter.propose(context, budget)              (no drafter: an empty tree)
    logits = backend.forward([root] + tree, depth positions, ancestor mask)
    path, next_token = verify(tree, logits)                 (greedy or rejection sampling)
    backend.keep([root] + path)                             (drop the rejected branches)
    emit path tokens, then next_token (the new root)

and plain decoding is the same step with an empty tree. A drafter with `verify_rows(tree)`
(PPD) appends input rows after the tree rows of that pass (described by their parents, like
tree nodes; the math is in drafters/ppd.py) and reads their logits with `read_rows`; no tree
row sees them, and keep() drops their KV, so the cache stays plain decoding's.

Exact mode: a 1-token pass and a T-token pass round differently on both backends (their
int8-activation kernels take another path for one row; rows of any T >= 2 pass are
bit-identical to each other, measured). With `exact=True` no pass has fewer than 2 rows
(an empty draft becomes a one-token guess, a 1-token prompt gets a discarded extra row)
and drafts are chains (a tree node sits at another cache row than on a chain, so the
attention sums in another order),
so speculative and plain decoding give the same output bit for bit, at the price of a
2-row pass per plain step. If the consumer stops early
(EOS, a stop string, Ctrl-C), `finally` trims the cache back to exactly the tokens it
took, so the cache never holds anything the caller did not see.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence

from ..errors import ContextOverflowError
from ..sampling import Sampler, penalize, probabilities
from .tree import DraftTree, tree_layout
from .verify import verify_greedy, verify_sampling


@dataclass
class SpecStats:
    steps: int = 0  # verify passes after the prefill
    drafted: int = 0  # draft nodes sent to verification
    accepted: int = 0  # draft tokens the target kept
    accepted_at_depth: list[int] = field(default_factory=list)  # accepted[d]: steps that kept >= d+1 drafts
    draft_seconds: float = 0.0
    verify_seconds: float = 0.0

    @property
    def tokens_per_step(self) -> float:
        return (self.steps + self.accepted) / self.steps if self.steps else 0.0

    def as_dict(self) -> dict:
        return {"steps": self.steps, "drafted": self.drafted, "accepted": self.accepted,
                "tokens_per_step": round(self.tokens_per_step, 3), "accepted_at_depth": self.accepted_at_depth,
                "draft_s": round(self.draft_seconds, 4), "verify_s": round(self.verify_seconds, 4)}


@dataclass
class Event:
    token: int
    from_draft: bool


def decode(backend, prompt: Sequence[int], sampler: Sampler, max_tokens: int, drafter=None, budget: int = 8,
           stats: SpecStats | None = None, reuse_prefix: int = 0, exact: bool = False,
           max_rows: int | None = None) -> Iterator[Event]:
    """Yield up to `max_tokens` new tokens continuing `prompt`.

    reuse_prefix: how many leading prompt tokens the backend's cache already holds (chat turns).
    max_rows: at most this many tokens per forward pass (a memory budget): the prompt is fed in
    chunks and draft trees are cut to max_rows - 1 nodes."""
    stats = stats if stats is not None else SpecStats()
    prompt = list(prompt)
    if len(prompt) + max_tokens > backend.max_len + 1:
        raise ContextOverflowError(f"{len(prompt)} prompt + {max_tokens} new tokens exceed the context of "
                                   f"{backend.max_len} tokens")
    if backend.cache_len > reuse_prefix:
        backend.rollback(backend.cache_len - reuse_prefix)
    if drafter is not None:
        drafter.reset()
    history = list(prompt)  # the emitted context; history[-1] is the root, not cached
    emitted = 0
    try:
        new = prompt[reuse_prefix:]
        chunk = max(2, max_rows or len(new))
        while len(new) > chunk:  # a bounded pass size bounds the activations
            backend.forward(new[:chunk], logits_for=[chunk - 1])
            new = new[chunk:]
        pad = 1 if exact and len(new) == 1 else 0  # exact mode: never a 1-row pass
        logits = backend.forward(new + new[-1:] * pad, logits_for=[len(new) - 1])
        if pad:
            backend.rollback(1)
        if max_rows:
            budget = min(budget, max_rows - 1)
        step = [(sampler(logits[-1], history), False)]
        while True:
            for token, from_draft in step:
                history.append(token)
                emitted += 1
                yield Event(token, from_draft)
                if emitted >= max_tokens:
                    return
            step = _step(backend, history, sampler, drafter, min(budget, max_tokens - emitted - 1), stats, exact)
    finally:
        cached = len(prompt) + emitted - 1  # every emitted token but the last is in the cache
        if backend.cache_len > cached:
            backend.rollback(backend.cache_len - cached)


def _step(backend, history: list[int], sampler: Sampler, drafter, budget: int, stats: SpecStats, exact: bool):
    """One verify pass -> [(accepted draft, True)...] + [(the target's next token, False)]."""
    start = time.perf_counter()
    tree = drafter.propose(history, budget) if drafter is not None and budget > 0 else DraftTree()
    if len(tree) > budget:
        tree = tree.truncated(budget)
    if exact and not tree.is_chain():
        tree = tree.first_chain()  # a tree puts a node's KV at another cache row than a chain: other rounding
    if exact and not len(tree):
        tree = DraftTree.chain(history[-1:])  # a 2-row pass; the guess "the root repeats" is verified as usual
    tree_s = time.perf_counter()
    tokens, parents = tree.flatten_parents(history[-1])
    # A drafter may append input rows of its own (PPD prompt tokens) after the tree rows; no tree row
    # attends to them, so the rows verified below are unchanged, and keep() below drops their KV.
    extra = drafter.verify_rows(tree) if hasattr(drafter, "verify_rows") else None
    if extra is not None:
        parents = parents + extra.parents
    depths, mask = tree_layout(parents)
    chain = all(p == i - 1 for i, p in enumerate(parents))
    rows = {} if extra is None else {"extra_embeds": extra.embeds}
    logits = backend.forward(tokens, positions=backend.cache_len + depths, tree_mask=None if chain else mask, **rows)

    def context(row: int) -> list[int]:  # the history a row predicts after: for the repetition penalty
        if not row or sampler.params.repetition_penalty == 1.0:  # no penalty: no copy of the history per row
            return history
        return history + [tree.tokens[i] for i in tree.path(row - 1)]

    if sampler.params.greedy:
        path, bonus = verify_greedy(tree, lambda row: sampler(logits[row], context(row)))
    else:
        path, bonus = verify_sampling(
            tree, lambda row: probabilities(penalize(logits[row], context(row), sampler.params.repetition_penalty),
                                            sampler.params), sampler.rng)
    backend.keep([0] + [i + 1 for i in path])
    if extra is not None:  # the drafter reads its rows' logits: the prompt rows of the accepted path's end
        drafter.read_rows(logits[len(tokens):], path[-1] + 1 if path else 0)
    stats.steps += 1
    stats.drafted += len(tree)
    stats.accepted += len(path)
    stats.accepted_at_depth += [0] * (len(path) - len(stats.accepted_at_depth))
    for d in range(len(path)):
        stats.accepted_at_depth[d] += 1
    stats.draft_seconds += tree_s - start
    stats.verify_seconds += time.perf_counter() - tree_s
    accepted = [tree.tokens[i] for i in path]
    if drafter is not None:
        drafter.observe(accepted + [bonus])
    return [(token, True) for token in accepted] + [(bonus, False)]  # the bonus is the next root


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens two sequences share (what a KV cache holding `a` can keep for `b`)."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
