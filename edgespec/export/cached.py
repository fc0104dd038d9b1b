"""Exports made on first use of a source, cached under EDGESPEC_CACHE/exports.

Keyed by the source's content (its sha256) and the graph version, not by its name or path: the
cached GGUF of a known model given by its path, or a copy of it, reuses the export. Nothing heavy
(onnx, the export pipeline) is imported unless an export has to be made.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from .. import hub

log = logging.getLogger(__name__)
# the model's whole context: only the RoPE table grows with it (qwen 32k: 8 MB); the runtime sizes
# the KV buffers to --context
FULL_CONTEXT = 1 << 30
EXPORT_SECONDS_PER_MB = {"onnx": 0.1, "gguf": 0.05}  # first-run estimate: 2-core EPYC, idle (smollm2 7 s, qwen 0.5b 23 s)


def export_key(ref: hub.ModelRef, fmt: str = "onnx") -> tuple[str, str]:
    """(directory name, key) of the default export of `ref`: the name of the known model with these
    bytes if there is one, else the source's; the key from its content and the graph version."""
    from ..models import GRAPH_VERSION

    sha = hub.content_sha256(ref)
    known = hub.known_by_content(sha)
    key = hashlib.sha256(f"{sha}:{fmt}:graph{GRAPH_VERSION if fmt == 'onnx' else ''}:fullctx".encode()).hexdigest()[:12]
    name = known.name if known else ref.name
    return f"{name}-{'int4' if fmt == 'onnx' else 'gguf'}-{key}", key


def find_export(ref: hub.ModelRef, fmt: str = "onnx") -> Path | None:
    """The cached default export of these bytes, whatever it was called when it was made."""
    name, key = export_key(ref, fmt)
    exports = hub.cache_dir() / "exports"
    for out in [exports / name, *sorted(exports.glob(f"*-{key}"))]:
        if (out / "edgespec.json").is_file():
            return out
    return None


def cached_export(ref: hub.ModelRef, fmt: str = "onnx", progress: bool = True) -> Path:
    """The default export of a source (int4 ONNX, or a Q4_0/Q8_0 GGUF for llama.cpp), made once."""
    found = find_export(ref, fmt)
    if found is not None:
        return found
    from .pipeline import ExportOptions, export

    out = hub.cache_dir() / "exports" / export_key(ref, fmt)[0]
    estimate = max(10.0, hub.weights_bytes(ref) / 1e6 * EXPORT_SECONDS_PER_MB[fmt])
    log.info("first use of %s: exporting it to %s in %s (once, about %.0f s)", ref.name,
             "int4 ONNX" if fmt == "onnx" else "GGUF", out, estimate)
    known = hub.known_by_content(hub.content_sha256(ref))  # a known model's bytes under any path: its name
    export(known.name if known else str(ref.path), out, force=True,
           options=ExportOptions(format=fmt, max_len=FULL_CONTEXT), progress=progress, estimate=estimate)
    return out
