"""The serve load test (benchmarks/scripts/serve_load.py): 8 clients x 20 requests against a real server.

Slow (minutes): not in the default run; `pytest -m slow tests/test_serve_load.py`. The script itself
checks no 5xx, intended 429s only, no session left, RSS bounded; this test fails if any check does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "scripts" / "serve_load.py"


@pytest.mark.slow
def test_load_8_clients_x_20_requests(tmp_path, smollm2_gguf):
    out = tmp_path / "load.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--clients", "8", "--requests", "20", "--json", str(out)],
                            capture_output=True, text=True, timeout=3600)
    report = json.loads(out.read_text())
    failed = [name for name, passed in report["checks"].items() if not passed]
    assert result.returncode == 0 and not failed, (failed, result.stdout[-3000:], result.stderr[-3000:])
    assert report["requests"] == 160 and report["ok"] == 160 and report["hung_up"] > 0
