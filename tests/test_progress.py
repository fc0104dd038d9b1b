"""Progress on a log (CI, a pipe): every 10% a line with the time taken and an estimate of the time left."""

from __future__ import annotations

import logging

from edgespec import progress as progress_module
from edgespec.progress import Progress


def _lines(monkeypatch, caplog, total, steps, seconds_per_step, estimate=None):
    clock = iter(range(0, 10_000, seconds_per_step))
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(progress_module.sys.stderr, "isatty", lambda: False)
    with caplog.at_level(logging.INFO, logger="edgespec.progress"):
        with Progress(total, "bench", unit="runs", estimate=estimate) as bar:
            for _ in range(steps):
                bar.update(1)
    return [r.getMessage() for r in caplog.records]


def test_log_lines_say_time_taken_and_time_left(monkeypatch, caplog):
    lines = _lines(monkeypatch, caplog, total=10, steps=10, seconds_per_step=6)
    assert lines[0] == "bench: 10 runs"
    assert lines[1] == "bench:  10% after 6 s, about 54 s left"
    assert lines[5] == "bench:  50% after 30 s, about 30 s left"
    assert lines[-1] == "bench: 100% after 1 min 00 s"  # done: nothing left to estimate
    assert len(lines) == 11


def test_a_prior_estimate_is_used_until_it_runs_out(monkeypatch, caplog):
    lines = _lines(monkeypatch, caplog, total=10, steps=2, seconds_per_step=6, estimate=100)
    assert lines[0] == "bench: 10 runs (about 100 s)"
    assert lines[1] == "bench:  10% after 6 s, about 1 min 34 s left"  # the estimate's, not the rate's 54 s


def test_a_slow_job_logs_at_least_once_a_minute_between_its_tenths(monkeypatch, caplog):
    lines = _lines(monkeypatch, caplog, total=100, steps=4, seconds_per_step=40)  # 10% would take 400 s
    assert lines[1:] == ["bench:   2% after 1 min 20 s, about 65 min 20 s left",
                         "bench:   4% after 2 min 40 s, about 64 min 00 s left"]
