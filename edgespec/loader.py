"""The loader: a model name or path -> a ready backend with its tokenizer and config.

    resolve (hub) -> export on first use (cached) -> check the manifest -> open the backend
    --backend auto: whichever of onnxruntime and llama.cpp decodes faster here (measured once)

Sources are exported on first use when the backend needs it (int4 ONNX for onnxruntime, a GGUF
for llama.cpp when the source is an HF directory), cached under EDGESPEC_CACHE/exports; an export
directory's manifest, file hashes and graph contract are checked before anything runs.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path

from . import hub, memory
from .errors import EdgespecError, ModelFormatError
from .config import ModelConfig
from .export.manifest import manifest_config, read_manifest
from .formats import open_weights
from .formats.gguf_header import read_gguf_header
from .quant.recipe import CALIBRATION_VERSION, DEFAULT_RECIPE, RECIPE_VERSION
from .models import family
from .models.contract import GRAPH_CONTRACT_VERSION, check_manifest
from .models.static_contract import STATIC_CONTRACT_VERSION
from .runtimes.llamacpp import LlamaCppBackend, kv_bytes_per_token, llama_cpp_module
from .runtimes.reference import ReferenceBackend
from .runtimes.static import StaticBackend
from .runtimes.timing import cost_curve
from .sysinfo import machine_info
from .tokenizer import tokenizer_for

log = logging.getLogger(__name__)
BACKENDS = ("ort", "llamacpp", "reference", "auto", "static")
STATIC_DEVICES = ("qnn", "openvino")  # NPUs run static-shape graphs only (`export --target npu`)
AUTO_TIMED_STEPS = 24
FIRST_USE_VALIDATE_TOKENS = 64
# first-run estimate per MB of source, measured on an idle 2-core EPYC with the balanced recipe's GPTQ
# calibration (benchmarks/first-run.md): smollm2 ~31 s (0.33 s/MB), qwen 0.5b ~85 s, 1.5b 180 s (0.16-0.18)
EXPORT_SECONDS_PER_MB = {"onnx": 0.25, "gguf": 0.05}


@dataclass
class Opened:
    backend: object
    tokenizer: object
    config: object
    context: int
    description: str
    source: Path | None = None  # the weights file/dir behind it


def load_backend(model: str, kind: str, threads: int = 0, device: str = "cpu", context: int | None = None,
                 memory_budget: int | str | None = None,
                 layer_plans: bool = False) -> tuple[hub.ModelRef, Opened, int | None]:
    """Resolve `model` and open it on backend `kind`: (its reference, the opened backend, the memory budget
    in bytes or None). Bad options fail before any export or loading work. layer_plans: see open_backend."""
    if kind not in BACKENDS:
        raise EdgespecError(f"backend '{kind}' is not available; choose one of {', '.join(BACKENDS)}")
    if device != "cpu":
        if kind not in ("ort", "auto", "static"):
            raise EdgespecError(f"--device {device} needs the onnxruntime or static backend, not '{kind}'")
        if device in STATIC_DEVICES:
            kind = "static"
        else:
            from .runtimes.ort import providers_for  # onnxruntime: see _open_ort

            providers_for(device)  # fail before any export work
            kind = "ort"
    if kind == "llamacpp":  # a missing or unusable llama-cpp-python is said before anything loads
        llama_cpp_module()
    ref = hub.resolve_model(model)
    budget = None
    if memory_budget is not None:
        budget = memory.parse_size(memory_budget)
        memory.check_before_load(budget, *load_need(ref, kind, layer_plans))  # before anything is loaded
    return ref, open_backend(ref, kind, threads=threads, device=device, context=context, memory_budget=budget,
                             layer_plans=layer_plans), budget


def load_need(ref: hub.ModelRef, kind: str, layer_plans: bool = False) -> tuple[int, str]:
    """(bytes the backend will hold once loaded, what they are), known before loading: onnxruntime holds
    its export's data times memory.ORT_LOAD_FACTOR (measured), not the source file's size; llama.cpp maps
    the GGUF."""
    if kind != "ort":
        return hub.weights_bytes(ref), ref.name
    export_dir = ref.path if ref.kind == "export" else cached_export(ref, layer_plans=layer_plans)  # not loading
    data = hub.weights_bytes(hub.ModelRef("export", export_dir, ref.name))
    need = int(data * memory.ORT_LOAD_FACTOR)
    source = "" if ref.kind == "export" else f"; the source file is {memory.human(hub.weights_bytes(ref))}"
    return need, (f"{ref.name} on onnxruntime (its export holds {memory.human(data)} of weights x "
                  f"{memory.ORT_LOAD_FACTOR} measured load factor = {memory.human(need)}{source})")


def source_config(ref: hub.ModelRef) -> ModelConfig:
    """A source's config without loading it: a GGUF's header only (not its vocabulary), or config.json.
    Read once per file version: a start asks for it several times (export keys, context checks)."""
    stat = Path(ref.path).stat()
    return _source_config(ref.kind, str(ref.path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _source_config(kind: str, path: str, _size: int, _mtime_ns: int) -> ModelConfig:
    if kind == "gguf":
        return ModelConfig.from_gguf(*read_gguf_header(path))
    return open_weights(path).config


def export_key(ref: hub.ModelRef, fmt: str = "onnx", full_context: bool = False,
               layer_plans: bool = False, new_rows: bool = False) -> tuple[str, str]:
    """(directory name, key) of a default export of `ref`, keyed by the source's content (sha256) and,
    for ONNX, the family's graph version and the graph contract: the known model with these bytes names
    it, whatever path or name it was given by. full_context: the variant whose RoPE table covers the
    model's whole context (made when --context asks for more than the default export's). layer_plans:
    the variant with an If per middle layer (`--spec layerskip | s3d` need it; it costs every plain step).
    new_rows: the variant with the new-row outputs (`--new-rows`, for the JS engine on onnxruntime-node)."""
    sha = hub.content_sha256(ref)
    known = hub.known_by_content(sha)
    # the architecture names the graph builder's version; a GGUF for llama.cpp has none (nor a header to read
    # when the source is an HF directory)
    architecture = source_config(ref).architecture if fmt in ("onnx", "npu") else ""
    key = _key(sha, architecture, fmt, full_context, layer_plans, new_rows)
    kind = "int4" + ("-plans" if layer_plans else "") + ("-rows" if new_rows else "") if fmt == "onnx" else fmt
    return f"{known.name if known else ref.name}-{kind}-{key}", key


def _key(sha: str, architecture: str, fmt: str, full_context: bool, layer_plans: bool, new_rows: bool) -> str:
    versions = ""
    if fmt == "onnx":  # rebuilt when the family's graph or the graph contract changes
        versions = (f"graph{family(architecture).graph_version}:contract{GRAPH_CONTRACT_VERSION}"
                    f":recipe-{DEFAULT_RECIPE}{RECIPE_VERSION}-calibration{CALIBRATION_VERSION}")  # new plan: re-export
    elif fmt == "npu":  # static graphs (`export --target npu`): their own builder and contract versions
        versions = (f"static{family(architecture).static_graph_version}:contract{STATIC_CONTRACT_VERSION}"
                    f":recipe-{DEFAULT_RECIPE}{RECIPE_VERSION}")
    onnx = fmt == "onnx"
    variant = f"{':fullctx' if full_context else ''}{':layer-plans' if layer_plans and onnx else ''}" \
              f"{':new-rows' if new_rows and onnx else ''}"
    return hashlib.sha256(f"{sha}:{fmt}:{versions}{variant}".encode()).hexdigest()[:12]


CACHED_EXPORT_NAME = re.compile(r"-(int4(?:-plans)?(?:-rows)?|npu|gguf)-([0-9a-f]{12})$")


def is_stale_export(directory: Path, manifest: dict) -> bool:
    """Whether a directory the loader made on first use (named by export_key) is one no load will open
    again: its key is none of those this version of edgespec computes for its source (another graph,
    contract or recipe version). Directories named otherwise (`edgespec export -o`) are never stale."""
    match = CACHED_EXPORT_NAME.search(directory.name)
    sha = manifest.get("source", {}).get("sha256")
    if match is None or not sha or "architecture" not in manifest:
        return False
    fmt = "onnx" if match[1].startswith("int4") else match[1]
    try:
        current = {_key(sha, manifest["architecture"], fmt, full, plans, rows)
                   for full in (False, True) for plans in (False, True) for rows in (False, True)}
    except EdgespecError:  # a family this version no longer knows: nothing can open it
        return True
    return match[2] not in current


def find_export(ref: hub.ModelRef, fmt: str = "onnx", context: int = 0, layer_plans: bool = False,
                new_rows: bool = False) -> Path | None:
    """The cached default export of these bytes that holds `context` tokens, whatever it was called when
    it was made (the default one first, then the whole-context one)."""
    exports = hub.cache_dir() / "exports"
    for full in (False, True):
        name, key = export_key(ref, fmt, full, layer_plans, new_rows)
        for out in [exports / name, *sorted(exports.glob(f"*-{key}"))]:
            if (out / "edgespec.json").is_file() and read_manifest(out, verify=False)["max_len"] >= context:
                return out
    return None


def cached_export(ref: hub.ModelRef, fmt: str = "onnx", progress: bool = True, context: int = 0,
                  layer_plans: bool = False, new_rows: bool = False) -> Path:
    """The default export of a source, made once: fmt "onnx" (int4, dynamic shapes), "npu" (int4 static
    graphs, `--target npu`) or "gguf" (a Q4_0/Q8_0 GGUF for llama.cpp), with a
    progress line and an estimate instead of the export's step-by-step log (that stays in the manifest).
    A context beyond the default export's (4096) gets an export for the model's whole context (only its
    RoPE table is longer); beyond the model's own maximum, a clear error before any work. layer_plans:
    the ONNX variant with an If per middle layer (layer-skip and S3D drafting), a directory of its own;
    new_rows: the ONNX variant with the new-row outputs (the JS engine's "appended" KV scheme on node)."""
    layer_plans, new_rows = layer_plans and fmt == "onnx", new_rows and fmt == "onnx"  # ONNX graphs' options
    found = find_export(ref, fmt, context, layer_plans, new_rows)
    if found is not None:
        return found
    # imported here: onnx takes 0.5-5 s to import, and every start with a cached export needs none of it;
    # it validates on onnxruntime (see _open_ort)
    from .export.pipeline import ExportOptions, export

    # validated against the fp32 reference on FIRST_USE_VALIDATE_TOKENS per text, without the llama.cpp
    # comparison: on 2 cores the full report (`edgespec export`) took 110 of a first chat's 130 s
    first_use = dict(validate_tokens=FIRST_USE_VALIDATE_TOKENS, compare_llamacpp=False)
    options = ExportOptions(target="npu", **first_use) if fmt == "npu" else \
        ExportOptions(format=fmt, layer_plans=layer_plans, new_rows=new_rows, **first_use)
    full = fmt == "onnx" and context > options.context()
    if full:
        limit = source_config(ref).max_position_embeddings
        check_context(context, limit, ref.name)
        options = replace(options, max_len=limit)
    out = hub.cache_dir() / "exports" / export_key(ref, fmt, full, layer_plans, new_rows)[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    with hub.cache_lock(out, f"exporting {ref.name}"):  # another process exporting it: wait, then use its export
        if (out / "edgespec.json").is_file():
            return out
        estimate = max(10.0, hub.weights_bytes(ref) / 1e6 * EXPORT_SECONDS_PER_MB.get(fmt, 0.1))
        log.info("first use of %s: exporting it to %s in %s (once, about %.0f s)", ref.name,
                 {"onnx": "int4 ONNX" + (" with layer plans" if layer_plans else "")
                  + (" with new-row outputs" if new_rows else ""),
                  "npu": "static int4 ONNX (NPU)"}.get(fmt, "GGUF"), out, estimate)
        known = hub.known_by_content(hub.content_sha256(ref))  # a known model's bytes under any path: its name
        export(known.name if known else str(ref.path), out, force=True, options=options, progress=progress,
               estimate=estimate)
    return out


def open_backend(ref: hub.ModelRef, kind: str, threads: int = 0, device: str = "cpu", context: int | None = None,
                 memory_budget: int | None = None, layer_plans: bool = False) -> Opened:
    """memory_budget: bytes; backends that allocate their KV cache up front (llama.cpp) size the context
    to fit it before allocating (the others are fitted after loading: Model.apply_memory_budget).
    layer_plans: a source opened on onnxruntime gets the export variant with layer plans (an export
    directory is opened as it is)."""
    if kind not in BACKENDS:
        raise EdgespecError(f"backend '{kind}' is not available; choose one of {', '.join(BACKENDS)}")
    if kind == "auto":
        kind, why = choose_backend(ref, threads, context)
        opened = open_backend(ref, kind, threads, device, context, memory_budget, layer_plans)
        opened.description += f" (auto: {why})"
        return opened
    if kind == "reference":
        return _open_reference(ref, context)
    if kind == "llamacpp":
        return _open_llamacpp(ref, threads, context, memory_budget)
    if kind == "static":
        return _open_static(ref, threads, device)
    return _open_ort(ref, threads, device, context, layer_plans)


DEFAULT_CONTEXT = 4096  # tokens when none is asked for (or the model's / export's maximum, if smaller)


def check_context(context: int | None, limit: int, what: str) -> int:
    """`context` if it fits `limit` (the model's or the export's maximum), else a clear error;
    None: DEFAULT_CONTEXT, or `limit` if that is smaller (a small model is not an error)."""
    if context is None:
        return min(DEFAULT_CONTEXT, limit)
    if context < 1:
        raise EdgespecError(f"--context {context}: expected a positive number of tokens")
    if context > limit:
        raise EdgespecError(f"--context {context} is above {what}'s maximum of {limit} tokens")
    return context


def release(opened: Opened) -> None:
    """Free a backend now (memory included), not at garbage collection."""
    if hasattr(opened.backend, "close"):
        opened.backend.close()
    opened.backend = None
    gc.collect()


def _open_ort(ref: hub.ModelRef, threads: int, device: str, context: int | None = None,
              layer_plans: bool = False) -> Opened:
    # here: onnxruntime takes ~40 MB resident once imported, which llama.cpp and the reference backend
    # (and their --memory-budget) should not pay
    from .runtimes.ort import OrtBackend

    if ref.kind != "export":
        ref = hub.ModelRef("export", cached_export(ref, context=context or 0, layer_plans=layer_plans), ref.name)
    manifest = read_manifest(ref.path)  # checks every file's sha256 first
    if manifest.get("format") == "gguf":
        raise EdgespecError(f"'{ref.path}' holds a GGUF export; run it with --backend llamacpp")
    if manifest.get("target") == "npu":
        return _open_static(ref, threads, device, manifest)
    check_manifest(manifest, str(ref.path))
    config = manifest_config(manifest)
    limit = manifest["max_len"]  # the RoPE table's length; the KV buffers are sized to the context asked for
    what = f"{ref.name}" if limit == config.max_position_embeddings else \
        f"this export (made with --max-len {limit}; the model allows {config.max_position_embeddings})"
    context = check_context(context, limit, what)
    tokenizer = tokenizer_for("export", ref.path, {}, config.vocab_size)
    backend = OrtBackend(str(ref.path / manifest["graph"]["file"]), config, context, threads, device)
    return Opened(backend, tokenizer, config, context,
                  f"onnxruntime {manifest['quantization']['precision']}", ref.path)


def _open_static(ref: hub.ModelRef, threads: int, device: str, manifest: dict | None = None) -> Opened:
    """A static (`--target npu`) export on the CPU EP, QNN HTP or OpenVINO; a source is exported once."""
    if ref.kind != "export":
        ref = hub.ModelRef("export", cached_export(ref, fmt="npu"), ref.name)
    manifest = manifest or read_manifest(ref.path)
    if manifest.get("target") != "npu":
        source = manifest["source"]["name"]
        raise EdgespecError(f"'{ref.path}' is a dynamic-shape export, which --device {device} cannot run (QNN HTP "
                            f"takes no dynamic shapes, If or GroupQueryAttention): make a static one with "
                            f"`edgespec export {source} --target npu -o {source}-npu` and run that directory")
    static = manifest["static"]
    found = static.get("contract", {}).get("version")
    if found != STATIC_CONTRACT_VERSION:
        raise ModelFormatError(f"static export '{ref.path}' has contract version {found}; this edgespec runs "
                               f"version {STATIC_CONTRACT_VERSION} — export the model again")
    config = manifest_config(manifest)
    graphs = {int(rows): ref.path / name for rows, name in static["graphs"].items()}
    backend = StaticBackend(graphs, config, static["window"], device, threads)
    return Opened(backend, tokenizer_for("export", ref.path, {}, config.vocab_size), config, static["window"],
                  f"static {manifest['quantization']['precision']} graphs {static['buckets']} rows on {device}"
                  + (" (simulated HTP: correct, timings not meaningful)" if backend.simulated else ""), ref.path)


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
    # the header alone (llama.cpp reads the weights): gguf's reader would decode the vocabulary into
    # per-string arrays, a transient peak bigger than smollm2's weights, before any --memory-budget check
    metadata, tensors = read_gguf_header(ref.path, strings=True)
    config = ModelConfig.from_gguf(metadata, tensors)
    return ref.path, tokenizer_for("gguf", ref.path, metadata, config.vocab_size), config


def _open_llamacpp(ref: hub.ModelRef, threads: int, context: int | None, memory_budget: int | None = None) -> Opened:
    if ref.kind == "gguf":  # before the GGUF's vocabulary is read
        check_context(context, source_config(ref).max_position_embeddings, ref.name)
    path, tokenizer, config = gguf_source(ref)
    n_ctx = check_context(context, config.max_position_embeddings, ref.name)
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


def _open_reference(ref: hub.ModelRef, context: int | None) -> Opened:
    if ref.kind == "export":
        raise EdgespecError("the reference backend needs the source weights, not an export directory")
    n_ctx = check_context(context, source_config(ref).max_position_embeddings, ref.name)  # before loading
    source = open_weights(ref.path)
    config = source.config
    tokenizer = tokenizer_for(ref.kind, ref.path, source.metadata, config.vocab_size)
    log.info("loading %s (%s, %d layers) on the numpy reference backend", ref.name, config.architecture,
             config.num_layers)
    model = family(config.architecture).reference.from_source(source)
    return Opened(ReferenceBackend(model, n_ctx), tokenizer, config, n_ctx, "numpy reference", Path(ref.path))


def choose_backend(ref: hub.ModelRef, threads: int, context: int | None) -> tuple[str, str]:
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


def measure_decode(ref: hub.ModelRef, kind: str, threads: int, context: int | None) -> float:
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
