"""Layer-skip self-drafting (Draft & Verify, SWIFT): the target with some layers skipped drafts a chain.

It runs on the same backend and the same weights through a layer plan (an `If` per skippable
layer in the ONNX graph), so no second copy of the weights exists. The draft passes write
their KV rows into the target's cache after the accepted prefix; the drafter rolls them back
and the verify pass overwrites those rows with the full model's values.
The skip set and chain length come from `edgespec tune` (calibration/layerskip.py): a search on this device
for the highest measured tokens per second, stored in the export's manifest.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from ...errors import EdgespecError
from ...models.contract import check_skip
from ..tree import DraftTree

log = logging.getLogger(__name__)


def require_layer_plans(backend) -> None:
    if backend.supports_plan():
        return
    if backend.name == "ort":
        raise EdgespecError("layer-skip drafting needs an export with layer plans, and this one has none (the "
                            "default since graph 6: they cost every plain step): load a model name or GGUF with "
                            "--spec layerskip / s3d or --layer-plans (its variant with plans is exported once), or "
                            "`edgespec export MODEL --layer-plans`")
    raise EdgespecError(f"layer-skip drafting needs layer plans, which the {backend.name} backend does not "
                        "have; use --backend ort, or --spec ngram / draft:MODEL")


def skip_plan(num_layers: int, skip: Sequence[int], what: str) -> np.ndarray:
    """The layer mask [L] with the layers `skip` off, after refusing layers no plan may skip."""
    check_skip(num_layers, skip, what)
    plan = np.ones(num_layers, dtype=bool)
    plan[list(skip)] = False
    return plan


class LayerSkipDrafter:
    name = "layerskip"

    def __init__(self, backend, num_layers: int, skip: Sequence[int], draft_len: int = 4):
        require_layer_plans(backend)
        self.plan = skip_plan(num_layers, skip, f"layer-skip set {list(skip)}")
        self.backend, self.skip, self.draft_len = backend, sorted(skip), draft_len

    @classmethod
    def from_record(cls, backend, num_layers: int, record: dict) -> "LayerSkipDrafter":
        """The drafter a calibration record (calibration/layerskip.py) describes."""
        return cls(backend, num_layers, record["skip"], record["draft_len"])

    def propose(self, context: Sequence[int], budget: int) -> DraftTree:
        drafts: list[int] = []
        token = context[-1]
        try:
            for _ in range(min(self.draft_len, budget)):
                token = int(self.backend.forward([token], plan=self.plan)[-1].argmax())
                drafts.append(token)
        finally:  # the target's cache must hold exactly the accepted tokens again
            self.backend.rollback(len(drafts))
        return DraftTree.chain(drafts)

    def observe(self, accepted: Sequence[int]) -> None:
        pass

    def reset(self) -> None:
        pass
