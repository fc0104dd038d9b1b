"""A separate, smaller model with the same vocabulary drafts a chain (classic speculative decoding).

The draft model has its own backend and KV cache. Each proposal first brings its cache in
line with the context (roll back to the common prefix, feed what is new in one pass), then
drafts greedily; what it drafted stays cached, so accepted drafts cost nothing next time.
"""

from __future__ import annotations

import logging
from typing import Sequence

from ...errors import TokenizerError
from ..engine import common_prefix
from ..tree import DraftTree

log = logging.getLogger(__name__)


def check_same_vocabulary(target_tokenizer, draft_tokenizer, target_name: str, draft_name: str) -> None:
    """Draft ids must mean the same text as target ids; names the first token that differs."""
    n = min(target_tokenizer.vocab_size, draft_tokenizer.vocab_size)
    for i in range(n):
        a, b = target_tokenizer.token_bytes(i), draft_tokenizer.token_bytes(i)
        if a != b:
            raise TokenizerError(f"draft model {draft_name} does not share {target_name}'s vocabulary: token {i} is "
                                 f"{a!r} in the target but {b!r} in the draft model")
    if target_tokenizer.vocab_size != draft_tokenizer.vocab_size:
        log.warning("vocabularies agree on %d tokens but sizes differ (%d target, %d draft)", n,
                    target_tokenizer.vocab_size, draft_tokenizer.vocab_size)


class DraftModelDrafter:
    name = "draft"

    def __init__(self, backend, draft_len: int = 4):
        self.backend, self.draft_len = backend, draft_len
        self.cached: list[int] = []  # the tokens in the draft model's cache

    def propose(self, context: Sequence[int], budget: int) -> DraftTree:
        k = min(self.draft_len, budget, self.backend.max_len - len(context))
        if k <= 0:
            return DraftTree()
        common = common_prefix(self.cached, context[:-1])
        self.backend.rollback(self.backend.cache_len - common)
        new = list(context[common:])
        token = int(self.backend.forward(new, logits_for=[len(new) - 1])[-1].argmax())
        drafts = [token]
        for _ in range(k - 1):
            token = int(self.backend.forward([token])[-1].argmax())
            drafts.append(token)
        self.cached = list(context) + drafts[:-1]
        return DraftTree.chain(drafts)

    def observe(self, accepted: Sequence[int]) -> None:
        pass

    def reset(self) -> None:
        self.backend.reset()
        self.cached = []
