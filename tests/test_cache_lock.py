"""The cache's inter-process lock: concurrent pulls of one model, a pull killed while holding the lock.

Real processes and a real OS file lock; the model is a fake known model whose wheel is made
locally (tests/fake_pull.py), so this is offline and takes seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def start_pull(work: Path, cache: Path, hold: float) -> subprocess.Popen:
    env = {**os.environ, "EDGESPEC_CACHE": str(cache)}
    return subprocess.Popen([sys.executable, "-m", "tests.fake_pull", str(work), str(hold)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


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
    first = start_pull(tmp_path, cache, hold=2.0)
    wait_for(lambda: (tmp_path / f"started-{first.pid}").exists())  # first holds the lock, mid-download
    second = start_pull(tmp_path, cache, hold=0.0)
    out1, err1 = first.communicate(timeout=120)
    out2, err2 = second.communicate(timeout=120)
    assert first.returncode == 0 and second.returncode == 0, err1 + err2
    assert downloads(tmp_path) == [str(first.pid)]  # the second never downloaded
    assert out1 == out2 and Path(out1.strip()).stat().st_size > 0
    assert "waiting for another process pulling fake-tiny" in err2
    assert "pulled by another process meanwhile" in err2
    assert not list(Path(out1.strip()).parent.glob("*.partial-*"))


def test_a_killed_pull_does_not_block_the_next(tmp_path):
    cache = tmp_path / "cache"
    stuck = start_pull(tmp_path, cache, hold=600)
    wait_for(lambda: (tmp_path / f"started-{stuck.pid}").exists())
    waiting = start_pull(tmp_path, cache, hold=0.0)
    time.sleep(1.0)
    assert waiting.poll() is None  # blocked on the lock while the first one lives
    partials = list((cache / "models").glob("fake-tiny.gguf.partial-*"))
    assert [p.name for p in partials] == [f"fake-tiny.gguf.partial-{stuck.pid}"]
    os.kill(stuck.pid, signal.SIGKILL)  # no cleanup runs: only the kernel releases the lock
    stuck.wait()
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    assert downloads(tmp_path) == [str(stuck.pid), str(waiting.pid)]
    assert Path(out.strip()).read_bytes().startswith(b"edgespec fake model")
    assert not list((cache / "models").glob("fake-tiny.gguf.partial-*"))  # the dead pull's partial is gone

