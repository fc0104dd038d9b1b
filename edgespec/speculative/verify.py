"""Verification of a draft tree against the target's logits: pure functions.

Rows: the verify pass puts the root (last accepted token) at row 0 and node i at
row i + 1, so `target(r)` is the target's prediction after the root-to-r path.
A chain is a tree whose nodes each have one child. Both functions return
(accepted node indices along one root-to-node path, the next token), and the
tokens they emit are distributed exactly as the target would emit them alone.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .tree import DraftTree


def verify_greedy(tree: DraftTree, target_token: Callable[[int], int]) -> tuple[list[int], int]:
    """Longest path the target agrees with, then the target's own next token.

    Plain greedy emits x_{t+1} = argmax p(. | x_<=t). From the root, a child whose token is
    the argmax at its parent's row is exactly what plain decoding would emit, so accept it and
    descend; at the first row with no matching child emit that row's argmax (the bonus token).
    The output is plain greedy's, token for token, with 1 + len(accepted) tokens per pass.
    """
    children = tree.children_by_node()
    node, accepted = -1, []
    while True:
        want = target_token(node + 1)
        match = next((c for c in children.get(node, ()) if tree.tokens[c] == want), None)
        if match is None:
            return accepted, want
        accepted.append(match)
        node = match


def verify_sampling(tree: DraftTree, target_probs: Callable[[int], np.ndarray],
                    rng: np.random.Generator) -> tuple[list[int], int]:
    """Recursive rejection sampling over siblings (Leviathan/Chen; SpecInfer for trees).

    At a node with target distribution p, try its children c_1..c_m in order; child c drew
    its token x from q_c (a point mass when the drafter chose it deterministically).
      accept c with probability min(1, p(x) / q_c(x))     -> descend into c
      else p <- max(p - q_c, 0) / Z                          (the residual; next sibling)
    If every child is rejected, draw the next token from the final residual p.
    Per step P(emit y) = q(y) min(1, p(y)/q(y)) + P(reject) * residual(y) = p(y), so the
    output distribution is the target's, whatever the drafter proposes. Siblings that share
    a stochastic q must be independent draws from it (deterministic siblings are distinct).
    """
    children = tree.children_by_node()
    node, accepted = -1, []
    while True:
        p = np.array(target_probs(node + 1), dtype=np.float64)
        for c in children.get(node, ()):
            x = tree.tokens[c]
            q = None if tree.draft_probs is None else tree.draft_probs[c]
            q_x = 1.0 if q is None else float(q[x])
            if q_x > 0 and rng.random() * q_x < p[x]:  # u < p(x) / q(x)
                accepted.append(c)
                node = c
                break
            if q is None:
                p[x] = 0.0
            else:
                p = np.maximum(p - q, 0.0)
            total = p.sum()
            if total <= 0:  # p == q: any rejection is impossible in exact arithmetic; keep p
                p = np.array(target_probs(node + 1), dtype=np.float64)
            else:
                p /= total
        else:
            return accepted, draw(p, rng)


def draw(p: np.ndarray, rng: np.random.Generator) -> int:
    """One draw from a (possibly unnormalised) distribution."""
    cumulative = np.cumsum(p)
    return int(min(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"), len(p) - 1))
