"""`--spec auto`: the controller chooses, step by step, between free n-gram drafts, the tuned
layer-skip drafter (where the backend has layer plans and tuning measured that it pays
here), the export's trained PPD / S3D drafters (where present and the backend takes their
rows) and plain decoding, from this device's cost curve and the acceptance it observes."""

from __future__ import annotations

import logging

from ..controller import Controller, ControlledDrafter, CostModel
from .ngram import NgramDrafter

log = logging.getLogger(__name__)
CALIBRATION_TEXT = "def quicksort(items):\n    \"\"\"Sort a list of numbers.\"\"\"\n" * 4


def auto_drafter(model, max_budget: int = 16) -> ControlledDrafter:
    # matches of every length are candidates: the controller keeps acceptance per match length, so
    # 1-token matches are drafted only where they are followed (copying a long text), not on chat
    drafters = {"ngram": NgramDrafter(min_ngram=1)}
    if model.backend.supports_plan():
        from ..tune import tuned_layerskip
        from .layerskip import LayerSkipDrafter

        record = tuned_layerskip(model)
        if record["pays"]:
            drafters["layerskip"] = LayerSkipDrafter(model.backend, model.config.num_layers, record["skip"],
                                                     record["draft_len"])
        else:
            log.info("spec auto: layer-skip measured %.2fx of plain decoding here; not used", record["speedup"])
    cost = CostModel.cached(model, model.tokenizer.encode(CALIBRATION_TEXT))
    rows = {}
    ppd, s3d = trained(model, "ppd", cost), trained(model, "s3d", cost)
    if ppd is not None:
        drafters["ppd"], rows["ppd"] = ppd, ppd.pass_rows
    if s3d is not None:  # priced like layer-skip: by its measured draft seconds per drafted token
        drafters["s3d"] = s3d
    return ControlledDrafter(drafters, Controller(cost, max_budget=max_budget, free={"ngram", "ppd"},
                                                  pass_rows=rows))


def trained(model, kind: str, cost):
    """The export's trained `kind` drafter (ppd, s3d) where the backend can run it, else None (saying why)."""
    from ...errors import ModelFormatError
    from ...export.trained import load_drafter
    from .ppd import PPDDrafter
    from .s3d import S3DDrafter

    needs = model.backend.supports_extra_rows() and (kind == "ppd" or model.backend.supports_plan())
    if not needs:
        log.info("spec auto: the %s backend cannot take %s's extra rows%s; not used", model.backend.name, kind,
                 "" if kind == "ppd" else " with a layer plan")
        return None
    try:
        rows, record = load_drafter(model.source, kind)
    except ModelFormatError as exc:
        log.info("spec auto: no usable %s drafter (%s)", kind, exc)
        return None
    if kind == "ppd":
        return PPDDrafter(rows, cost=cost)
    return S3DDrafter(model.backend, model.config.num_layers, record["skip"], rows)
