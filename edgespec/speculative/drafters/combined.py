"""`--spec auto`: the controller chooses, step by step, between free n-gram drafts, the tuned
layer-skip drafter (where the backend has layer plans and tuning measured that it pays
here) and plain decoding, from this device's cost curve and the acceptance it observes."""

from __future__ import annotations

import logging

from ..controller import Controller, ControlledDrafter, CostModel
from .layerskip import LayerSkipDrafter
from .ngram import NgramDrafter

log = logging.getLogger(__name__)


def auto_drafter(backend, num_layers: int, cost: CostModel, layerskip: dict | None,
                 max_budget: int = 16) -> ControlledDrafter:
    """cost: this device's cost curve; layerskip: the calibration record (None: no layer plans here)."""
    # matches of every length are candidates: the controller keeps acceptance per match length, so
    # 1-token matches are drafted only where they are followed (copying a long text), not on chat
    drafters = {"ngram": NgramDrafter(min_ngram=1)}
    if layerskip is not None and layerskip["pays"]:
        drafters["layerskip"] = LayerSkipDrafter.from_record(backend, num_layers, layerskip)
    elif layerskip is not None:
        log.info("spec auto: layer-skip measured %.2fx of plain decoding here; not used", layerskip["speedup"])
    return ControlledDrafter(drafters, Controller(cost, max_budget=max_budget, free={"ngram"}))
