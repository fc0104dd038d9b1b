"""`--spec auto`: the controller chooses, step by step, between free n-gram drafts, the tuned
layer-skip drafter (where the backend has layer plans and tuning measured that it pays
here) and plain decoding, from this device's cost curve and the acceptance it observes."""

from __future__ import annotations

import logging

from ..controller import Controller, ControlledDrafter, CostModel
from .ngram import NgramDrafter

log = logging.getLogger(__name__)


def auto_drafter(model, max_budget: int = 16) -> ControlledDrafter:
    # matches of every length are candidates: the controller keeps acceptance per match length, so
    # 1-token matches are drafted only where they are followed (copying a long text), not on chat
    drafters, draft_seconds = {"ngram": NgramDrafter(min_ngram=1)}, {}
    # the cost curve first: it bounds what layer skip could gain before any search (speculative/tune.py)
    cost = CostModel.cached(model)
    if model.backend.supports_plan():
        from ..tune import tuned_layerskip
        from .layerskip import LayerSkipDrafter

        record = tuned_layerskip(model, cost)
        if record["pays"]:
            drafters["layerskip"] = LayerSkipDrafter(model.backend, model.config.num_layers, record["skip"],
                                                     record["draft_len"])
            if record.get("draft_cost"):  # measured by the quick search: a better start than the default guess
                draft_seconds = {"layerskip": record["draft_cost"] * cost.pass_seconds(1)}
        else:
            log.info("spec auto: layer-skip measured %.2fx of plain decoding here; not used", record["speedup"])
    return ControlledDrafter(drafters, Controller(cost, max_budget=max_budget, free={"ngram"},
                                                      draft_seconds=draft_seconds))
