"""Exports made on first use of a source, cached under EDGESPEC_CACHE/exports."""

from __future__ import annotations

import logging
from pathlib import Path

from .. import hub

log = logging.getLogger(__name__)


def cached_export(ref: hub.ModelRef, fmt: str = "onnx") -> Path:
    """The default export of a source (int4 ONNX, or a Q4_0/Q8_0 GGUF for llama.cpp), made once."""
    from .pipeline import ExportOptions, export

    from ..models.onnx_llama import GRAPH_VERSION

    key = hub.source_key(ref.path, f"graph{GRAPH_VERSION}") if fmt == "onnx" else hub.source_key(ref.path)
    out = hub.cache_dir() / "exports" / (f"{ref.name}-int4-{key}" if fmt == "onnx" else f"{ref.name}-gguf-{key}")
    if (out / "edgespec.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with hub.cache_lock(out, f"exporting {ref.name}"):  # another process exporting it: wait, then use its export
        if not (out / "edgespec.json").is_file():
            log.info("first use of %s: exporting it to %s in %s", ref.name,
                     "int4 ONNX" if fmt == "onnx" else "GGUF", out)
            export(ref.name if ref.name in hub.KNOWN_MODELS else str(ref.path), out, force=True,
                   options=ExportOptions(format=fmt))
    return out
