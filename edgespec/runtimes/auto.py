"""`--backend auto`: the backend that decodes this model faster on this machine.

Measured once (a short prefill, then timed single-token steps on each backend, one at a
time) and cached per model file, machine and thread count under EDGESPEC_CACHE/auto.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import time
from pathlib import Path

from .. import hub
from ..sysinfo import machine_info

log = logging.getLogger(__name__)
WARMUP_STEPS, TIMED_STEPS = 4, 24


def choose_backend(ref: hub.ModelRef, threads: int, context: int) -> tuple[str, str]:
    """(backend name, why) — "ort" alone when llama-cpp-python is not installed."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return "ort", "llama-cpp-python is not installed"
    record_file = _record_file(ref, threads)
    if record_file.is_file():
        record = json.loads(record_file.read_text())
    else:
        log.info("backend auto: measuring onnxruntime and llama.cpp decode speed for %s once", ref.name)
        record = {"decode_tok_s": {kind: round(measure_decode(ref, kind, threads, context), 1)
                                   for kind in ("ort", "llamacpp")}, "machine": machine_info(threads)}
        record_file.parent.mkdir(parents=True, exist_ok=True)
        record_file.write_text(json.dumps(record, indent=1))
    speeds = record["decode_tok_s"]
    picked = max(speeds, key=speeds.get)
    why = ", ".join(f"{kind} {speed} tok/s" for kind, speed in speeds.items())
    log.info("backend auto picked %s for %s (%s; measured %s)", picked, ref.name, why, record_file)
    return picked, why


def measure_decode(ref: hub.ModelRef, kind: str, threads: int, context: int) -> float:
    from . import open_backend

    opened = open_backend(ref, kind, threads=threads, context=context)
    backend = opened.backend
    prompt = opened.tokenizer.encode("def quicksort(items):\n    \"\"\"Sort a list.\"\"\"\n")
    token = int(backend.forward(prompt, logits_for=[len(prompt) - 1])[-1].argmax())
    for step in range(WARMUP_STEPS + TIMED_STEPS):
        if step == WARMUP_STEPS:
            start = time.perf_counter()
        token = int(backend.forward([token])[-1].argmax())
    seconds = time.perf_counter() - start
    if hasattr(backend, "close"):
        backend.close()
    del opened, backend
    gc.collect()
    return TIMED_STEPS / seconds


def _record_file(ref: hub.ModelRef, threads: int) -> Path:
    path = Path(ref.path)
    stat = path.stat()
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{machine_info(threads)['cpu']}:{threads}"
    return hub.cache_dir() / "auto" / f"{ref.name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.json"
