"""`--spec` names -> drafters."""

from __future__ import annotations

from ...errors import EdgespecError

SPEC_CHOICES = "off | ngram | layerskip | auto | draft:MODEL"


def make_drafter(spec: str, model, budget: int = 8):
    """The drafter for `--spec` on a loaded Model (None for off)."""
    if spec in ("off", "", None):
        return None
    if spec == "ngram":
        from .ngram import NgramDrafter

        return NgramDrafter()
    if spec == "layerskip":
        from .layerskip import LayerSkipDrafter

        return LayerSkipDrafter.for_model(model)
    if spec == "auto":
        from .combined import auto_drafter

        return auto_drafter(model, max_budget=budget)
    if spec.startswith("draft:"):
        from .draft_model import DraftModelDrafter

        return DraftModelDrafter.for_model(spec.split(":", 1)[1], model)
    raise EdgespecError(f"unknown --spec '{spec}'; expected {SPEC_CHOICES}")


def check_spec(spec: str) -> None:
    """Refuse an unknown --spec before any model is loaded."""
    if spec not in ("off", "ngram", "layerskip", "auto") and not (spec.startswith("draft:") and len(spec) > 6):
        raise EdgespecError(f"unknown --spec '{spec}'; expected {SPEC_CHOICES}")
