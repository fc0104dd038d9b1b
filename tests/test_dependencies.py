"""The runtime never imports torch or transformers (only the [train]/[optimum]/[peers] extras may)."""

from __future__ import annotations

import subprocess
import sys


def test_runtime_imports_no_torch():
    code = ("import sys, edgespec.api, edgespec.cli, edgespec.chat, edgespec.export.pipeline, "
            "edgespec.bench.runner, edgespec.runtimes.ort, edgespec.quant.linear; "
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; "
            "assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
