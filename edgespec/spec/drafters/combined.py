"""`--spec auto`: free n-gram drafts when the context offers a match, else the model's own drafter.

The fallback is the tuned layer-skip drafter where the backend has layer plans and the tuning
measured that it pays on this device; otherwise n-gram alone.
"""

from __future__ import annotations

import logging
from typing import Sequence

from ..tree import DraftTree
from .ngram import NgramDrafter

log = logging.getLogger(__name__)


class CombinedDrafter:
    name = "auto"

    def __init__(self, ngram: NgramDrafter, fallback=None, min_match: int = 2):
        self.ngram, self.fallback, self.min_match = ngram, fallback, min_match

    def propose(self, context: Sequence[int], budget: int) -> DraftTree:
        tree = self.ngram.propose(context, budget)
        if len(tree) and self.ngram.last_match >= self.min_match:
            return tree
        # a single repeated token predicts little: measured on chat prompts it costs more than it saves
        return self.fallback.propose(context, budget) if self.fallback is not None else DraftTree()

    def observe(self, accepted: Sequence[int]) -> None:
        if self.fallback is not None:
            self.fallback.observe(accepted)

    def reset(self) -> None:
        self.ngram.reset()
        if self.fallback is not None:
            self.fallback.reset()


def auto_drafter(model) -> CombinedDrafter:
    fallback = None
    if model.backend.supports_plan():
        from ..tune import tuned_layerskip
        from .layerskip import LayerSkipDrafter

        record = tuned_layerskip(model)
        if record["pays"]:
            fallback = LayerSkipDrafter(model.backend, model.config.num_layers, record["skip"], record["draft_len"])
        else:
            log.info("spec auto: layer-skip measured %.2fx of plain decoding here, so only n-gram drafts are used",
                     record["speedup"])
    return CombinedDrafter(NgramDrafter(), fallback)
