"""Backends behind one contract (base.Backend): onnxruntime, llama.cpp, the numpy reference.

`open_backend` turns a model reference into a ready backend plus its tokenizer and config:
sources are exported on first use when the backend needs it (int4 ONNX for onnxruntime,
a GGUF for llama.cpp when the source is an HF directory), and "auto" picks the faster one.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from pathlib import Path

from .. import hub
from ..errors import EdgespecError

log = logging.getLogger(__name__)


@dataclass
class Opened:
    backend: object
    tokenizer: object
    config: object
    context: int
    description: str
    source: Path | None = None  # the weights file/dir behind it


def open_backend(ref: hub.ModelRef, kind: str, threads: int = 0, device: str = "cpu", context: int = 4096,
                 memory_budget: int | None = None) -> Opened:
    """memory_budget: bytes; backends that allocate their KV cache up front (llama.cpp) size the context
    to fit it before allocating (the others are fitted after loading: Model.apply_memory_budget)."""
    if kind == "auto":
        from .auto import choose_backend

        kind, why = choose_backend(ref, threads, context)
        opened = open_backend(ref, kind, threads, device, context, memory_budget)
        opened.description += f" (auto: {why})"
        return opened
    if kind == "reference":
        return _open_reference(ref, context)
    if kind == "llamacpp":
        return _open_llamacpp(ref, threads, context, memory_budget)
    if kind == "static":
        return _open_static(ref, threads, device)
    return _open_ort(ref, threads, device)


def measure_on(ref: hub.ModelRef, kind: str, measure, threads: int = 0, context: int = 4096):
    """`measure(opened)` on a freshly opened backend, which is released (memory included) before this
    returns, so the next backend measured does not share the machine with it."""
    opened = open_backend(ref, kind, threads=threads, context=context)
    try:
        return measure(opened)
    finally:
        if hasattr(opened.backend, "close"):
            opened.backend.close()
        del opened
        gc.collect()


def _open_ort(ref: hub.ModelRef, threads: int, device: str) -> Opened:
    from ..export.cached import cached_export
    from ..export.manifest import manifest_config, read_manifest
    from ..tokenizer import tokenizer_for
    from .ort import OrtBackend

    if ref.kind != "export":
        ref = hub.ModelRef("export", cached_export(ref), ref.name)
    manifest = read_manifest(ref.path)  # checks every file's sha256 first
    if manifest.get("format") == "gguf":
        raise EdgespecError(f"'{ref.path}' holds a GGUF export; run it with --backend llamacpp")
    if manifest.get("target") == "npu":
        return _open_static(ref, threads, device, manifest)
    config = manifest_config(manifest)
    tokenizer = tokenizer_for("export", ref.path, {}, config.vocab_size)
    backend = OrtBackend(str(ref.path / manifest["graph"]["file"]), config, manifest["max_len"], threads, device)
    return Opened(backend, tokenizer, config, manifest["max_len"],
                  f"onnxruntime {manifest['quantization']['precision']}", ref.path)


def _open_static(ref: hub.ModelRef, threads: int, device: str, manifest: dict | None = None) -> Opened:
    """A static (`--target npu`) export on the CPU EP, QNN HTP or OpenVINO; a source is exported once."""
    from ..export.cached import cached_export
    from ..export.manifest import manifest_config, read_manifest
    from ..tokenizer import tokenizer_for
    from .static import StaticBackend

    if ref.kind != "export":
        ref = hub.ModelRef("export", cached_export(ref, fmt="npu"), ref.name)
    manifest = manifest or read_manifest(ref.path)
    if manifest.get("target") != "npu":
        source = manifest["source"]["name"]
        raise EdgespecError(f"'{ref.path}' is a dynamic-shape export, which --device {device} cannot run (QNN HTP "
                            f"takes no dynamic shapes, If or GroupQueryAttention): make a static one with "
                            f"`edgespec export {source} --target npu -o {source}-npu` and run that directory")
    config = manifest_config(manifest)
    static = manifest["static"]
    graphs = {int(rows): ref.path / name for rows, name in static["graphs"].items()}
    backend = StaticBackend(graphs, config, static["window"], device, threads)
    return Opened(backend, tokenizer_for("export", ref.path, {}, config.vocab_size), config, static["window"],
                  f"static {manifest['quantization']['precision']} graphs {static['buckets']} rows on {device}"
                  + (" (simulated HTP: correct, timings not meaningful)" if backend.simulated else ""),
                  ref.path)


def gguf_source(ref: hub.ModelRef):
    """(GGUF path, tokenizer, config) for llama.cpp: a GGUF as is, a GGUF export, or an HF dir exported once."""
    from ..export.cached import cached_export
    from ..export.manifest import manifest_config, read_manifest
    from ..formats import open_weights
    from ..tokenizer import tokenizer_for

    if ref.kind == "hf":
        ref = hub.ModelRef("export", cached_export(ref, fmt="gguf"), ref.name)
    if ref.kind == "export":
        manifest = read_manifest(ref.path)
        if manifest.get("format") != "gguf":
            raise EdgespecError(f"'{ref.path}' is an ONNX export; llama.cpp needs a GGUF: use the source model, or "
                                f"`edgespec export {manifest['source']['name']} --format gguf`")
        config = manifest_config(manifest)
        return ref.path / manifest["gguf"]["file"], tokenizer_for("export", ref.path, {}, config.vocab_size), config
    source = open_weights(ref.path)  # checks the GGUF header, architecture and quant types
    return ref.path, tokenizer_for("gguf", ref.path, source.metadata, source.config.vocab_size), source.config


def _open_llamacpp(ref: hub.ModelRef, threads: int, context: int, memory_budget: int | None = None) -> Opened:
    from .llamacpp import LlamaCppBackend, kv_bytes_per_token

    path, tokenizer, config = gguf_source(ref)
    n_ctx = min(context, config.max_position_embeddings)
    n_batch = 512
    if memory_budget is not None:
        # llama.cpp allocates the KV cache for n_ctx and compute buffers for n_batch rows when the context
        # is created: both are chosen to fit the budget before that (context first, as for onnxruntime)
        from ..memory import plan_memory, row_bytes, rss

        # the weights are mapped and read in full; the smallest batch llama.cpp accepts is always allocated
        expected = rss() + Path(path).stat().st_size + LlamaCppBackend.MIN_BATCH * row_bytes(config)
        plan = plan_memory(memory_budget, expected, kv_bytes_per_token(config), row_bytes(config), n_ctx, n_batch)
        n_ctx, n_batch = plan.context, max(plan.max_rows, LlamaCppBackend.MIN_BATCH)
    backend = LlamaCppBackend(path, config, n_ctx, threads, n_batch=n_batch)
    return Opened(backend, tokenizer, config, n_ctx, f"llama.cpp ({path.name})", Path(path))


def _open_reference(ref: hub.ModelRef, context: int) -> Opened:
    from ..formats import open_weights
    from ..models import reference_model_class
    from ..tokenizer import tokenizer_for
    from .reference import ReferenceBackend

    if ref.kind == "export":
        raise EdgespecError("the reference backend needs the source weights, not an export directory")
    source = open_weights(ref.path)
    config = source.config
    tokenizer = tokenizer_for(ref.kind, ref.path, source.metadata, config.vocab_size)
    log.info("loading %s (%s, %d layers) on the numpy reference backend", ref.name, config.architecture,
             config.num_layers)
    n_ctx = min(context, config.max_position_embeddings)
    model = reference_model_class(config.architecture).from_source(source)
    return Opened(ReferenceBackend(model, n_ctx), tokenizer, config, n_ctx, "numpy reference", Path(ref.path))
