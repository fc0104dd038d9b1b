"""Find this device's fastest layer-skip drafter (skip set, chain length).

Candidates are skip sets of the middle layers (the first and last layers matter most, as
Draft & Verify and SWIFT found). Two searches store the same record in the export's manifest,
keyed by machine and the thread count that runs (0 and the core count are the same setting):

- `edgespec tune` (tune_layerskip): every candidate and chain length decodes the calibration
  prompts; the score is measured tokens per second. Thorough, minutes.
- first `--spec auto` (quick_tune_layerskip): on a time budget, pruned by a bound on the gain
  from the skipped share of the layers and the measured cost curve, scored from measured
  acceptance and draft cost with the controller's own model. Seconds.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ...errors import EdgespecError
from ...export.manifest import MANIFEST, read_manifest, update_drafters
from ...models.contract import skippable_layers
from ...progress import Progress
from ...sampling import Sampler, SamplingParams
from ...sysinfo import effective_threads, machine_info
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
    """Skip sets of growing size: evenly spread over the skippable (middle) layers, or one contiguous middle
    block of them."""
    middle = skippable_layers(num_layers)
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
              "plain_tok_s": plain["tok_s"], "candidates": results, **_machine_key(threads),
              "calibration": {"prompts": len(prompts), "tokens": tokens}}
    log.info("layer-skip tuned: skip %s, chain %d: %.1f tok/s vs plain %.1f (%.2fx, acceptance %.2f tok/step)",
             best["skip"], best["draft_len"], best["tok_s"], plain["tok_s"], record["speedup"], best["tokens_per_step"])
    return record


def _machine_key(threads: int) -> dict:
    return {"machine": machine_info(threads)["cpu"], "threads": effective_threads(threads)}


# Why a skip set can be dropped before any search. With t(T) the measured time of a T-row pass,
# c(T) = t(T) / t(1), and a draft pass that skips s of the L layers costing d * t(1): a chain of k
# drafts costs k*d*t(1) + t(k+1) per step and yields at most k+1 tokens (every draft kept), so
#     speedup(k) <= G(k) = (k + 1) / (k*d + c(k + 1)).
# The skipped layers are the only work a draft pass saves (embedding, lm_head and the kept layers
# all run), so d >= 1 - s/L; with that d the bound holds before anything is measured. A set whose
# max_k G(k) <= 1 cannot beat plain decoding even at perfect acceptance, and is not searched.
# A searched set measures d and the acceptance P(>= j drafts kept) of a K_MAX chain, which give
#     speedup(k) ~= E[k] / (k*d + c(k + 1)),   E[k] = 1 + sum_{j<=k} P(>= j kept),   k <= K_MAX
# (the controller's model: speculative/controller.py).
K_MAX = max(DRAFT_LENGTHS)
QUICK_TOKENS = 40  # new tokens per candidate in the quick search (one calibration prompt)
QUICK_BUDGET_S = 10.0  # the quick search's time budget: the issue allows 15 s (smollm2) / 30 s (qwen 0.5b) in all
MIN_STEPS = 6  # verify passes a candidate needs before its acceptance means anything
PAYS = 1.05  # a drafter must promise this much to be used (measurement noise on a shared machine)


def gain_bound(cost, draft_cost: float, k_max: int = K_MAX) -> tuple[float, int]:
    """(max_k G(k), its k) for a draft pass costing `draft_cost` x t(1) on CostModel `cost`."""
    t1 = cost.pass_seconds(1)
    return max(((k + 1) / (k * draft_cost + cost.pass_seconds(k + 1) / t1), k) for k in range(1, k_max + 1))


def quick_tune_layerskip(backend, num_layers: int, prompt: list[int], threads: int, cost,
                         budget_s: float = QUICK_BUDGET_S) -> dict:
    """The layer-skip record from a search that stops after `budget_s` seconds (see above)."""
    if not backend.supports_plan():
        raise EdgespecError(f"tuning layer-skip needs layer plans; the {backend.name} backend has none")
    bounded = sorted(((gain_bound(cost, 1 - len(skip) / num_layers), skip)
                      for skip in candidate_skip_sets(num_layers)), key=lambda b: -b[0][0])
    rows = [{"skip": skip, "draft_len": k, "bound": round(g, 3), "searched": False} for (g, k), skip in bounded]
    searchable = [row for row in rows if row["bound"] > PAYS]
    log.info("layer-skip: %d of %d skip sets could beat plain decoding here (bound from c(T)); searching them "
             "for at most %.0f s", len(searchable), len(rows), budget_s)
    started = time.monotonic()
    deadline = started + budget_s
    with Progress(max(len(searchable), 1), "calibrating --spec auto (once per model and machine)",
                  unit="candidates", estimate=budget_s if searchable else None) as progress:
        for row in searchable:
            if time.monotonic() > deadline:
                break
            _measure_candidate(backend, num_layers, cost, row, prompt, deadline)
            progress.update(1)
    backend.reset()
    searched = [r for r in rows if r["searched"]]
    best = max(searched, key=lambda r: r["speedup"]) if searched else rows[0]
    speedup = best.get("speedup", 0.0)
    record = {"kind": "layerskip", "skip": best["skip"], "draft_len": best["draft_len"], "speedup": speedup,
              "pays": speedup > PAYS, "plain_tok_s": round(1 / cost.pass_seconds(1), 2), "candidates": rows,
              **_machine_key(threads), "search": "quick",
              "calibration": {"tokens": QUICK_TOKENS, "budget_s": budget_s,
                              "seconds": round(time.monotonic() - started, 2)}}
    log.info("layer-skip %s here: best skip %s, chain %d, expected %.2fx plain (%d of %d sets searched)",
             "pays" if record["pays"] else "does not pay", best["skip"], best["draft_len"], speedup, len(searched),
             len(rows))
    return record


def _measure_candidate(backend, num_layers: int, cost, row: dict, prompt: list[int], deadline: float) -> None:
    """Greedy decode with a K_MAX chain of this skip set until QUICK_TOKENS or the deadline; fills in
    the measured draft cost, acceptance and expected speedup (too few steps: left unsearched)."""
    drafter = LayerSkipDrafter(backend, num_layers, row["skip"], K_MAX)
    stats = SpecStats()
    events = decode(backend, prompt, Sampler(SamplingParams()), QUICK_TOKENS, drafter, K_MAX, stats)
    try:
        for _ in events:
            if time.monotonic() > deadline:
                break
    finally:
        events.close()
    if stats.steps < MIN_STEPS:
        return
    t1 = cost.pass_seconds(1)
    d = stats.draft_seconds / max(stats.drafted, 1) / t1
    reach = [n / stats.steps for n in stats.accepted_at_depth] + [0.0] * K_MAX  # P(>= j drafts kept)
    speedup, k = max(((1 + sum(reach[:k])) / (k * d + cost.pass_seconds(k + 1) / t1), k) for k in range(1, K_MAX + 1))
    row.update(draft_len=k, searched=True, draft_cost=round(d, 3), speedup=round(speedup, 3),
               tokens_per_step=round(stats.tokens_per_step, 3))


def stored_layerskip(source, threads: int) -> dict | None:
    """The layer-skip record an export's manifest holds for this machine and thread count, if any."""
    if source is None or not (source / MANIFEST).is_file():
        return None
    key = _machine_key(threads)
    for entry in read_manifest(source, verify=False).get("drafters", []):
        if entry.get("kind") == "layerskip" and all(entry.get(k) == v for k, v in key.items()):
            return entry
    return None


def tuned_layerskip(backend, num_layers: int, prompts: list[list[int]], threads: int, source=None, name: str = "",
                    retune: bool = False, tokens: int = 48, cost=None) -> dict:
    """The stored calibration for this export, machine and threads; when missing, the quick search on
    `cost` (the device's CostModel), or with retune (or no cost) the thorough one, stored in the export's
    manifest when there is one."""
    record = None if retune else stored_layerskip(source, threads)
    if record is not None:
        return record
    if retune or cost is None:
        log.info("searching the layer-skip drafter of %s on this machine (minutes)", name)
        record = tune_layerskip(backend, num_layers, prompts, threads, tokens)
    else:
        log.info("no layer-skip calibration for %s on this machine yet: a quick search now (once)", name)
        record = quick_tune_layerskip(backend, num_layers, prompts[0], threads, cost)
    if source is not None and (source / MANIFEST).is_file():
        update_drafters(source, record)
    return record
