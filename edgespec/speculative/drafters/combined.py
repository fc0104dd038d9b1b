"""`--spec auto`: the controller chooses, step by step, between free n-gram drafts, the tuned
layer-skip drafter (where the backend has layer plans and tuning measured that it pays
here), the export's trained PPD / S3D drafters (where present and the backend takes their
rows) and plain decoding, from this device's cost curve and the acceptance it observes."""

from __future__ import annotations

import logging

from ..controller import Controller, ControlledDrafter, CostModel
from .layerskip import LayerSkipDrafter
from .ngram import NgramDrafter
from .ppd import PPDDrafter
from .s3d import S3DDrafter

log = logging.getLogger(__name__)


def auto_drafter(backend, num_layers: int, cost: CostModel, layerskip: dict | None,
                 max_budget: int = 16, trained: dict | None = None) -> ControlledDrafter:
    """cost: this device's cost curve; layerskip: the calibration record (None: no layer plans here);
    trained: the export's trained drafters, kind -> (rows, record)."""
    drafters, draft_seconds = {"ngram": NgramDrafter.for_auto()}, {}
    if layerskip is not None and layerskip["pays"]:
        drafters["layerskip"] = LayerSkipDrafter.from_record(backend, num_layers, layerskip)
        if layerskip.get("draft_cost"):  # measured by the quick search: a better start than the default guess
            draft_seconds["layerskip"] = layerskip["draft_cost"] * cost.pass_seconds(1)
    elif layerskip is not None:
        log.debug("spec auto: layer-skip measured %.2fx of plain decoding here; not used", layerskip["speedup"])
    trained, rows = trained or {}, {}
    if "ppd" in trained and backend.supports_extra_rows():  # priced by its pass of (1+k)^2 rows
        drafters["ppd"] = PPDDrafter(trained["ppd"][0], cost=cost)
        rows["ppd"] = drafters["ppd"].pass_rows
    if "s3d" in trained and backend.supports_extra_rows() and backend.supports_plan():
        # priced like layer-skip: by its measured draft seconds per drafted token
        drafters["s3d"] = S3DDrafter(backend, num_layers, trained["s3d"][1]["skip"], trained["s3d"][0])
    missing = [kind for kind in trained if kind not in drafters]
    if missing:
        log.info("spec auto: the %s backend cannot run the trained %s drafter(s); not used", backend.name,
                 ", ".join(missing))
    return ControlledDrafter(drafters, Controller(cost, max_budget=max_budget, free={"ngram", "ppd"},
                                                  draft_seconds=draft_seconds, pass_rows=rows,
                                                  priors=dict(NgramDrafter.priors)))
