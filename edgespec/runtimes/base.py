"""The Backend contract: the only thing the decoding engine knows about execution.

Every backend keeps a KV cache of `cache_len` tokens and appends to it on `forward`.
Speculative entries are dropped with `rollback(n)` or compacted with `keep(indices)`
(e.g. the accepted root-to-node path of a token tree) without copying the cache.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class Backend(Protocol):
    name: str
    max_len: int

    @property
    def cache_len(self) -> int: ...

    def forward(self, tokens: Sequence[int], positions=None, tree_mask=None, logits_for=None,
                plan=None, extra_embeds=None) -> np.ndarray:
        """Append T tokens; logits [N, vocab] for rows `logits_for` (default all T).

        positions [T] default cache_len + arange(T); tree_mask [T, T] bool (True = may attend,
        default causal; the cached past is always visible); plan: a layer mask [L] bool.
        extra_embeds [E, d]: input rows appended after the tokens (PPD prompt tokens); T, positions,
        tree_mask and logits_for then cover the T + E rows, and the cache grows by T + E."""

    def rollback(self, n: int) -> None:
        """Forget the last n cached tokens."""

    def keep(self, indices) -> None:
        """Of the last forward's tokens keep only `indices` (in order) — a root-to-node path of its tree."""

    def reset(self) -> None: ...

    def memory(self) -> dict[str, int]: ...

    def supports_plan(self) -> bool:
        """Whether `plan` (running a subset of layers) is available on this backend."""

    def supports_extra_rows(self) -> bool:
        """Whether `extra_embeds` (input rows that are not tokens) is available on this backend."""

class BufferCache:
    """rollback / keep for backends whose KV cache is preallocated buffers plus a valid length
    (onnxruntime, static): the subclass sets `cache_len` and `_last_start` (where the last forward's
    rows begin) and moves rows in `_move_rows(start, indices)`."""

    cache_len: int
    _last_start: int

    def rollback(self, n: int) -> None:
        """Forget the last n cached tokens (a length change: no copy)."""
        if not 0 <= n <= self.cache_len:
            raise ValueError(f"cannot roll back {n} of {self.cache_len} cached tokens")
        self.cache_len -= n

    def keep(self, indices) -> None:
        """After a (tree) forward, keep only its tokens `indices` (in order), e.g. the accepted path."""
        indices = np.asarray(indices, dtype=np.int64)
        start, count = self._last_start, self.cache_len - self._last_start
        if indices.size and (indices.min() < 0 or indices.max() >= count):
            raise ValueError(f"keep({indices.tolist()}) outside the last forward's {count} tokens")
        if not np.array_equal(indices, np.arange(len(indices))):
            self._move_rows(start, indices)  # O(kept) copies
        self.cache_len = start + len(indices)

    def _move_rows(self, start: int, indices: np.ndarray) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        self.cache_len = 0

