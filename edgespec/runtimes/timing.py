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


def cost_curve(backend, prompt_ids: list[int], sizes=SIZES, reps: int = 7, stat=np.median) -> dict:
    """stat: how the reps of one size combine; the controller's calibration takes the minimum, which
    other jobs on a shared machine can only raise (the median is what a report shows)."""
    backend.reset()
    backend.forward(prompt_ids, logits_for=[len(prompt_ids) - 1])
    # The sizes take turns rep by rep: a burst of other work then slows every size alike instead of one
    # size's whole window (a CI run beside another job once measured c(64) = 0.099: t(1) caught a burst).
    inputs = {T: (prompt_ids * (T // len(prompt_ids) + 1))[:T] for T in sizes}
    times: dict[int, list[float]] = {T: [] for T in sizes}
    for _ in range(reps + 1):  # the first round is a warm-up
        for T in sizes:
            start = time.perf_counter()
            backend.forward(inputs[T])
            times[T].append(time.perf_counter() - start)
            backend.rollback(T)
    seconds = {T: float(stat(times[T][1:])) for T in sizes}
    curve = {"seconds": {T: round(s, 6) for T, s in seconds.items()},
             "c": {T: round(s / seconds[sizes[0]], 3) for T, s in seconds.items()}}
    if getattr(backend, "simulated", False):  # an NPU simulator's clock says nothing about the chip
        log.warning("cost curve measured on a simulated NPU (%s): not meaningful for a real device", backend.name)
        curve["simulated"] = True
    return curve

