"""The numpy fp32 reference model behind the Backend contract (slow, exact: the oracle)."""

from __future__ import annotations

import numpy as np
import psutil

from ..errors import ContextOverflowError


class ReferenceBackend:
    name = "reference"

    def __init__(self, model, max_len: int):
        self.model, self.max_len = model, max_len
        self.cache = model.new_cache()
        self._last_start = 0

    @property
    def cache_len(self) -> int:
        return self.cache.length

    def supports_plan(self) -> bool:
        return False

    def forward(self, tokens, positions=None, tree_mask=None, logits_for=None, plan=None) -> np.ndarray:
        if plan is not None:
            raise NotImplementedError("the reference backend runs every layer")
        tokens = np.asarray(tokens).reshape(-1)
        if self.cache_len + len(tokens) > self.max_len:
            raise ContextOverflowError(f"{self.cache_len} cached + {len(tokens)} new tokens exceed the context "
                                       f"of {self.max_len} tokens")
        mask = None
        if tree_mask is not None:
            mask = np.concatenate([np.ones((len(tokens), self.cache_len), bool), tree_mask], axis=1)
        self._last_start = self.cache_len
        logits = self.model.forward(tokens, self.cache, positions, mask)
        return logits if logits_for is None else logits[np.asarray(logits_for)]

    def rollback(self, n: int) -> None:
        self.cache.rollback(n)

    def keep(self, indices) -> None:
        self.cache.keep(self._last_start, np.asarray(indices, dtype=np.int64))

    def reset(self) -> None:
        self.cache = self.model.new_cache()

    def memory(self) -> dict[str, int]:
        return {"rss": psutil.Process().memory_info().rss}
