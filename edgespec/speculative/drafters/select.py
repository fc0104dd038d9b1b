"""`--spec` names -> drafters: one registry, so validation and construction cannot disagree."""

from __future__ import annotations

from ...errors import EdgespecError

SPEC_CHOICES = "off | ngram | layerskip | ppd | ppd:FILE | s3d | s3d:FILE | auto | draft:MODEL"


def _ngram(model, budget, argument):
    from .ngram import NgramDrafter

    return NgramDrafter()


def _layerskip(model, budget, argument):
    from .layerskip import LayerSkipDrafter

    return LayerSkipDrafter.for_model(model)


def _auto(model, budget, argument):
    from .combined import auto_drafter

    return auto_drafter(model, max_budget=budget)


def _ppd(model, budget, argument):
    """The export's trained PPD prompt tokens (or those in FILE), sized by this device's cost curve."""
    from ...export.trained import load_drafter
    from ..controller import CostModel
    from .combined import CALIBRATION_TEXT
    from .ppd import PPDDrafter

    if not model.backend.supports_extra_rows():
        raise EdgespecError(f"PPD drafting appends prompt-token rows to the verify pass, which the {model.backend.name} "
                            "backend cannot take; use --backend ort (an export made by this version)")
    rows, _ = load_drafter(model.source, "ppd", argument or None)
    return PPDDrafter(rows, cost=CostModel.cached(model, model.tokenizer.encode(CALIBRATION_TEXT)),
                      max_depth=budget)


def _s3d(model, budget, argument):
    """The export's trained S3D mask tokens (or those in FILE) with the skip set they were trained for."""
    from ...export.trained import load_drafter
    from .s3d import S3DDrafter

    rows, record = load_drafter(model.source, "s3d", argument or None)
    return S3DDrafter(model.backend, model.config.num_layers, record["skip"], rows)


def _draft_model(model, budget, argument):
    from .draft_model import DraftModelDrafter

    return DraftModelDrafter.for_model(argument, model)


# --spec name (before any ":") -> (argument after ":": True needed / False none / None optional, factory)
DRAFTERS = {"off": (False, lambda model, budget, argument: None), "ngram": (False, _ngram),
            "layerskip": (False, _layerskip), "ppd": (None, _ppd), "s3d": (None, _s3d),
            "auto": (False, _auto),
            "draft": (True, _draft_model)}


def check_spec(spec: str) -> tuple:
    """(factory, argument) for --spec, or a clear error before any model is loaded."""
    name, _, argument = (spec or "off").partition(":")
    needs_argument, factory = DRAFTERS.get(name, (None, None))
    if factory is None or (needs_argument is not None and needs_argument != bool(argument)):
        raise EdgespecError(f"unknown --spec '{spec}'; expected {SPEC_CHOICES}")
    return factory, argument


def make_drafter(spec: str, model, budget: int = 8):
    """The drafter for `--spec` on a loaded Model (None for off)."""
    factory, argument = check_spec(spec)
    return factory(model, budget, argument)
