"""A session's resident anonymous memory moves into 2 MB pages in the background (runtimes/huge_pages.py):
contents unchanged, untouched memory left alone, the resident set no larger."""

from __future__ import annotations

import ctypes
import errno
import mmap
import sys

import numpy as np
import pytest

from edgespec.runtimes import huge_pages

from .process_util import run_json

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="MADV_COLLAPSE is Linux's")


def _mappings_kb(addresses: list[int], field: str) -> int:
    """A field (Rss, AnonHugePages) summed over the mappings that hold `addresses` (adjacent anonymous
    mappings may have merged into one), in kB."""
    total, inside, found = 0, False, set()
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split()[0]
            if "-" in head and ":" not in head:
                lo, hi = (int(x, 16) for x in head.split("-"))
                holds = {a for a in addresses if lo <= a < hi}
                inside, found = bool(holds), found | holds
            elif inside and line.startswith(field + ":"):
                total += int(line.split()[1])
    assert found == set(addresses), "a mapping is missing"
    return total


def _kernel_collapses(address: int) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    if libc.madvise(ctypes.c_void_p(address), ctypes.c_size_t(huge_pages.HUGE), huge_pages.MADV_COLLAPSE) == 0:
        return True
    if ctypes.get_errno() == errno.EINVAL:  # before Linux 6.1, or transparent huge pages "never"
        return False
    raise OSError(ctypes.get_errno(), "madvise(MADV_COLLAPSE)")


def test_written_memory_collapses_with_its_contents_and_untouched_memory_stays_out():
    size = 8 << 20
    private = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS  # like malloc's memory (Python's default is shared)
    written_map, untouched_map = (mmap.mmap(-1, size + huge_pages.HUGE, flags=private) for _ in range(2))
    written, untouched = np.frombuffer(written_map, np.uint8), np.frombuffer(untouched_map, np.uint8)
    data = np.random.default_rng(0).integers(0, 256, written.size, dtype=np.uint8)
    written[:] = data
    assert int(untouched[::4096].sum()) == 0  # read only: the shared zero page, not this process's memory
    lo, hi = written.ctypes.data, written.ctypes.data + written.size
    ours = huge_pages.huge_ranges([(lo, hi)])
    starts = ours + huge_pages.huge_ranges([(untouched.ctypes.data, untouched.ctypes.data + untouched.size)])
    assert len(ours) >= 4 and len(starts) >= 8, "4 or 5 aligned 2 MB ranges in each 10 MB mapping"
    if not _kernel_collapses(starts[0]):
        pytest.skip("this kernel has no MADV_COLLAPSE (Linux 6.1+) or transparent huge pages are off")
    both = [lo, untouched.ctypes.data]
    rss_before = _mappings_kb(both, "Rss")
    collapse = huge_pages.Collapse(starts)
    assert collapse.wait(60)
    assert collapse.collapsed == len(ours) * huge_pages.HUGE  # the written ranges, not the untouched ones
    assert _mappings_kb(both, "AnonHugePages") == len(ours) * 2048  # the untouched ranges stayed out
    assert _mappings_kb(both, "Rss") == rss_before
    assert np.array_equal(written, data)
    del written, untouched
    written_map.close()
    untouched_map.close()


def test_huge_ranges_are_the_aligned_2mb_ranges_inside_each_mapping():
    h = huge_pages.HUGE
    assert huge_pages.huge_ranges([(h - 4096, 3 * h + 4096), (10 * h, 11 * h - 4096)]) == [h, 2 * h]


CHILD = r"""
import json, sys, numpy as np, psutil
from pathlib import Path
from edgespec.export.manifest import read_manifest, manifest_config
from edgespec.runtimes import huge_pages
from edgespec.runtimes.ort import OrtBackend
huge_pages.ENABLED = sys.argv[2] == "1"
d = Path(sys.argv[1])
b = OrtBackend(str(d / "model.onnx"), manifest_config(read_manifest(d, verify=False)), 256, 2)
rss = psutil.Process().memory_info().rss
collapsed = 0
if b.huge_pages is not None:
    assert b.huge_pages.wait(120)
    collapsed = b.huge_pages.collapsed
grown = psutil.Process().memory_info().rss - rss
huge = sum(int(l.split()[1]) for l in open("/proc/self/smaps") if l.startswith("AnonHugePages:")) << 10
logits = b.forward(np.arange(8))
b.close()
print(json.dumps({"collapsed": collapsed, "huge": huge, "grown": grown, "logits": logits[-1, :64].tolist()}))
"""


@pytest.mark.realmodel
def test_the_default_exports_prepacked_weights_move_to_huge_pages_and_compute_the_same(smollm2_export):
    moved, kept = run_json(CHILD, smollm2_export, 1), run_json(CHILD, smollm2_export, 0)
    assert moved["logits"] == kept["logits"]
    if moved["collapsed"] == 0:
        pytest.skip("this kernel has no MADV_COLLAPSE (Linux 6.1+) or transparent huge pages are off")
    # measured: 132 MB of smollm2's session in 2 MB pages (its MatMulNBits weights ~92 MB), the rest is the heap
    assert moved["collapsed"] >= 64 << 20 and moved["huge"] >= 64 << 20, moved
    assert kept["collapsed"] == 0
    assert moved["grown"] < 2 << 20, f"the resident set grew by {moved['grown'] >> 20} MB"
