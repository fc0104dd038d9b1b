"""The import contract (pyproject.toml [tool.importlinter], run by .ci/run) holds, and it really
fails when a lower layer imports a higher one: lint-imports on a copy of the package with one
injected upward import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    # what the `lint-imports` command runs, with this Python
    command = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", command, "--no-cache"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def copy(tmp_path) -> Path:
    shutil.copytree(ROOT / "edgespec", tmp_path / "edgespec", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def _inject(path: Path, line: str) -> None:
    text = path.read_text()
    anchor = "from __future__ import annotations\n"
    path.write_text(text.replace(anchor, anchor + line + "\n", 1))


def test_the_contract_holds(copy):
    result = lint_imports(copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("injected, contract", [
    ({"runtimes/ort.py": "from .. import loader"}, "Layers import only downward"),
    ({"config.py": "from .models import registry"}, "Layers import only downward"),
    ({"speculative/engine.py": "from .calibration import costs"}, "speculative core is pure"),
    # hub and sampling share a layer (they may import each other), but not in a cycle
    ({"hub.py": "from . import sampling", "sampling.py": "from . import hub"}, "No import cycles"),
])
def test_an_upward_import_breaks_it(copy, injected, contract):
    for module, line in injected.items():
        _inject(copy / "edgespec" / module, line + "  # injected")
    result = lint_imports(copy)
    assert result.returncode != 0
    assert f"{contract}" in result.stdout and "BROKEN" in result.stdout, result.stdout


def test_no_module_is_in_an_import_cycle():
    """import-linter's acyclic_siblings contract does not see a package importing a module that imports
    the package back (edgespec.x <-> edgespec.x.y): tools/import_stats.py counts every cycle."""
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "import_stats.py"), str(ROOT / "edgespec")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "import cycles (strongly connected components): 0," in result.stdout, result.stdout
