"""The cache's inter-process lock: concurrent pulls of one model, a pull killed while holding the lock.

Real processes and a real OS file lock; the model is a fake known model whose wheel is made
locally (tests/fake_cache_work.py), so this is offline and takes seconds; the same for two
first-use exports of one source (the export pipeline itself is faked: the lock is what is tested).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def start_pull(work: Path, cache: Path, hold: float, mode: str = "pull") -> subprocess.Popen:
    """The process's stderr goes to WORKDIR/err-<n> (read while it runs); `.err` is that path."""
    env = {**os.environ, "EDGESPEC_CACHE": str(cache)}
    err = work / f"err-{len(list(work.glob('err-*')))}"
    proc = subprocess.Popen([sys.executable, "-m", "tests.fake_cache_work", mode, str(work), str(hold)], env=env,
                            stdout=subprocess.PIPE, stderr=open(err, "w"), text=True)
    proc.err = err
    return proc


def finish(proc: subprocess.Popen) -> tuple[str, str]:
    out, _ = proc.communicate(timeout=120)
    return out, proc.err.read_text()


def wait_until_blocked(proc: subprocess.Popen, what: str) -> None:
    """Until `proc` says it waits for the lock (it then is blocked in the kernel, not just slow to start)."""
    wait_for(lambda: f"waiting for another process {what}" in proc.err.read_text())


def wait_for(predicate, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def downloads(work: Path) -> list[str]:
    path = work / "downloads"
    return path.read_text().split() if path.exists() else []


def test_two_concurrent_pulls_download_once(tmp_path):
    cache = tmp_path / "cache"
    first = start_pull(tmp_path, cache, hold=60)
    wait_for(lambda: (tmp_path / f"started-{first.pid}").exists())  # first holds the lock, mid-download
    second = start_pull(tmp_path, cache, hold=0.0)
    wait_until_blocked(second, "pulling fake-tiny")
    (tmp_path / "release").touch()  # first finishes its download
    (out1, err1), (out2, err2) = finish(first), finish(second)
    assert first.returncode == 0 and second.returncode == 0, err1 + err2
    assert downloads(tmp_path) == [str(first.pid)]  # the second never downloaded
    assert out1 == out2 and Path(out1.strip()).stat().st_size > 0
    assert "pulled by another process meanwhile" in err2
    assert not list(Path(out1.strip()).parent.glob("*.partial-*"))


def test_a_killed_pull_does_not_block_the_next(tmp_path):
    cache = tmp_path / "cache"
    stuck = start_pull(tmp_path, cache, hold=600)
    wait_for(lambda: (tmp_path / f"started-{stuck.pid}").exists())
    waiting = start_pull(tmp_path, cache, hold=0.0)
    wait_until_blocked(waiting, "pulling fake-tiny")
    assert waiting.poll() is None
    partials = list((cache / "models").glob("fake-tiny.gguf.partial-*"))
    assert [p.name for p in partials] == [f"fake-tiny.gguf.partial-{stuck.pid}"]
    os.kill(stuck.pid, signal.SIGKILL)  # no cleanup runs: only the kernel releases the lock
    stuck.wait()
    out, err = finish(waiting)
    assert waiting.returncode == 0, err
    assert downloads(tmp_path) == [str(stuck.pid), str(waiting.pid)]
    assert Path(out.strip()).read_bytes().startswith(b"edgespec fake model")
    assert not list((cache / "models").glob("fake-tiny.gguf.partial-*"))  # the dead pull's partial is gone



def test_two_first_use_exports_of_one_source_export_once(tmp_path):
    cache = tmp_path / "cache"
    first = start_pull(tmp_path, cache, hold=60, mode="export")
    wait_for(lambda: (tmp_path / f"started-{first.pid}").exists())
    second = start_pull(tmp_path, cache, hold=0.0, mode="export")
    wait_until_blocked(second, "exporting fake")
    (tmp_path / "release").touch()
    (out1, err1), (out2, err2) = finish(first), finish(second)
    assert first.returncode == 0 and second.returncode == 0, err1 + err2
    assert downloads(tmp_path) == [str(first.pid)] and out1 == out2
    assert (Path(out1.strip()) / "edgespec.json").read_text() == f'{{"made_by": {first.pid}}}'
