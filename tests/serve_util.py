"""Start a real `edgespec serve` process on a free loopback port and wait until /health says ok."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health(base: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@contextmanager
def running_server(*args, model: str = "smollm2-135m", ready_timeout: float = 1800, log_path=None):
    """Yields (base_url, process). The first use of a model exports it and calibrates --spec auto (minutes)."""
    port = free_port()
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "edgespec.cli", "serve", model, "--port", str(port), *args],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"edgespec serve exited with {proc.returncode} before it was ready"
                                   + (f"; log: {open(log_path).read()[-3000:]}" if log_path else ""))
            try:
                status, body = health(base)
                if status == 200 and body["status"] == "ok":
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise TimeoutError(f"edgespec serve not ready after {ready_timeout} s")
            time.sleep(0.5)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log_path:
            log.close()
