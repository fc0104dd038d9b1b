"""Put the weights onnxruntime prepacked for a session into 2 MB pages, in the background.

A decode step streams every prepacked weight (MatMulNBits' packed int4 copies: ~90 MB on smollm2-135m,
~1.3 GB on qwen2.5-coder-1.5b) through the TLB; in 4 KB pages that is a page walk every 4 KB. Linux backs
anonymous memory with 2 MB pages only where a program asks (transparent huge pages "madvise", Debian's
default), and neither onnxruntime nor glibc asks. In 2 MB pages the same decode step is 4-12% faster
(benchmarks/plain-decode.md, stop 39).

`collapse_resident()` starts a thread that asks the kernel (MADV_COLLAPSE, Linux 6.1+) to move each 2 MB
range of the process's anonymous memory into a huge page. The kernel copies in place: contents never
change, and other threads may run meanwhile. Only ranges whose every page is present and this process's
alone (pagemap bits 63 and 56: not the shared zero page, not untouched memory) are collapsed, so the
resident set does not grow. All of them, not only what the session allocated: malloc puts many prepacked
weights in heap space freed earlier (on qwen 0.5b only 290 of 450 MB were new mappings). The copy takes time
(~0.5 GB/s on a 2-core VM: 2.7 s for qwen 1.5b), so it runs in a thread at the lowest priority: loading is not
delayed, a prefill or decode running meanwhile keeps its cores (at normal priority a one-shot 128-token run on
1.5b took 12% longer; at nice 19, within noise), and it completes while the model is idle (between chat turns,
before a request). `wait()` (`Model.settle()`) is for benchmarks that time the steady state.
Elsewhere (other kernels, other systems, EDGESPEC_HUGE_PAGES=0) nothing happens.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import sys
import threading
import time

from .mapped_pages import released_while_reading

log = logging.getLogger(__name__)

MADV_COLLAPSE = 25  # linux/mman.h, since 6.1
PMD_SIZE = "/sys/kernel/mm/transparent_hugepage/hpage_pmd_size"


def _huge_page_size() -> int:
    """The kernel's transparent huge page: 2 MB on x86-64 and on arm64 with 4 KB pages, 32 MB with 16 KB pages."""
    try:
        with open(PMD_SIZE, encoding="ascii") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 2 << 20


HUGE = _huge_page_size()
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
ENABLED = os.environ.get("EDGESPEC_HUGE_PAGES", "1") != "0"  # off: to measure the difference, or to rule it out
NICE = 19  # of the copying thread (Linux: a thread's own nice value)

Ranges = list[tuple[int, int]]


def anonymous_ranges() -> Ranges:
    """(start, end) of this process's private writable anonymous mappings (the heap included)."""
    out = []
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            parts = line.split(maxsplit=5)
            path = parts[5].strip() if len(parts) == 6 else ""
            if parts[1].startswith("rw") and parts[1].endswith("p") and path in ("", "[heap]"):
                start, end = parts[0].split("-")
                out.append((int(start, 16), int(end, 16)))
    return out


def huge_ranges(ranges: Ranges) -> list[int]:
    """Start addresses of the HUGE-aligned ranges (one huge page each) that lie wholly inside one of `ranges`."""
    return [address for lo, hi in ranges for address in range(-(-lo // HUGE) * HUGE, hi - HUGE + 1, HUGE)]


def _all_ours(pagemap, address: int) -> bool:
    """Every base page of [address, address + HUGE) is present and mapped only here (bits 63 and 56)."""
    pagemap.seek(address // PAGE * 8)
    entries = pagemap.read(HUGE // PAGE * 8)
    if len(entries) != HUGE // PAGE * 8:
        return False
    need = (1 << 63) | (1 << 56)
    return all(entry & need == need for entry in memoryview(entries).cast("Q"))


class Collapse:
    """The background thread; `collapsed` bytes so far, `wait()` until it has gone through every range."""

    def __init__(self, starts: list[int]):
        self.starts, self.collapsed = starts, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgespec-huge-pages", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:  # the lowest priority: the copy must not take a core from a prefill or decode running meanwhile
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        except (AttributeError, OSError) as e:
            log.debug("huge pages: priority unchanged: %s", e)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        began = time.perf_counter()
        try:
            with open("/proc/self/pagemap", "rb", buffering=0) as pagemap:
                for address in self.starts:
                    if self._stop.is_set():
                        break
                    if not _all_ours(pagemap, address):
                        continue
                    if libc.madvise(ctypes.c_void_p(address), ctypes.c_size_t(HUGE), MADV_COLLAPSE) == 0:
                        self.collapsed += HUGE
                    elif ctypes.get_errno() == errno.EINVAL:  # a kernel before 6.1, or huge pages "never"
                        log.debug("huge pages: madvise(MADV_COLLAPSE) refused: %s", os.strerror(errno.EINVAL))
                        break
                    # else EAGAIN (busy), ENOMEM (unmapped meanwhile, or no huge page free): the next range
        except OSError as e:  # /proc unreadable: leave the pages as they are
            log.debug("huge pages: stopped: %s", e)
        log.debug("huge pages: %d MB of %d MB in %.2f s", self.collapsed >> 20, len(self.starts) * HUGE >> 20,
                  time.perf_counter() - began)

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def collapse_resident() -> Collapse | None:
    """Start collapsing this process's resident anonymous memory (None where this does not apply)."""
    if not ENABLED or not sys.platform.startswith("linux") or not os.path.exists("/proc/self/pagemap"):
        return None
    try:
        starts = huge_ranges(anonymous_ranges())
    except OSError as e:
        log.debug("huge pages: %s", e)
        return None
    return Collapse(starts) if starts else None


class SettlesPages:
    """settle() / close() for an owner of a session made by create_session, its Collapse in `huge_pages`."""

    huge_pages: Collapse | None = None

    def settle(self, timeout: float | None = None) -> None:
        """Wait until the session's weights are in huge pages (or that has stopped)."""
        if self.huge_pages is not None:
            self.huge_pages.wait(timeout)

    def close(self) -> None:
        """Stop moving pages (the session itself goes with its owner)."""
        if self.huge_pages is not None:
            self.huge_pages.stop()


def create_session(create, directory):
    """`create()` (an onnxruntime session) with the weights file's pages released while it reads them
    (mapped_pages.py), then the process's resident anonymous memory (the prepacked weights) moved into huge
    pages in the background: (session, Collapse | None)."""
    with released_while_reading(directory):
        session = create()
    return session, collapse_resident()
