"""A small progress reporter for long work (pull, export, calibration, bench).

On a terminal it redraws one line on stderr; elsewhere (CI logs) it logs a
line every 10% so logs stay short but show that work is moving.
"""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger(__name__)


def _human(n: float, unit: str) -> str:
    if unit != "B":
        return f"{n:,.0f} {unit}"
    for suffix in ("B", "KB", "MB", "GB"):
        if n < 1000 or suffix == "GB":
            return f"{n:,.1f} {suffix}" if suffix != "B" else f"{n:.0f} B"
        n /= 1000
    return f"{n} B"


class Progress:
    def __init__(self, total: int, desc: str, unit: str = "B", enabled: bool = True, estimate: float | None = None):
        """estimate: seconds the whole job is expected to take, shown until the measured rate takes over."""
        self.total, self.desc, self.unit, self.enabled, self.estimate = max(total, 1), desc, unit, enabled, estimate
        self.done = 0
        self.tty = sys.stderr.isatty()
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._next_log_fraction = 0.1

    def __enter__(self) -> "Progress":
        if self.enabled and not self.tty:
            about = f" (about {self.estimate:.0f} s)" if self.estimate else ""
            log.info("%s: %s%s", self.desc, _human(self.total, self.unit), about)
        elif self.enabled:
            self._draw(time.monotonic())
        return self

    def _draw(self, now: float) -> None:
        self._last_draw = now
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        if self.estimate and elapsed < self.estimate:  # a prior estimate beats the rate of uneven steps
            eta = f"ETA {self.estimate - elapsed:4.0f}s"
        else:
            eta = f"ETA {(self.total - self.done) / rate:4.0f}s" if self.done else ""
        speed = f" {_human(rate, self.unit)}/s" if self.unit == "B" else ""
        sys.stderr.write(f"\r{self.desc}: {min(self.done / self.total, 1.0):6.1%} {_human(self.done, self.unit)}/"
                         f"{_human(self.total, self.unit)}{speed} {eta} ")
        sys.stderr.flush()

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        fraction = min(self.done / self.total, 1.0)
        now = time.monotonic()
        if self.tty and (now - self._last_draw > 0.1 or fraction >= 1.0):
            self._draw(now)
        elif not self.tty and fraction >= self._next_log_fraction:
            log.info("%s: %3.0f%%", self.desc, 100 * fraction)
            while self._next_log_fraction <= fraction:
                self._next_log_fraction += 0.1

    def __exit__(self, *exc) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()
