"""`--spec` names -> drafters: one registry, so validation and construction cannot disagree.

A factory takes explicit inputs (`DrafterInputs`: the target's backend and config, the budget, and
the calibration records or draft backend its entry says it `needs`), never the API's Model: the
composition root (edgespec.api) measures or loads what is needed and hands it down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ...errors import EdgespecError
from ..controller import CostModel
from .combined import auto_drafter
from .draft_model import DraftModelDrafter
from .layerskip import LayerSkipDrafter, require_layer_plans
from .ngram import NgramDrafter

SPEC_CHOICES = "off | ngram | layerskip | auto | draft:MODEL"


@dataclass
class DrafterInputs:
    backend: object  # the target's Backend
    config: object  # the target's ModelConfig
    budget: int = 8  # max draft tokens per verify pass
    argument: str = ""  # what follows "name:" in --spec (draft:MODEL -> MODEL)
    layerskip: dict | None = None  # calibration record (calibration/layerskip.py), when the backend has plans
    cost: CostModel | None = None  # this device's cost curve (calibration/costs.py)
    draft_backend: object = None  # the draft model's Backend (draft:MODEL), same vocabulary checked


@dataclass(frozen=True)
class DrafterEntry:
    factory: Callable[[DrafterInputs], object]
    needs: frozenset = frozenset()  # of "layerskip", "cost", "draft_backend"
    takes_argument: bool = False


def _layerskip(inputs: DrafterInputs):
    require_layer_plans(inputs.backend)  # before the record, which exists only where there are plans
    return LayerSkipDrafter.from_record(inputs.backend, inputs.config.num_layers, inputs.layerskip)


def _auto(inputs: DrafterInputs):
    return auto_drafter(inputs.backend, inputs.config.num_layers, inputs.cost, inputs.layerskip,
                        max_budget=inputs.budget)


DRAFTERS = {
    "off": DrafterEntry(lambda inputs: None),
    "ngram": DrafterEntry(lambda inputs: NgramDrafter()),
    "layerskip": DrafterEntry(_layerskip, frozenset({"layerskip"})),
    "auto": DrafterEntry(_auto, frozenset({"layerskip", "cost"})),
    "draft": DrafterEntry(lambda inputs: DraftModelDrafter(inputs.draft_backend), frozenset({"draft_backend"}),
                          takes_argument=True),
}


def check_spec(spec: str) -> tuple[DrafterEntry, str]:
    """(registry entry, argument) for --spec, or a clear error before any model is loaded."""
    name, _, argument = (spec or "off").partition(":")
    entry = DRAFTERS.get(name)
    if entry is None or entry.takes_argument != bool(argument):
        raise EdgespecError(f"unknown --spec '{spec}'; expected {SPEC_CHOICES}")
    return entry, argument
