"""`--spec` names -> drafters: one registry, so validation and construction cannot disagree.

A factory takes explicit inputs (`DrafterInputs`: the target's backend and config, the budget, and
the calibration records or draft backend its entry says it `needs`), never the API's Model: the
composition root (edgespec.api) measures or loads what is needed and hands it down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ...errors import EdgespecError
from ..controller import CostModel
from .combined import auto_drafter
from .draft_model import DraftModelDrafter
from .layerskip import LayerSkipDrafter, require_layer_plans
from .ngram import NgramDrafter
from .ppd import PPDDrafter
from .s3d import S3DDrafter

SPEC_CHOICES = "off | ngram | layerskip | ppd | ppd:FILE | s3d | s3d:FILE | auto | draft:MODEL"


@dataclass
class DrafterInputs:
    backend: object  # the target's Backend
    config: object  # the target's ModelConfig
    budget: int = 8  # max draft tokens per verify pass
    argument: str = ""  # what follows "name:" in --spec (draft:MODEL -> MODEL)
    layerskip: dict | None = None  # calibration record (calibration/layerskip.py), when the backend has plans
    cost: CostModel | None = None  # this device's cost curve (calibration/costs.py)
    draft_backend: object = None  # the draft model's Backend (draft:MODEL), same vocabulary checked
    # trained drafters of the export (export/trained.py): kind -> (rows, record); checked for this export
    trained: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DrafterEntry:
    factory: Callable[[DrafterInputs], object]
    # of "layerskip", "cost", "draft_backend", "ppd" / "s3d" (that trained drafter, required; from FILE when
    # the argument names one), "trained" (whatever trained drafters the export has)
    needs: frozenset = frozenset()
    takes_argument: bool | None = False  # None: optional
    layer_plans: bool = False  # drafts with layers skipped: a source is opened as its export with layer plans


def _layerskip(inputs: DrafterInputs):
    require_layer_plans(inputs.backend)  # before the record, which exists only where there are plans
    return LayerSkipDrafter.from_record(inputs.backend, inputs.config.num_layers, inputs.layerskip)


def _ppd(inputs: DrafterInputs):
    if not inputs.backend.supports_extra_rows():
        raise EdgespecError(f"PPD drafting appends prompt-token rows to the verify pass, which the "
                            f"{inputs.backend.name} backend cannot take; use --backend ort (an export made by "
                            "this version)")
    rows, _ = inputs.trained["ppd"]
    return PPDDrafter(rows, cost=inputs.cost, max_depth=inputs.budget)


def _s3d(inputs: DrafterInputs):
    rows, record = inputs.trained["s3d"]
    return S3DDrafter(inputs.backend, inputs.config.num_layers, record["skip"], rows)


def _auto(inputs: DrafterInputs):
    return auto_drafter(inputs.backend, inputs.config.num_layers, inputs.cost, inputs.layerskip,
                        max_budget=inputs.budget, trained=inputs.trained)


DRAFTERS = {
    "off": DrafterEntry(lambda inputs: None),
    "ngram": DrafterEntry(lambda inputs: NgramDrafter()),
    "layerskip": DrafterEntry(_layerskip, frozenset({"layerskip"}), layer_plans=True),
    "ppd": DrafterEntry(_ppd, frozenset({"ppd", "cost"}), takes_argument=None),
    "s3d": DrafterEntry(_s3d, frozenset({"s3d"}), takes_argument=None, layer_plans=True),
    "auto": DrafterEntry(_auto, frozenset({"layerskip", "cost", "trained"})),
    "draft": DrafterEntry(lambda inputs: DraftModelDrafter(inputs.draft_backend), frozenset({"draft_backend"}),
                          takes_argument=True),
}


def check_spec(spec: str) -> tuple[DrafterEntry, str]:
    """(registry entry, argument) for --spec, or a clear error before any model is loaded."""
    name, _, argument = (spec or "off").partition(":")
    entry = DRAFTERS.get(name)
    if entry is None or (entry.takes_argument is not None and entry.takes_argument != bool(argument)):
        raise EdgespecError(f"unknown --spec '{spec}'; expected {SPEC_CHOICES}")
    return entry, argument
