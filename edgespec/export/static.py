"""`edgespec export --target npu`: one static graph per row bucket, validated, for QNN HTP / OpenVINO / CPU.

The graphs (models/onnx_llama_static.py) share one external data file (each weight written once);
the weights take the same routes as the dynamic export (quant/linear.py: GGUF levels kept), with
fp16 activations into MatMulNBits, the form QNN HTP runs. Every bucket's graph is checked against
the numpy reference at export, on onnxruntime's CPU EP (an NPU simulator can be silently wrong, so
tests/test_npu.py also compares QNN's and OpenVINO's results with the CPU EP's).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import onnx

from ..errors import UnsupportedArchitectureError
from ..formats import LazyWeights
from ..models import family
from ..models.onnx_builder import ExternalData, Fp16Activations, matmul_linear
from ..models.static_contract import CONTRACT
from ..quant.linear import QuantizedLinear
from ..runtimes.static import StaticBackend
from .validate import stdlib_text, validate

log = logging.getLogger(__name__)

DATA_FILE = "weights.onnx.data"
DEFAULT_BUCKETS = (1, 4, 8, 16)
DEFAULT_WINDOW = 1024
BUCKET_PREFIX = 16  # tokens cached before each bucket's check, so its rows attend to a real past


def graph_file(rows: int) -> str:
    return f"model_t{rows}.onnx"


def static_strategies(source, options):
    """(Linear, lm_head Linear) on 3-D input: the dynamic export's weight routes, fp16 activations."""
    if options.precision != "int4":
        linear = matmul_linear(np.float16 if options.precision == "fp16" else np.float32)
        return linear, linear

    def quantized(bits: int):
        return Fp16Activations(QuantizedLinear(source, bits, options.block_size, options.accuracy_level,
                                               keep_gguf_blocks=not options.requantize, float_type=np.float16))
    head = {"int8": lambda: quantized(8), "int4": lambda: quantized(4),
            "fp32": lambda: matmul_linear(np.float32)}[options.lm_head or "int8"]()  # recipes are not applied here
    return quantized(4), head


def _fp16(*linears):
    """The recipe's planned QuantizedLinears (the same int4/int8 choices as the dynamic export) on fp16
    activations; the Q4_1/Q4_K offset term as an fp16 MatMul (its int8 form has fp32 scales)."""
    for linear in linears:
        linear.float_type, linear.int8_offsets = np.float16, False
    return tuple(Fp16Activations(linear) for linear in linears)


def write_static_export(ref, source, tokenizer, tmp: Path, options, window: int, started: float, make_reference,
                        planned=None):
    """model_t{T}.onnx per bucket + weights.onnx.data.
    -> (manifest entries, validation report, build seconds, the Linear strategy's per-weight route report)"""
    config = source.config
    unit = family(config.architecture)
    if unit.build_static_graph is None:
        raise UnsupportedArchitectureError(f"architecture '{config.architecture}' has no static (NPU) graph builder")
    buckets = sorted(set(options.buckets))
    linear, lm_head = static_strategies(source, options) if planned is None else _fp16(*planned)
    embed_dtype = np.float32 if options.precision == "fp32" or options.embed == "fp32" else np.float16
    external = ExternalData(tmp / DATA_FILE, DATA_FILE)
    graphs = {}
    try:
        for rows in buckets:
            log.info("building the static %d-row graph (window %d) for %s", rows, window, ref.name)
            graph = unit.build_static_graph(config, LazyWeights(source), rows, window, linear, lm_head, embed_dtype,
                                       external)
            onnx.save_model(graph, str(tmp / graph_file(rows)))
            graphs[rows] = tmp / graph_file(rows)
            del graph
    finally:
        external.close()
    build_seconds = time.monotonic() - started
    log.info("validating every bucket's graph against the numpy reference (CPU EP)")
    n_tokens = min(options.validate_tokens, window - 8)
    report = validate(lambda: StaticBackend(graphs, config, window), make_reference, tokenizer, options.precision,
                      n_tokens, ref.path if ref.kind == "gguf" else None)
    report["buckets"] = validate_buckets(StaticBackend(graphs, config, window), make_reference(),
                                         tokenizer.encode(_bucket_text(), add_bos=False))
    artifact = {"format": "onnx", "target": "npu",
                "static": {"version": unit.static_graph_version, "window": window, "buckets": buckets,
                           "graphs": {str(rows): graph_file(rows) for rows in buckets}, "data": DATA_FILE,
                           "contract": CONTRACT}}
    return artifact, report, build_seconds, getattr(linear, "report", {})


def validate_buckets(backend: StaticBackend, reference, tokens: list[int]) -> dict:
    """Per bucket T: BUCKET_PREFIX tokens cached, then T rows through that bucket's graph alone, against the
    reference's logits of the same rows: max |diff| and top-1 agreement."""
    longest = backend.buckets[-1]
    tokens = np.asarray(tokens[:BUCKET_PREFIX + longest])
    expected = reference.forward(tokens)
    report = {}
    for rows in backend.buckets:
        backend.reset()
        backend.forward(tokens[:BUCKET_PREFIX])
        got = backend.forward(tokens[BUCKET_PREFIX:BUCKET_PREFIX + rows])
        want = expected[BUCKET_PREFIX:BUCKET_PREFIX + rows]
        report[str(rows)] = {"max_abs_logit_diff": float(np.abs(got - want).max()),
                             "top1_agreement": float(np.mean(got.argmax(-1) == want.argmax(-1)))}
        log.info("bucket %d: %s", rows, report[str(rows)])
    return report


def _bucket_text() -> str:
    return stdlib_text(2000)
