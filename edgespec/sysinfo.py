"""Facts about this machine and process that benchmarks and stats report."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np


def peak_rss() -> int:
    """This process's high-water RSS (VmHWM: unlike ru_maxrss it does not carry the parent's over exec)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        import psutil  # only where /proc is missing: the bench worker imports this in a peers-only Python

        return psutil.Process().memory_info().rss


def machine_info(threads: int) -> dict:
    """CPU model and the SIMD features that decide which kernels run (never assume them)."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    flags = next((line for line in cpuinfo if line.startswith("flags")), "").split()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
                 platform.processor() or "?")
    return {"cpu": model, "avx512": "avx512f" in flags, "avx512_vnni": "avx512_vnni" in flags,
            "avx2": "avx2" in flags, "cores": os.cpu_count(), "threads": threads, "python": platform.python_version()}


def memory_bandwidth(size_mb: int = 512, reps: int = 5) -> float:
    """GB/s of a large array copy (bytes read + written), best of `reps`."""
    src = np.ones(size_mb * 2**20 // 8)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.nbytes / best / 1e9


