"""The verify cost curve c(T) = time of a T-token pass / time of a 1-token step, per backend.

Speculation pays only if the tokens a pass yields beat c(T); on a CPU c(T) grows quickly
(the int4 kernels are compute-bound beyond one row), so the curve decides how much to draft.
Each T is measured after a fixed prompt, as the median of `reps` passes that are rolled back.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from .. import hub
from ..progress import Progress

log = logging.getLogger(__name__)
SIZES = (1, 2, 3, 4, 5, 6, 8, 12, 16, 24, 32, 48, 64)
PROMPT = "def quicksort(items):\n    \"\"\"Sort a list of numbers.\"\"\"\n" * 4


def cost_curve(backend, prompt_ids: list[int], sizes=SIZES, reps: int = 7) -> dict:
    backend.reset()
    backend.forward(prompt_ids, logits_for=[len(prompt_ids) - 1])
    seconds = {}
    for T in sizes:
        tokens = (prompt_ids * (T // len(prompt_ids) + 1))[:T]
        times = []
        for _ in range(reps + 1):  # the first is a warm-up
            start = time.perf_counter()
            backend.forward(tokens)
            times.append(time.perf_counter() - start)
            backend.rollback(T)
        seconds[T] = float(np.median(times[1:]))
    curve = {"seconds": {T: round(s, 6) for T, s in seconds.items()},
             "c": {T: round(s / seconds[sizes[0]], 3) for T, s in seconds.items()}}
    if getattr(backend, "simulated", False):  # an NPU simulator's clock says nothing about the chip
        log.warning("cost curve measured on a simulated NPU (%s): not meaningful for a real device", backend.name)
        curve["simulated"] = True
    return curve


def run_cost_curves(model: str, threads: int, backends=("ort", "llamacpp"), sizes=SIZES, reps: int = 7) -> dict:
    from . import measure_on

    def curve(opened) -> dict:
        prompt = opened.tokenizer.encode(PROMPT)
        return {"backend": opened.description, **cost_curve(opened.backend, prompt, sizes, reps)}

    ref = hub.resolve_model(model)
    curves = {}
    with Progress(len(backends), "cost curves", unit="backends") as bar:
        for kind in backends:
            curves[kind] = measure_on(ref, kind, curve, threads, context=1024)
            bar.update(1)
    return curves


def cost_markdown(model: str, curves: dict, machine: dict | None = None, command: str | None = None) -> str:
    sizes = list(next(iter(curves.values()))["c"])
    lines = [f"### {model}: verify cost c(T) = time(T-token pass, logits for every row) / time(1-token step)", ""]
    if machine:
        lines += [f"Machine: {machine['cpu']}, {machine['cores']} cores, AVX-512 {'yes' if machine['avx512'] else 'no'}, "
                  f"VNNI {'yes' if machine['avx512_vnni'] else 'no'}, {machine['threads']} threads."
                  + (f" Command: `{command}`" if command else ""), ""]
    lines += [
             "| backend | t(1) ms | " + " | ".join(f"T={T}" for T in sizes) + " |",
             "|---|---|" + "---|" * len(sizes)]
    for kind, curve in curves.items():
        lines.append(f"| {curve['backend']} | {curve['seconds'][sizes[0]] * 1e3:.2f} | "
                     + " | ".join(f"{curve['c'][T]:.2f}" for T in sizes) + " |")
    return "\n".join(lines)
