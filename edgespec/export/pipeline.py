"""`edgespec export`: load -> build graph -> (quantize) -> save -> validate -> manifest.

Everything is written into a temporary sibling directory that is renamed into
place only at the end, so a failed or interrupted export leaves nothing behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx

from .. import hub
from .._version import __version__
from ..errors import EdgespecError
from ..formats import LazyWeights, open_weights
from ..models import family
from ..models.contract import manifest_entry
from ..models.onnx_builder import ExternalData, fp16_linear, gemm_linear
from ..quant.int4 import BLOCK_SIZES
from ..quant.linear import QuantizedEmbedding, TiedEmbedding, QuantizedLinear
from ..quant.gptq import GPTQ_VERSION
from ..quant.recipe import CALIBRATION_VERSION, DEFAULT_RECIPE, INT8_BLOCK, RECIPES, get_recipe
from ..runtimes.ort import OrtBackend
from ..tokenizer import tokenizer_for
from .gguf_writer import GGUF_TYPES, write_gguf
from ..progress import Progress
from .manifest import write_manifest
from .precision import calibration_tokens, plan_precision
from .static import DEFAULT_BUCKETS, DEFAULT_WINDOW, write_static_export
from .validate import LlamaCppLogits, validate

log = logging.getLogger(__name__)

GRAPH_FILE = "model.onnx"
GGUF_FILE = "model.gguf"
PRECISIONS = ("int4", "fp16", "fp32")
LM_HEAD_CHOICES = ("int8", "int4", "fp32")
# fp16-widened: fp16 values stored as fp32; quantized: the GGUF's own levels as int8 + fp32 block scales (a float
# table: int8 round-to-nearest), dequantized per row in the graph (quant.linear.QuantizedEmbedding); tied: the rows
# read from the lm_head's own quantized weight, one table for both (quant.linear.TiedEmbedding)
EMBED_CHOICES = ("fp16", "fp32", "fp16-widened", "quantized", "tied")
GRAPH_TARGETS = ("cpu", "npu")  # dynamic shapes for onnxruntime, or static graphs per row bucket


def default_embed(precision: str, fmt: str, target: str) -> str:
    """The embedding table's form when --embed is not given: an int4 ONNX export for the CPU keeps the GGUF's own
    levels as int8 ("quantized": its values exactly, half the fp16 table's bytes, so the data file is 11-19%
    smaller; the load peak is the same, since only the rows read of either table become resident; benchmarks/
    recipes.md, stop 37). The static (NPU) graphs and the float precisions keep fp16: "quantized" was not built
    for them."""
    return "quantized" if precision == "int4" and fmt == "onnx" and target == "cpu" else "fp16"


@dataclass(frozen=True)
class ExportOptions:
    precision: str = "int4"
    block_size: int = 32  # for weights that must be requantized (float sources)
    accuracy_level: int = 4  # MatMulNBits on int4 weights: 4 = int8 activations (fast), 0/1 = fp32
    lm_head: str | None = None  # int8 (default) | int4 | fp32, for --recipe faithful and --requantize
    embed: str | None = None  # None: default_embed(); resolved when made, so manifests and keys name the choice
    max_len: int | None = None  # KV buffer length (context): 4096, or the static window (1024) for --target npu
    validate_tokens: int = 256
    compare_llamacpp: bool = True  # validation also runs llama.cpp on a GGUF source (a report; slow on 2 cores)
    format: str = "onnx"
    requantize: bool = False  # True: requantize GGUF blocks to plain int4 too (smaller, faster, lossy)
    # an If per skippable (middle) layer, so layer-skip / S3D drafts can skip some; off by default: every plain step
    # pays for them (~2% on qwen 0.5b, benchmarks/plain-decode.md) and layer-skip drafting gained nothing on 2 cores
    layer_plans: bool = False
    extra_embeds: bool = True  # the extra_embeds input (PPD prompt rows); unfed it is one empty Concat
    # outputs new_key.i / new_value.i (the rows a pass wrote) for onnxruntime-node's "appended" KV scheme; off by
    # default: onnxruntime computes them on every pass, ~2% of a plain step (graph contract 5)
    new_rows: bool = False
    gguf_type: str | None = None  # --format gguf: Q8_0, Q4_0, F16, F32 (default Q4_0 for int4, F32 for fp32)
    recipe: str = DEFAULT_RECIPE  # int4: how each weight is stored (quant/recipe.py)
    bytes_budget: int | None = None  # bytes per token for the planned recipes, instead of the recipe's own

    @property
    def planned(self) -> bool:
        """Precision chosen per weight by measured sensitivity (GPTQ int4 vs the GGUF's levels)."""
        return self.format == "onnx" and self.precision == "int4" and not self.requantize and \
            get_recipe(self.recipe).budget is not None
    target: str = "cpu"  # cpu: dynamic shapes (onnxruntime); npu: static graphs per row bucket (export/static.py)
    buckets: tuple[int, ...] = DEFAULT_BUCKETS  # --target npu: rows per graph

    def __post_init__(self):
        if self.embed is None:  # frozen: set once, here
            object.__setattr__(self, "embed", default_embed(self.precision, self.format, self.target))

    def context(self) -> int:
        return self.max_len or (DEFAULT_WINDOW if self.target == "npu" else 4096)

    def check(self) -> None:
        problems = []
        if self.format not in ("onnx", "gguf"):
            problems.append(f"--format {self.format} is not one of onnx, gguf")
        if self.gguf_type is not None and (self.format != "gguf" or self.gguf_type not in GGUF_TYPES):
            problems.append(f"--gguf-type {self.gguf_type} needs --format gguf and one of {list(GGUF_TYPES)}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision '{self.precision}' is not supported; choose one of {PRECISIONS}")
        if self.block_size not in BLOCK_SIZES:
            problems.append(f"block size {self.block_size} is not one of {BLOCK_SIZES}")
        if self.lm_head is not None and self.lm_head not in LM_HEAD_CHOICES:
            problems.append(f"lm_head '{self.lm_head}' is not one of {LM_HEAD_CHOICES}")
        if self.recipe not in RECIPES:
            problems.append(f"recipe '{self.recipe}' is not one of {', '.join(RECIPES)}")
        elif self.planned and self.lm_head is not None:
            problems.append(f"--lm-head applies to --recipe faithful or --requantize; recipe '{self.recipe}' "
                            "chooses the lm_head's precision itself")
        if self.bytes_budget is not None and (self.bytes_budget <= 0 or self.recipe not in RECIPES
                                              or not self.planned):
            problems.append(f"--bytes-budget {self.bytes_budget} needs a positive size and a planned recipe "
                            f"(balanced, fast or compact), not '{self.recipe}'")
        if self.embed not in EMBED_CHOICES:
            problems.append(f"embed '{self.embed}' is not one of {EMBED_CHOICES}")
        if self.precision != "int4" and (self.lm_head not in (None, "int8") or self.embed != "fp16"
                                         or self.requantize):
            problems.append("--lm-head / --embed / --requantize apply to --int4 exports only")
        if self.max_len is not None and self.max_len < 1:
            problems.append(f"--max-len {self.max_len} is not a context length: expected >= 1 tokens")
        if self.validate_tokens < 2:  # perplexity needs a next token to predict
            problems.append(f"--validate-tokens {self.validate_tokens}: expected >= 2 tokens per validation text")
        if self.accuracy_level not in (0, 1, 2, 3, 4):
            problems.append(f"accuracy level {self.accuracy_level} is not one of 0-4")
        if self.target not in GRAPH_TARGETS:
            problems.append(f"--target {self.target} is not one of {', '.join(GRAPH_TARGETS)}")
        if self.target == "npu" and (self.format != "onnx" or not self.buckets or min(self.buckets) < 1):
            problems.append(f"--target npu needs --format onnx and buckets >= 1 (got {list(self.buckets)})")
        if self.embed in ("quantized", "tied") and (self.target == "npu" or self.format != "onnx"):
            problems.append(f"--embed {self.embed} is built for the dynamic onnx graph, "
                            f"not --target {self.target} --format {self.format}")
        if self.new_rows and (self.target == "npu" or self.format != "onnx"):
            problems.append(f"--new-rows is an output of the dynamic onnx graph (for onnxruntime-node), not of "
                            f"--target {self.target} --format {self.format}")
        if self.embed == "tied" and self.lm_head == "fp32":
            problems.append("--embed tied reads the rows from a quantized lm_head, not --lm-head fp32")
        if problems:
            raise EdgespecError("; ".join(problems))


def export(model: str, out_dir: str | Path, options: ExportOptions = ExportOptions(), force: bool = False,
           progress: bool = False, estimate: float | None = None) -> Path:
    """progress: one progress line with an estimate instead of the step-by-step log (first use from a
    front end: the validation report stays in the manifest, shown by `edgespec info`)."""
    if not progress:
        return _export(model, out_dir, options, force, None)
    quiet = [logging.getLogger(name) for name in ("edgespec.export", "edgespec.formats", "edgespec.quant")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.WARNING)
    try:
        with Progress(len(STAGES), f"exporting {Path(model).name} for onnxruntime (once)", unit="steps",
                      estimate=estimate) as bar:
            return _export(model, out_dir, options, force, bar)
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)


