"""Run a snippet in a fresh Python: its own resident set, peak and memory map, which the memory tests measure."""

from __future__ import annotations

import json
import subprocess
import sys


def run_json(code: str, *args) -> dict:
    """`python -c code args...`; its last line of output is a JSON object."""
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])
