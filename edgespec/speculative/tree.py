"""Draft token trees and their flattening into one verify pass.

A tree hangs below the root, the last accepted token (not yet in the KV cache).
Nodes are listed parents-first; `parents[i] == -1` means a child of the root.
The verify pass feeds [root, node 0, node 1, ...] (node i at row i + 1) at
positions cache_len + depth with an ancestor mask, so row r's logits are the
target's prediction after the root-to-r path — all paths in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class DraftTree:
    tokens: list[int] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)
    # The distribution each node was sampled from (None: chosen deterministically, a point mass).
    draft_probs: list[np.ndarray | None] | None = None

    @classmethod
    def chain(cls, tokens, draft_probs=None) -> "DraftTree":
        return cls(list(tokens), list(range(-1, len(tokens) - 1)), draft_probs)

    def __len__(self) -> int:
        return len(self.tokens)

    def add(self, token: int, parent: int = -1, probs: np.ndarray | None = None) -> int:
        """Append a node; returns its index (an existing sibling with the same token is reused)."""
        for i in self.children(parent):
            if self.tokens[i] == token:
                return i
        self.tokens.append(int(token))
        self.parents.append(parent)
        if self.draft_probs is not None or probs is not None:
            self.draft_probs = (self.draft_probs or [None] * (len(self.tokens) - 1)) + [probs]
        return len(self.tokens) - 1

    def children(self, node: int) -> list[int]:
        """Children of `node` (-1: of the root), in insertion order."""
        return [i for i, p in enumerate(self.parents) if p == node]

    def children_by_node(self) -> dict[int, list[int]]:
        """Every node's children at once (-1: the root's), in insertion order."""
        children: dict[int, list[int]] = {}
        for i, parent in enumerate(self.parents):
            children.setdefault(parent, []).append(i)
        return children

    def path(self, node: int) -> list[int]:
        """Node indices from the root's first child down to `node`."""
        out = []
        while node >= 0:
            out.append(node)
            node = self.parents[node]
        return out[::-1]

    def depth(self) -> int:
        return max((len(self.path(i)) for i in range(len(self))), default=0)

    def truncated(self, max_nodes: int) -> "DraftTree":
        """The first `max_nodes` nodes (still a tree: parents come first)."""
        probs = None if self.draft_probs is None else self.draft_probs[:max_nodes]
        return DraftTree(self.tokens[:max_nodes], self.parents[:max_nodes], probs)

    def flatten(self, root_token: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tokens [1+N], depths [1+N], ancestor mask [1+N, 1+N]) with the root at row 0."""
        tokens, parents = self.flatten_parents(root_token)
        return tokens, *tree_layout(parents)

    def flatten_parents(self, root_token: int) -> tuple[np.ndarray, list[int]]:
        """(tokens [1+N], parent row of each row (-1 for the root at row 0))."""
        return np.array([root_token] + self.tokens, np.int64), [-1] + [p + 1 for p in self.parents]

    def first_chain(self) -> "DraftTree":
        """The path that follows each node's first child (the drafter's favourite branch)."""
        nodes, node = [], -1
        while (kids := self.children(node)):
            nodes.append(kids[0])
            node = kids[0]
        probs = None if self.draft_probs is None else [self.draft_probs[i] for i in nodes]
        return DraftTree.chain([self.tokens[i] for i in nodes], probs)

    def is_chain(self) -> bool:
        return all(p == i - 1 for i, p in enumerate(self.parents))


def tree_layout(parents: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Parent indices (-1 = below the cached prefix) -> (depths, ancestor mask [n, n] incl. the diagonal)."""
    depth, mask = np.zeros(len(parents), np.int64), np.eye(len(parents), dtype=bool)
    for i, p in enumerate(parents):
        if p >= 0:
            depth[i], mask[i] = depth[p] + 1, mask[i] | mask[p]
    return depth, mask