STAGES = ("build", "validate", "save")


def _export(model: str, out_dir: str | Path, options: ExportOptions, force: bool, bar) -> Path:
    step = bar.update if bar is not None else (lambda n: None)
    options.check()
    out = Path(out_dir)
    if out.exists() and not force:
        raise EdgespecError(f"output directory '{out}' already exists; pass --force to replace it")
    ref = hub.resolve_model(model)
    if ref.kind == "export":
        raise EdgespecError(f"'{model}' is already an edgespec export; export from a .gguf file, an HF directory "
                            "or a known model name")
    started = time.monotonic()
    source = open_weights(ref.path)
    config = source.config
    max_len = min(options.context(), config.max_position_embeddings)
    tokenizer = tokenizer_for(ref.kind, ref.path, source.metadata, config.vocab_size)
    _check_block_size(config, options, ref.name)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        if options.format == "gguf":
            artifact, report, build_seconds = _write_gguf_export(ref, source, tokenizer, tmp, options, started, step)
        elif options.target == "npu":
            planned = _strategies(source, options, tokenizer, ref)[:2] if options.planned else None  # same weights
            artifact, report, build_seconds, routes = write_static_export(ref, source, tokenizer, tmp, options,
                                                                          max_len, started, _reference(source),
                                                                          planned)
            artifact["quantization"] = {**asdict(options), "routes": _route_summary(routes)}
        else:
            artifact, report, build_seconds = _write_onnx_export(ref, source, tokenizer, tmp, options, max_len,
                                                                 started, step)
        step(1)  # validated
        tokenizer.save(tmp)
        write_manifest(tmp, {
            "edgespec_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "source": {"name": ref.name, "kind": ref.kind, "path": str(ref.path), **_source_hash(ref)},
            "architecture": config.architecture,
            "config": config.to_dict(),
            "max_len": max_len,
            **artifact,
            "tokenizer": {"files": ["tokenizer.json", "tokenizer_config.json"], "bos_id": tokenizer.bos_id,
                          "eos_id": tokenizer.eos_id, "stop_ids": sorted(tokenizer.stop_ids)},
            "chat_template": tokenizer.chat_template,
            "drafters": [],
            "validation": report,
            "timing": {"build_seconds": round(build_seconds, 2),
                       "total_seconds": round(time.monotonic() - started, 2)},
        })
        _move_into_place(tmp, out, force)
        step(1)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("export ready at %s (%.1f s)", out, time.monotonic() - started)
    return out


