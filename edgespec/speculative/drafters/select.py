"""`--spec` names -> drafters: one registry, so validation and construction cannot disagree."""

from __future__ import annotations

from ...errors import EdgespecError

SPEC_CHOICES = "off | ngram | layerskip | auto | draft:MODEL"


def _ngram(model, budget, argument):
    from .ngram import NgramDrafter

    return NgramDrafter()


def _layerskip(model, budget, argument):
    from .layerskip import LayerSkipDrafter

    return LayerSkipDrafter.for_model(model)


def _auto(model, budget, argument):
    from .combined import auto_drafter

    return auto_drafter(model, max_budget=budget)


def _draft_model(model, budget, argument):
    from .draft_model import DraftModelDrafter

    return DraftModelDrafter.for_model(argument, model)


# --spec name (before any ":") -> (needs an argument after ":", factory(model, budget, argument))
DRAFTERS = {"off": (False, lambda model, budget, argument: None), "ngram": (False, _ngram),
            "layerskip": (False, _layerskip), "auto": (False, _auto), "draft": (True, _draft_model)}


def check_spec(spec: str) -> tuple:
    """(factory, argument) for --spec, or a clear error before any model is loaded."""
    name, _, argument = (spec or "off").partition(":")
    needs_argument, factory = DRAFTERS.get(name, (None, None))
    if factory is None or needs_argument != bool(argument):
        raise EdgespecError(f"unknown --spec '{spec}'; expected {SPEC_CHOICES}")
    return factory, argument


def make_drafter(spec: str, model, budget: int = 8):
    """The drafter for `--spec` on a loaded Model (None for off)."""
    factory, argument = check_spec(spec)
    return factory(model, budget, argument)
