"""The verify cost curve c(T) = time of a T-token pass / time of a 1-token step, per backend.

Speculation pays only if the tokens a pass yields beat c(T); on a CPU c(T) grows quickly
(the int4 kernels are compute-bound beyond one row), so the curve decides how much to draft.
Each T is measured after a fixed prompt, as the median of `reps` passes that are rolled back.
"""

from __future__ import annotations

import logging
import time

import numpy as np

log = logging.getLogger(__name__)
SIZES = (1, 2, 3, 4, 5, 6, 8, 12, 16, 24, 32, 48, 64)


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
    return {"seconds": {T: round(s, 6) for T, s in seconds.items()},
            "c": {T: round(s / seconds[sizes[0]], 3) for T, s in seconds.items()}}