def _reference(source):
    # lazy: each weight is dequantized when used, so the fp32 reference never holds the whole model
    return lambda: family(source.config.architecture).reference(source.config, LazyWeights(source), materialize=False)


def _write_onnx_export(ref, source, tokenizer, tmp: Path, options: ExportOptions, max_len: int, started: float,
                       step):
    """model.onnx + model.onnx.data; returns (manifest entries, validation report, build seconds)."""
    config = source.config
    log.info("building the %s graph for %s (%d layers)", options.precision, ref.name, config.num_layers)
    linear, lm_head, plan = _strategies(source, options, tokenizer, ref)
    embedding = {"quantized": lambda: QuantizedEmbedding(source),
                 "tied": lambda: TiedEmbedding(lm_head)}.get(options.embed, lambda: None)()
    external = ExternalData(tmp / (GRAPH_FILE + ".data"), GRAPH_FILE + ".data")
    try:
        graph = family(config.architecture).build_graph(config, LazyWeights(source), max_len, linear=linear, lm_head_linear=lm_head,
                            embed_dtype=np.float32 if options.precision == "fp32" or options.embed != "fp16"
                            else np.float16, embed_rounding=np.float16 if options.embed == "fp16-widened" else None,
                            external=external, embedding=embedding,
                            layer_plans=options.layer_plans, extra_embeds=options.extra_embeds,
                            new_rows=options.new_rows)
    finally:
        external.close()
    log.info("writing %s", GRAPH_FILE)
    onnx.save_model(graph, str(tmp / GRAPH_FILE))
    inputs = [i.name for i in graph.graph.input if not i.name.startswith("past_")]
    del graph
    build_seconds = time.monotonic() - started
    step(1)
    log.info("validating against the numpy reference")
    report = validate(lambda: OrtBackend(str(tmp / GRAPH_FILE), config, options.validate_tokens + 8),
                      _reference(source), tokenizer, options.precision, options.validate_tokens,
                      ref.path if ref.kind == "gguf" and options.compare_llamacpp else None)
    artifact = {"format": "onnx",
                "quantization": {**asdict(options), "routes": _route_summary(getattr(linear, "report", {})),
                                 "lm_head_route": getattr(lm_head, "report", {}),
                                 **({} if embedding is None else {"embed_route": embedding.report}),
                                 **({} if plan is None else {"plan": plan.summary, "tensors": plan.tensors})},
                "graph": {"file": GRAPH_FILE, "inputs": inputs},
                "graph_contract": manifest_entry(config, layer_plans=options.layer_plans,
                                                 extra_embeds=options.extra_embeds, new_rows=options.new_rows)}
    return artifact, report, build_seconds


