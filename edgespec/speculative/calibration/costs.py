"""This device's verify cost curve for the controller: measured once per model file, backend,
machine and thread count, cached under EDGESPEC_CACHE/costs."""

from __future__ import annotations

import logging
from pathlib import Path

from ... import hub
from ...runtimes.timing import cost_curve
from ...sysinfo import machine_info
from ..controller import CALIBRATION_SIZES, CostModel

log = logging.getLogger(__name__)
CALIBRATION_TEXT = "def quicksort(items):\n    \"\"\"Sort a list of numbers.\"\"\"\n" * 4


def measure_cost_model(backend, prompt_ids: list[int], sizes=CALIBRATION_SIZES, reps: int = 3) -> CostModel:
    curve = cost_curve(backend, prompt_ids, sizes, reps)
    backend.reset()
    return CostModel(list(sizes), [curve["seconds"][T] for T in sizes])


def cached_cost_model(backend, prompt_ids: list[int], weights: Path, name: str, threads: int) -> CostModel:
    """weights: the file or export directory the backend runs (the cache entry follows it)."""
    extra = (backend.name, machine_info(threads)["cpu"], threads)
    path = hub.cache_dir() / "costs" / f"{name}-{hub.source_key(weights, *extra)}.json"

    def measure() -> dict:
        log.info("measuring this device's verify cost curve for %s on %s (once)", name, backend.name)
        cost = measure_cost_model(backend, prompt_ids)
        return {"sizes": cost.sizes, "seconds": cost.seconds}

    data = hub.cached_json(path, measure)
    return CostModel(data["sizes"], data["seconds"])
