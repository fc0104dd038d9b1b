"""A small progress reporter for long work (pull, export, calibration, bench).

On a terminal it redraws one line on stderr; elsewhere (CI logs) it logs a
line every 10%, and at least once a minute while work moves, so logs stay short
but show that work is moving (a 10% step of a long bench can take many minutes).
"""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger(__name__)
LOG_EVERY = 60.0  # seconds: the longest a log stays silent while updates come


def _human(n: float, unit: str) -> str:
    if unit != "B":
        return f"{n:,.0f} {unit}"
    for suffix in ("B", "KB", "MB", "GB"):
        if n < 1000 or suffix == "GB":
            return f"{n:,.1f} {suffix}" if suffix != "B" else f"{n:.0f} B"
        n /= 1000
    return f"{n} B"


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


class Progress:
    def __init__(self, total: int, desc: str, unit: str = "B", enabled: bool = True, estimate: float | None = None):
        """estimate: seconds the whole job is expected to take, shown until the measured rate takes over."""
        self.total, self.desc, self.unit, self.enabled, self.estimate = max(total, 1), desc, unit, enabled, estimate
        self.done = 0
        self.tty = sys.stderr.isatty()
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._next_tenth = 1  # the next 10% step to log (counted in tenths: 0.1 + 0.1 + 0.1 > 0.3 skipped 30%)
        self._last_log = self._start

    def __enter__(self) -> "Progress":
        if self.enabled and not self.tty:
            about = f" (about {self.estimate:.0f} s)" if self.estimate else ""
            log.info("%s: %s%s", self.desc, _human(self.total, self.unit), about)
        elif self.enabled:
            self._draw(time.monotonic())
        return self

    def _left(self, elapsed: float) -> float | None:
        """Seconds left: the prior estimate while it lasts (it beats the rate of uneven steps), then the rate."""
        if self.estimate and elapsed < self.estimate:
            return self.estimate - elapsed
        return (self.total - self.done) * elapsed / self.done if self.done else None

    def _draw(self, now: float) -> None:
        self._last_draw = now
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        left = self._left(elapsed)
        eta = "" if left is None else f"ETA {left:4.0f}s"
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
        elif not self.tty and ((tenths := round(10 * fraction, 9)) >= self._next_tenth
                               or now - self._last_log >= LOG_EVERY):  # with the time left, too
            elapsed = max(now - self._start, 1e-9)
            left = self._left(elapsed)
            log.info("%s: %3.0f%% after %s%s", self.desc, 100 * fraction, _duration(elapsed),
                     "" if left is None or fraction >= 1.0 else f", about {_duration(left)} left")
            self._next_tenth, self._last_log = int(tenths) + 1, now

    def __exit__(self, *exc) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()