def _write_gguf_export(ref, source, tokenizer, tmp: Path, options: ExportOptions, started: float, step):
    """model.gguf for llama.cpp; validated by running it in llama.cpp against the reference."""
    type_name = options.gguf_type or ("Q4_0" if options.precision == "int4" else "F32")
    log.info("writing %s as %s", GGUF_FILE, type_name)
    written = write_gguf(ref, source, tmp / GGUF_FILE, type_name)
    build_seconds = time.monotonic() - started
    step(1)
    log.info("validating %s in llama.cpp against the numpy reference", GGUF_FILE)
    report = validate(lambda: LlamaCppLogits(tmp / GGUF_FILE, options.validate_tokens + 8), _reference(source),
                      tokenizer, options.precision, options.validate_tokens, ref.path if ref.kind == "gguf" else None)
    return {"format": "gguf", "quantization": {**asdict(options), **written}, "gguf": {"file": GGUF_FILE}}, \
        report, build_seconds


def _check_block_size(config, options: ExportOptions, name: str) -> None:
    """Before any work: int4 blocks run along each projection's inputs, so the block must divide every one."""
    if options.precision != "int4" or options.format != "onnx":
        return
    inputs = sorted({config.hidden_size, config.num_heads * config.head_dim, config.intermediate_size})
    if any(k % options.block_size for k in inputs):
        fits = [b for b in BLOCK_SIZES if all(k % b == 0 for k in inputs)]
        raise EdgespecError(f"--block-size {options.block_size} does not divide the projection inputs of {name} "
                            f"({', '.join(map(str, inputs))}); choose one of {', '.join(map(str, fits)) or 'none'}")


