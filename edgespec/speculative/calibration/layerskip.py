"""`edgespec tune`: find this device's fastest layer-skip drafter (skip set, chain length).

A search over skip sets of the middle layers (the first and last layers matter most, as
Draft & Verify and SWIFT found) and chain lengths. Each candidate decodes the calibration
prompts greedily with speculation; the score is measured tokens per second, not acceptance,
because on a CPU a verify pass of T tokens costs more than one step. The winner and every
candidate's numbers go into the export's manifest, keyed by machine and thread count.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ...errors import EdgespecError
from ...export.manifest import MANIFEST, read_manifest, update_drafters
from ...progress import Progress
from ...sampling import Sampler, SamplingParams
from ...sysinfo import machine_info
from ..drafters.layerskip import LayerSkipDrafter
from ..engine import SpecStats, decode

log = logging.getLogger(__name__)

CALIBRATION_PROMPTS = [
    "Explain in a short paragraph why the sky is blue.",
    "Write a Python function that checks whether a string is a palindrome.",
    "List three differences between TCP and UDP.",
    "Write a Python class for a queue with enqueue and dequeue methods.",
]
FRACTIONS = (0.25, 0.375, 0.5)
DRAFT_LENGTHS = (2, 3, 5)


def candidate_skip_sets(num_layers: int) -> list[list[int]]:
    """Skip sets of growing size: evenly spread over the middle, or one contiguous middle block."""
    middle = list(range(2, num_layers - 2)) if num_layers > 6 else list(range(1, num_layers - 1))
    sets = []
    for fraction in FRACTIONS:
        count = max(1, round(fraction * num_layers))
        if count > len(middle):
            continue
        spread = sorted({middle[int(i)] for i in np.linspace(0, len(middle) - 1, count)})
        start = (len(middle) - count) // 2
        for s in (spread, middle[start:start + count]):
            if s not in sets:
                sets.append(s)
    return sets


def measure(backend, prompts: list[list[int]], tokens: int, drafter=None, budget: int = 0) -> dict:
    """Greedy decode of every prompt; tokens per second over the decode phase, and acceptance."""
    stats, produced, seconds = SpecStats(), 0, 0.0
    for ids in prompts:
        events = decode(backend, ids, Sampler(SamplingParams()), tokens, drafter, budget, stats)
        next(events)  # the prefill is not part of decode speed
        start = time.perf_counter()
        produced += sum(1 for _ in events)
        seconds += time.perf_counter() - start
    return {"tok_s": round(produced / seconds, 2), "tokens_per_step": round(stats.tokens_per_step, 3)}


def tune_layerskip(backend, num_layers: int, prompts: list[list[int]], threads: int, tokens: int = 48) -> dict:
    """prompts: CALIBRATION_PROMPTS as token ids (chat-templated by the caller, who has the tokenizer)."""
    if not backend.supports_plan():
        raise EdgespecError(f"tuning layer-skip needs layer plans; the {backend.name} backend has none")
    plain = measure(backend, prompts, tokens)
    candidates = [(s, k) for s in candidate_skip_sets(num_layers) for k in DRAFT_LENGTHS]
    results = []
    with Progress(len(candidates), "tune layer-skip", unit="candidates") as progress:
        for skip, draft_len in candidates:
            drafter = LayerSkipDrafter(backend, num_layers, skip, draft_len)
            results.append({"skip": skip, "draft_len": draft_len, **measure(backend, prompts, tokens, drafter, draft_len)})
            progress.update(1)
    best = max(results, key=lambda r: r["tok_s"])
    record = {"kind": "layerskip", "skip": best["skip"], "draft_len": best["draft_len"],
              "speedup": round(best["tok_s"] / plain["tok_s"], 3), "pays": best["tok_s"] > plain["tok_s"],
              "plain_tok_s": plain["tok_s"], "candidates": results, "machine": machine_info(threads)["cpu"],
              "threads": threads, "calibration": {"prompts": len(prompts), "tokens": tokens}}
    log.info("layer-skip tuned: skip %s, chain %d: %.1f tok/s vs plain %.1f (%.2fx, acceptance %.2f tok/step)",
             best["skip"], best["draft_len"], best["tok_s"], plain["tok_s"], record["speedup"], best["tokens_per_step"])
    return record


def stored_layerskip(source, threads: int) -> dict | None:
    """The layer-skip record an export's manifest holds for this machine and thread count, if any."""
    if source is None or not (source / MANIFEST).is_file():
        return None
    machine = machine_info(threads)["cpu"]
    for entry in read_manifest(source, verify=False).get("drafters", []):
        if entry.get("kind") == "layerskip" and entry.get("machine") == machine and entry.get("threads") == threads:
            return entry
    return None


def tuned_layerskip(backend, num_layers: int, prompts: list[list[int]], threads: int, source=None, name: str = "",
                    retune: bool = False, tokens: int = 48) -> dict:
    """The stored calibration for this export, machine and threads; tuned (and stored in the export's
    manifest, when there is one) when missing or with retune."""
    record = None if retune else stored_layerskip(source, threads)
    if record is not None:
        return record
    log.info("no layer-skip calibration for %s on this machine yet: tuning it now (once)", name)
    record = tune_layerskip(backend, num_layers, prompts, threads, tokens)
    if source is not None and (source / MANIFEST).is_file():
        update_drafters(source, record)
    return record
