"""Exports made on first use of a source, cached under EDGESPEC_CACHE/exports."""

from __future__ import annotations

import logging
from pathlib import Path

from .. import hub

log = logging.getLogger(__name__)


def cached_export(ref: hub.ModelRef, fmt: str = "onnx") -> Path:
    """The default export of a source, made once: fmt "onnx" (int4, dynamic shapes), "npu" (int4 static
    graphs, `--target npu`) or "gguf" (a Q4_0/Q8_0 GGUF for llama.cpp)."""
    from .pipeline import ExportOptions, export

    from ..models.onnx_llama import GRAPH_VERSION
    from ..models.onnx_llama_static import STATIC_GRAPH_VERSION

    version = {"onnx": f"graph{GRAPH_VERSION}", "npu": f"static{STATIC_GRAPH_VERSION}"}.get(fmt)
    key = hub.source_key(ref.path, version) if version else hub.source_key(ref.path)
    label = "int4" if fmt == "onnx" else fmt
    out = hub.cache_dir() / "exports" / f"{ref.name}-{label}-{key}"
    if not (out / "edgespec.json").is_file():
        log.info("first use of %s: exporting it (%s) to %s", ref.name, fmt, out)
        options = ExportOptions(target="npu") if fmt == "npu" else ExportOptions(format=fmt)
        export(ref.name if ref.name in hub.KNOWN_MODELS else str(ref.path), out, force=True, options=options)
    return out
