"""PPD (Parallel Prompt Decoding, arXiv 2405.18628): trained prompt-token rows ride on the verify pass.

The drafter owns k trained input embeddings ("prompt tokens"). Each verify pass carries, after the
tree rows [root, node 0, ...], m <= k prompt rows attached to every tree row r:

    prompt row (r, j), j = 0..m-1:  position  cache_len + depth(r) + 1 + j
                                    attends   the cached prefix, the ancestors of r and r itself,
                                              and the prompt rows (r, 0..j-1) before it
    (never another row's prompt rows; no tree row attends to any prompt row, so the tree rows'
     logits, and so verification, are exactly those of the pass without them)

Row r predicts the token after r's path (the bonus b when r is where acceptance stops); prompt row
(r, j) sits where token j+1 after r would sit and predicts the token j+2 after r, i.e. j+1 after b.
So when verification accepts the path ending at row r, the prompt rows of r are a draft of the
tokens after the next root b: the next tree is their top-1 chain (plus top-k siblings at depth 1).
Whatever path is accepted, its last row has prompt rows, so drafting never stalls.
The prompt rows' KV entries are dropped by the engine's keep(accepted path): the target's cache is
exactly plain decoding's. The draft is deterministic (point masses), so rejection sampling is exact.

Cost: a chain of n nodes with m prompt rows per row is (1 + n)(1 + m) rows; the size is chosen
from the device's cost curve c(T) and the per-depth acceptance seen so far (PPD's hardware-aware
tree): maximise E[tokens | n] / t((1 + n)(1 + m)) with m = n (a steady state).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..tree import DraftTree


@dataclass
class ExtraRows:
    """Input rows a drafter appends to the verify pass after the tree rows.

    embeds [E, d]; parents[e]: the row it hangs below, indexing [tree rows (root = 0), extra rows],
    always an earlier row (the attention mask and positions follow from it, as for tree nodes)."""

    embeds: np.ndarray
    parents: list[int]


class PPDDrafter:
    name = "ppd"

    def __init__(self, embeds: np.ndarray, cost=None, siblings: int = 1, max_depth: int | None = None):
        """embeds [k, d] trained prompt tokens; cost: a controller.CostModel of this device (None: draft as
        deep as the prompt tokens reach); siblings: depth-1 alternatives from prompt row 0's top-k."""
        from ..controller import Acceptance

        self.embeds = np.ascontiguousarray(embeds, np.float32)
        self.k = len(self.embeds)
        self.cost, self.siblings = cost, siblings
        self.max_depth = min(self.k, max_depth or self.k)
        self.acceptance = Acceptance(prior=0.3)
        self.reset()

    def reset(self) -> None:
        self._guess: list[np.ndarray] | None = None  # top tokens per depth for after the next root
        self._fresh = False  # the guess was read on the last pass (else it is for another root)
        self._proposed_at = 0  # len(context) when this drafter last proposed
        self._fresh_at = -1  # len(context) the guess is for: the pass that read it added its tokens
        self._attached: list[int] = []  # tree rows that carry prompt rows in the pending pass
        self._m = 0  # prompt rows per attached tree row in the pending pass
        self._drafted = 0

    def _depth(self, budget: int) -> int:
        """Chain length n (= prompt rows per row m): the best expected tokens per second."""
        limit = min(self.max_depth, budget)
        if self.cost is None or limit <= 1:
            return max(limit, 1)
        expected = self.acceptance.expected_tokens_upto(limit)
        return max(range(1, limit + 1), key=lambda n: expected[n] / self.cost.pass_seconds((1 + n) * (1 + n)))

    def propose(self, context: Sequence[int], budget: int) -> DraftTree:
        n = self._depth(budget)
        self._m = n
        tree = DraftTree()
        self._drafted = 0
        # Under --spec auto another drafter (or a plain step) may have run the passes since the guess was
        # read: the context then moved past the root the guess is for, and the guess is stale.
        fresh, self._fresh = self._fresh and len(context) == self._fresh_at, False
        self._proposed_at = len(context)
        if not fresh:  # first step, or the last pass carried no prompt rows: this pass's rows will predict
            return tree
        parent = -1
        for depth in range(min(n, len(self._guess))):
            parent = tree.add(int(self._guess[depth][0]), parent)
        for token in self._guess[0][1:self.siblings]:
            if len(tree) < budget:
                tree.add(int(token), -1)
        self._drafted = tree.depth()
        return tree

    def verify_rows(self, tree: DraftTree) -> ExtraRows:
        """m prompt rows after every row of the flattened tree (see the module docstring)."""
        rows, m = len(tree) + 1, max(self._m, 1)
        self._attached, self._m = list(range(rows)), m
        parents = []
        for r in range(rows):
            first = rows + len(parents)
            parents += [r] + [first + j for j in range(m - 1)]
        return ExtraRows(np.tile(self.embeds[:m], (rows, 1)), parents)

    def read_rows(self, logits: np.ndarray, end_row: int) -> None:
        """logits of the extra rows; end_row: the tree row where acceptance stopped (0 = the root)."""
        i = self._attached.index(end_row)
        rows = logits[i * self._m:(i + 1) * self._m]
        top = max(self.siblings, 1)
        self._guess = [np.argsort(-row, kind="stable")[:top] for row in rows] if top > 1 else \
            [np.array([int(np.argmax(row))]) for row in rows]
        self._fresh = True

    @staticmethod
    def pass_rows(k: int) -> int:
        """Rows of a verify pass drafting a chain of k (the controller's cost of k drafts)."""
        return (1 + k) * (1 + k)

    def bucket(self, context) -> str:
        return "ppd"

    def observe(self, accepted: Sequence[int]) -> None:
        """accepted: the drafts kept and the bonus token, i.e. what this pass added to the context."""
        self._fresh_at = self._proposed_at + len(accepted)
        if self._drafted:
            self.acceptance.observe(self._drafted, len(accepted) - 1)
