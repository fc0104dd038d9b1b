"""`--backend auto`: the backend that decodes this model faster on this machine.

Measured once (a short prefill, then the median of timed single-token passes on each backend,
one backend at a time) and cached per model file, machine and thread count under EDGESPEC_CACHE/auto.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .. import hub
from ..errors import EdgespecError
from ..sysinfo import machine_info

log = logging.getLogger(__name__)
TIMED_STEPS = 24


def choose_backend(ref: hub.ModelRef, threads: int, context: int) -> tuple[str, str]:
    """(backend name, why) — "ort" alone when llama-cpp-python is not installed or its build cannot run here."""
    from .llamacpp import llama_cpp_module

    try:
        llama_cpp_module()
    except EdgespecError as unusable:  # not installed, or a build that cannot run here
        return "ort", f"llama.cpp unusable: {unusable}"
    record_file = _record_file(ref, threads)

    def measure() -> dict:
        log.info("backend auto: measuring onnxruntime and llama.cpp decode speed for %s once", ref.name)
        return {"decode_tok_s": {kind: round(measure_decode(ref, kind, threads, context), 1)
                                 for kind in ("ort", "llamacpp")}, "machine": machine_info(threads)}

    record = hub.cached_json(record_file, measure)
    speeds = record["decode_tok_s"]
    picked = max(speeds, key=speeds.get)
    why = ", ".join(f"{kind} {speed} tok/s" for kind, speed in speeds.items())
    log.info("backend auto picked %s for %s (%s; measured %s)", picked, ref.name, why, record_file)
    return picked, why


def measure_decode(ref: hub.ModelRef, kind: str, threads: int, context: int) -> float:
    """Decode tok/s: 1 / the median time of a 1-token pass after a short prompt."""
    from .timing import cost_curve
    from . import measure_on

    def step_seconds(opened) -> float:
        prompt = opened.tokenizer.encode("def quicksort(items):\n    \"\"\"Sort a list.\"\"\"\n")
        return cost_curve(opened.backend, prompt, sizes=(1,), reps=TIMED_STEPS)["seconds"][1]

    return 1.0 / measure_on(ref, kind, step_seconds, threads, context)


def _record_file(ref: hub.ModelRef, threads: int) -> Path:
    key = hub.source_key(ref.path, machine_info(threads)["cpu"], threads)
    return hub.cache_dir() / "auto" / f"{ref.name}-{key}.json"
