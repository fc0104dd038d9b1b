"""The loader: a model name or path -> a ready backend with its tokenizer and config.

    resolve (hub) -> export on first use (cached) -> check the manifest -> open the backend
    --backend auto: whichever of onnxruntime and llama.cpp decodes faster here (measured once)

Sources are exported on first use when the backend needs it (int4 ONNX for onnxruntime, a GGUF
for llama.cpp when the source is an HF directory), cached under EDGESPEC_CACHE/exports; an export
directory's manifest, file hashes and graph contract are checked before anything runs.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from pathlib import Path

from . import hub, memory
from .errors import EdgespecError
from .export.manifest import manifest_config, read_manifest
from .formats import open_weights
from .models import family
from .models.contract import GRAPH_CONTRACT_VERSION, check_manifest
from .runtimes.llamacpp import LlamaCppBackend, kv_bytes_per_token, llama_cpp_module
from .runtimes.reference import ReferenceBackend
from .runtimes.timing import cost_curve
from .sysinfo import machine_info
from .tokenizer import tokenizer_for

log = logging.getLogger(__name__)
BACKENDS = ("ort", "llamacpp", "reference", "auto")
AUTO_TIMED_STEPS = 24


@dataclass
class Opened:
    backend: object
    tokenizer: object
    config: object
    context: int
    description: str
    source: Path | None = None  # the weights file/dir behind it


def load_backend(model: str, kind: str, threads: int = 0, device: str = "cpu", context: int = 4096,
                 memory_budget: int | str | None = None) -> tuple[hub.ModelRef, Opened, int | None]:
    """Resolve `model` and open it on backend `kind`: (its reference, the opened backend, the memory budget
    in bytes or None). Bad options fail before any export or loading work."""
    if kind not in BACKENDS:
        raise EdgespecError(f"backend '{kind}' is not available; choose one of {', '.join(BACKENDS)}")
    if device != "cpu":
        if kind not in ("ort", "auto"):
            raise EdgespecError(f"--device {device} needs the onnxruntime backend, not '{kind}'")
        from .runtimes.ort import providers_for  # onnxruntime: see _open_ort

        providers_for(device)  # fail before any export work
        kind = "ort"
    ref = hub.resolve_model(model)
    budget = None
    if memory_budget is not None:
        budget = memory.parse_size(memory_budget)
        memory.check_before_load(budget, hub.weights_bytes(ref), ref.name)  # before anything is loaded
    return ref, open_backend(ref, kind, threads=threads, device=device, context=context, memory_budget=budget), budget


def cached_export(ref: hub.ModelRef, fmt: str = "onnx") -> Path:
    """The default export of a source (int4 ONNX, or a Q4_0/Q8_0 GGUF for llama.cpp), made once."""
    from .export.pipeline import ExportOptions, export  # it validates on onnxruntime: see _open_ort

    if fmt == "onnx":  # rebuilt when the family's graph or the graph contract changes
        version = family(open_weights(ref.path).config.architecture).graph_version
        key = hub.source_key(ref.path, f"graph{version}", f"contract{GRAPH_CONTRACT_VERSION}")
    else:
        key = hub.source_key(ref.path)
    out = hub.cache_dir() / "exports" / (f"{ref.name}-int4-{key}" if fmt == "onnx" else f"{ref.name}-gguf-{key}")
    if not (out / "edgespec.json").is_file():
        log.info("first use of %s: exporting it to %s in %s", ref.name, "int4 ONNX" if fmt == "onnx" else "GGUF", out)
        export(ref.name if ref.name in hub.KNOWN_MODELS else str(ref.path), out, force=True,
               options=ExportOptions(format=fmt))
    return out


def open_backend(ref: hub.ModelRef, kind: str, threads: int = 0, device: str = "cpu", context: int = 4096,
                 memory_budget: int | None = None) -> Opened:
    """memory_budget: bytes; backends that allocate their KV cache up front (llama.cpp) size the context
    to fit it before allocating (the others are fitted after loading: Model.apply_memory_budget)."""
    if kind not in BACKENDS:
        raise EdgespecError(f"backend '{kind}' is not available; choose one of {', '.join(BACKENDS)}")
    if kind == "auto":
        kind, why = choose_backend(ref, threads, context)
        opened = open_backend(ref, kind, threads, device, context, memory_budget)
        opened.description += f" (auto: {why})"
        return opened
    if kind == "reference":
        return _open_reference(ref, context)
    if kind == "llamacpp":
        return _open_llamacpp(ref, threads, context, memory_budget)
    return _open_ort(ref, threads, device)


def release(opened: Opened) -> None:
    """Free a backend now (memory included), not at garbage collection."""
    if hasattr(opened.backend, "close"):
        opened.backend.close()
    opened.backend = None
    gc.collect()


def _open_ort(ref: hub.ModelRef, threads: int, device: str) -> Opened:
    # here: onnxruntime takes ~40 MB resident once imported, which llama.cpp and the reference backend
    # (and their --memory-budget) should not pay
    from .runtimes.ort import OrtBackend

    if ref.kind != "export":
        ref = hub.ModelRef("export", cached_export(ref), ref.name)
    manifest = read_manifest(ref.path)  # checks every file's sha256 first
    if manifest.get("format") == "gguf":
        raise EdgespecError(f"'{ref.path}' holds a GGUF export; run it with --backend llamacpp")
    check_manifest(manifest, str(ref.path))
    config = manifest_config(manifest)
    tokenizer = tokenizer_for("export", ref.path, {}, config.vocab_size)
    backend = OrtBackend(str(ref.path / manifest["graph"]["file"]), config, manifest["max_len"], threads, device)
    return Opened(backend, tokenizer, config, manifest["max_len"],
                  f"onnxruntime {manifest['quantization']['precision']}", ref.path)


def gguf_source(ref: hub.ModelRef):
    """(GGUF path, tokenizer, config) for llama.cpp: a GGUF as is, a GGUF export, or an HF dir exported once."""
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
    path, tokenizer, config = gguf_source(ref)
    n_ctx = min(context, config.max_position_embeddings)
    n_batch = 512
    if memory_budget is not None:
        # llama.cpp allocates the KV cache for n_ctx and compute buffers for n_batch rows when the context
        # is created: both are chosen to fit the budget before that (context first, as for onnxruntime)
        # the weights are mapped and read in full; the smallest batch llama.cpp accepts is always allocated
        expected = memory.rss() + Path(path).stat().st_size + LlamaCppBackend.MIN_BATCH * memory.row_bytes(config)
        plan = memory.plan_memory(memory_budget, expected, kv_bytes_per_token(config), memory.row_bytes(config),
                                  n_ctx, n_batch)
        n_ctx, n_batch = plan.context, max(plan.max_rows, LlamaCppBackend.MIN_BATCH)
    backend = LlamaCppBackend(path, config, n_ctx, threads, n_batch=n_batch)
    return Opened(backend, tokenizer, config, n_ctx, f"llama.cpp ({path.name})", Path(path))


def _open_reference(ref: hub.ModelRef, context: int) -> Opened:
    if ref.kind == "export":
        raise EdgespecError("the reference backend needs the source weights, not an export directory")
    source = open_weights(ref.path)
    config = source.config
    tokenizer = tokenizer_for(ref.kind, ref.path, source.metadata, config.vocab_size)
    log.info("loading %s (%s, %d layers) on the numpy reference backend", ref.name, config.architecture,
             config.num_layers)
    n_ctx = min(context, config.max_position_embeddings)
    model = family(config.architecture).reference.from_source(source)
    return Opened(ReferenceBackend(model, n_ctx), tokenizer, config, n_ctx, "numpy reference", Path(ref.path))


def choose_backend(ref: hub.ModelRef, threads: int, context: int) -> tuple[str, str]:
    """`--backend auto`: (backend name, why) — the one that decodes this model faster on this machine,
    measured once (a short prefill, then the median of timed single-token passes, one backend at a time)
    and cached per model file, machine and threads under EDGESPEC_CACHE/auto. "ort" alone when
    llama-cpp-python is not installed or its build cannot run here."""
    try:
        llama_cpp_module()
    except EdgespecError as unusable:  # not installed, or a build that cannot run here
        return "ort", f"llama.cpp unusable: {unusable}"
    record_file = auto_record_file(ref, threads)

    def measure() -> dict:
        log.info("backend auto: measuring onnxruntime and llama.cpp decode speed for %s once", ref.name)
        return {"decode_tok_s": {kind: round(measure_decode(ref, kind, threads, context), 1)
                                 for kind in ("ort", "llamacpp")}, "machine": machine_info(threads)}

    record = hub.cached_json(record_file, measure)
    speeds = record["decode_tok_s"]
    picked = max(speeds, key=speeds.get)
    why = ", ".join(f"{kind} {speed} tok/s" for kind, speed in speeds.items())
    log.info("backend auto picked %s for %s (%s; measured %s)", picked, ref.name, why, record_file)
    return picked, why


def measure_decode(ref: hub.ModelRef, kind: str, threads: int, context: int) -> float:
    """Decode tok/s: 1 / the median time of a 1-token pass after a short prompt, on a backend opened for
    this alone and released before returning (the next one measured does not share the machine with it)."""
    opened = open_backend(ref, kind, threads=threads, context=context)
    try:
        prompt = opened.tokenizer.encode("def quicksort(items):\n    \"\"\"Sort a list.\"\"\"\n")
        return 1.0 / cost_curve(opened.backend, prompt, sizes=(1,), reps=AUTO_TIMED_STEPS)["seconds"][1]
    finally:
        release(opened)


def auto_record_file(ref: hub.ModelRef, threads: int) -> Path:
    key = hub.source_key(ref.path, machine_info(threads)["cpu"], threads)
    return hub.cache_dir() / "auto" / f"{ref.name}-{key}.json"
