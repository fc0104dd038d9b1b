"""S3D (Skippy Simultaneous Speculative Decoding, arXiv 2405.20314): gamma tokens from ONE draft pass.

The draft pass feeds the root and gamma - 1 trained mask-token rows after it (positions
cache_len .. cache_len + gamma - 1, causal) through the layer plan that skips a middle block of
layers; it attends to the prefix's K/V, which the full model wrote. Row i's argmax drafts the
token i + 1 after the root: a chain of gamma. The pass's K/V rows (valid for the partial plan only)
are rolled back at once, and the full model's verify pass overwrites them, as for layer-skip drafts.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...errors import EdgespecError
from ..tree import DraftTree
from .layerskip import skip_plan


def middle_skip(num_layers: int) -> list[int]:
    """S3D's skipped block: the middle ~40% of the layers; the first and last layers always run."""
    lo, hi = int(round(num_layers * 0.3)), int(round(num_layers * 0.7))
    return list(range(max(lo, 1), min(hi, num_layers - 1)))


class S3DDrafter:
    name = "s3d"

    def __init__(self, backend, num_layers: int, skip: Sequence[int], mask_rows: np.ndarray):
        if not backend.supports_plan() or not backend.supports_extra_rows():
            raise EdgespecError(f"S3D drafting needs layer plans and extra input rows, which this {backend.name} "
                                "backend does not have; use --backend ort with an export that has both (a model "
                                "name or GGUF loaded with --spec s3d opens its variant with layer plans)")
        self.plan = skip_plan(num_layers, skip, f"S3D skip set {list(skip)}")
        self.backend, self.mask_rows = backend, np.ascontiguousarray(mask_rows, np.float32)
        self.gamma = len(self.mask_rows) + 1

    def propose(self, context: Sequence[int], budget: int) -> DraftTree:
        gamma = min(self.gamma, budget, self.backend.max_len - self.backend.cache_len - 1)
        if gamma <= 0:
            return DraftTree()
        logits = self.backend.forward([context[-1]], extra_embeds=self.mask_rows[:gamma - 1], plan=self.plan)
        self.backend.rollback(gamma)  # the partial plan's K/V rows: the verify pass writes the real ones
        return DraftTree.chain([int(row.argmax()) for row in logits])

    def observe(self, accepted: Sequence[int]) -> None:
        pass

    def reset(self) -> None:
        pass