def _strategies(source, options: ExportOptions, tokenizer, ref=None):
    """(layers' Linear, lm_head's Linear, precision Plan or None)."""
    if options.precision == "fp32":
        return gemm_linear, gemm_linear, None
    if options.precision == "fp16":
        return fp16_linear, fp16_linear, None
    if options.planned:  # high route = GGUF levels (int8 for float weights); GPTQ int4 where the plan says
        # raised 5..8-bit levels as int8 in blocks of 128 where onnxruntime's int8-activation kernel runs them
        # (the CPU at accuracy level 4); the web's and the NPU's kernels keep the GGUF's own blocks
        int8_block = INT8_BLOCK if options.target == "cpu" and options.accuracy_level == 4 else None
        fold = int8_block is not None  # the int8 offset terms folded in: measured on the CPU's kernel only
        layers = QuantizedLinear(source, 8, options.block_size, options.accuracy_level, int8_offsets=True,
                                 int8_block=int8_block, fold_offsets=fold)
        lm_head = QuantizedLinear(source, 8, options.block_size, options.accuracy_level, int8_offsets=True,
                                  int8_block=int8_block, fold_offsets=fold)
        recipe = get_recipe(options.recipe)
        tokens = calibration_tokens(tokenizer, recipe.calib_tokens)
        cache = None if ref is None else hub.cache_dir() / "calibration" / (
            f"{ref.name}-" + hub.source_key(ref.path, CALIBRATION_VERSION, GPTQ_VERSION, recipe.calib_tokens,
                                            recipe.kl_tokens, recipe.top_k, recipe.lm_head_rows, options.block_size,
                                            hash(tuple(tokens)), *(("symmetric",) if recipe.symmetric else ())) +
            ".npz")
        # a tied embedding reads its rows from one lm_head table (QNN HTP runs the split's 8-bit MatMulNBits
        # and Concat: checked in its simulator)
        plan = plan_precision(source, tokens, recipe, layers, lm_head, options.bytes_budget, options.block_size,
                              cache, split_lm_head=options.embed != "tied",
                              max_len=options.context())
        layers.planned = lm_head.planned = plan.int4
        lm_head.high_rows = plan.high_rows
        return layers, lm_head, plan
    layers = QuantizedLinear(source, 4, options.block_size, options.accuracy_level,
                             keep_gguf_blocks=not options.requantize)
    if options.lm_head == "fp32":
        return layers, gemm_linear, None
    bits = 4 if options.lm_head == "int4" else 8
    return layers, QuantizedLinear(source, bits, options.block_size, options.accuracy_level,
                                   keep_gguf_blocks=not options.requantize), None


def _route_summary(report: dict) -> dict:
    """Per-route counts (e.g. 'Q4_K levels kept': 96) plus the worst requantization error."""
    summary: dict = {}
    for entry in report.values():
        summary[entry["route"]] = summary.get(entry["route"], 0) + 1
    errors = [e["rel_rms"] for e in report.values() if "rel_rms" in e]
    if errors:
        summary["max_requantization_rel_rms"] = max(errors)
    return summary


def _source_hash(ref) -> dict:
    if ref.name in hub.KNOWN_MODELS:
        return {"sha256": hub.KNOWN_MODELS[ref.name].sha256}
    if ref.kind == "gguf":
        return {"sha256": hub.sha256_file(ref.path)}
    return {}


def _move_into_place(tmp: Path, out: Path, force: bool) -> None:
    if out.exists():
        if not force:
            raise EdgespecError(f"output directory '{out}' appeared during the export; not replacing it")
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
