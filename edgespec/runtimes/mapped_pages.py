"""Hand the pages of an export's weights file back to the kernel while onnxruntime reads them.

onnxruntime maps the external data file (model.onnx.data) and MatMulNBits prepacks each int4 weight into a
buffer of its own; the mapped pages it read stay in the process's resident set until their initializer is
freed, and the block scales never are (they stay alive beside their packed copy). On smollm2-135m's default
export that is ~18 MB of a 209 MB peak while the session is created (benchmarks/recipes.md, stop 38).
`released_while_reading(directory)` asks the kernel to reclaim the process's mappings of files in
`directory` every few milliseconds while the block runs, and once at its end: MADV_PAGEOUT keeps the
contents (clean file pages are read again from the file if touched; anonymous memory that happened to land
at a just-unmapped address would be swapped, never zeroed), so it is only ever a cost, never a wrong value.
Linux 5.4+ only; elsewhere, or when madvise refuses, nothing happens.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

MADV_PAGEOUT = 21  # linux/mman.h, since 5.4
INTERVAL_S = 0.005  # between passes while the block runs (a pass over smollm2's ~190 mappings takes ~6 ms)
ENABLED = True  # benchmarks/scripts/load_rss.py turns it off to measure the difference


def _mappings(directory: str) -> list[tuple[int, int]]:
    """(start, end) of this process's mappings of files in `directory` itself, not below it: a model.onnx in the
    working directory must not page out the shared libraries of a virtualenv under it."""
    out = []
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            parts = line.rstrip("\n").split(maxsplit=5)
            if len(parts) == 6 and os.path.dirname(parts[5]) == directory:
                start, end = parts[0].split("-")
                out.append((int(start, 16), int(end, 16)))
    return out


def _page_out(libc, directory: str) -> int:
    """Advise MADV_PAGEOUT on every mapping of the directory's files; the number of mappings advised."""
    advised = 0
    for start, end in _mappings(directory):
        # a mapping unmapped since /proc/self/maps was read: ENOMEM, harmless
        advised += libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), MADV_PAGEOUT) == 0
    return advised


@contextmanager
def released_while_reading(directory: str | Path | None):
    """While the block runs (and once after it), page out this process's mappings of files in `directory`."""
    if directory is None or not ENABLED or not sys.platform.startswith("linux") or not os.path.exists("/proc/self/maps"):
        yield
        return
    directory = str(Path(directory).resolve())
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    done = threading.Event()

    def loop():
        try:
            while not done.wait(INTERVAL_S):
                _page_out(libc, directory)
        except OSError as e:  # /proc unreadable mid-way: stop advising, the session is unaffected
            log.debug("stopped paging out %s: %s", directory, e)

    worker = threading.Thread(target=loop, name="edgespec-page-out", daemon=True)
    worker.start()
    try:
        yield
    finally:
        done.set()
        worker.join()
        try:
            log.debug("paged out %d mappings of %s", _page_out(libc, directory), directory)
        except OSError as e:
            log.debug("could not page out %s: %s", directory, e)
