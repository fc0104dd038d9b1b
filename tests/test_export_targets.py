"""`edgespec export --target web`: the embedding readable by onnxruntime-web's WebGPU without shader-f16: tied to
the quantized lm_head (the preset), quantized (tests/test_quant.py checks both strategies' rows), or as fp16 values
widened to fp32, which compute exactly what the default fp16 table computes."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgespec.cli import build_parser
from edgespec.export.targets import TARGETS
from edgespec.models.llama.graph import build_graph
from edgespec.runtimes.ort import OrtBackend

from .tiny import TINY_CONFIGS, random_weights

MAX_LEN = 32


def logits(config, weights, **embed) -> np.ndarray:
    graph = build_graph(config, weights, MAX_LEN, **embed)
    backend = OrtBackend(graph.SerializeToString(), config, MAX_LEN, threads=1)
    return backend.forward(np.arange(1, 12) % config.vocab_size)


def table(config, weights, **embed) -> np.ndarray:
    graph = build_graph(config, weights, MAX_LEN, **embed)
    return next(onnx.numpy_helper.to_array(t) for t in graph.graph.initializer if t.name.startswith("embed."))


def test_widened_fp16_embeddings_compute_the_fp16_exports_logits():
    # untied: the lm_head has its own weights, as in the web target's int4 exports (lm_head int8); a tied fp32
    # lm_head would multiply by the widened table itself
    config = TINY_CONFIGS["qwen2"]
    weights = random_weights(config)
    fp16 = logits(config, weights, embed_dtype=np.float16)
    widened = logits(config, weights, embed_dtype=np.float32, embed_rounding=np.float16)
    plain_fp32 = logits(config, weights, embed_dtype=np.float32)
    assert table(config, weights, embed_dtype=np.float32, embed_rounding=np.float16).dtype == np.float32
    assert np.array_equal(widened, fp16)
    assert not np.array_equal(plain_fp32, fp16)  # the test can tell a plain fp32 table apart


def test_target_web_maps_to_a_tied_embedding_and_flags_win(monkeypatch):
    import edgespec.cli as cli
    import edgespec.export.pipeline as pipeline

    seen = {}
    monkeypatch.setattr(pipeline, "export", lambda model, output, options, force: seen.setdefault("options", options))
    monkeypatch.setattr(cli.manage, "manifest_lines", lambda out: [])
    parser = build_parser()
    args = parser.parse_args(["export", "smollm2-135m", "--target", "web", "-o", "x"])
    args.func(args)
    assert seen.pop("options").embed == TARGETS["web"]["embed"] == "tied"
    args = parser.parse_args(["export", "smollm2-135m", "--target", "web", "--embed", "fp32", "-o", "x"])
    args.func(args)
    assert seen.pop("options").embed == "fp32"


def test_the_default_embedding_is_the_ggufs_levels_on_the_cpu_and_fp16_where_that_graph_is_not_built(monkeypatch):
    """`edgespec export` and the loader's first-use export (ExportOptions() with no embed) resolve the same default,
    and the manifest records the choice, not None."""
    import edgespec.cli as cli
    import edgespec.export.pipeline as pipeline
    from edgespec.export.pipeline import ExportOptions

    assert ExportOptions().embed == "quantized"
    assert ExportOptions(target="npu").embed == ExportOptions(precision="fp16").embed == "fp16"
    assert ExportOptions(format="gguf").embed == "fp16"
    for options in (ExportOptions(), ExportOptions(target="npu"), ExportOptions(precision="fp32")):
        options.check()  # every default passes its own compatibility check
    seen = []
    monkeypatch.setattr(pipeline, "export", lambda model, output, options, force: seen.append(options))
    monkeypatch.setattr(cli.manage, "manifest_lines", lambda out: [])
    parser = build_parser()
    for flags in ([], ["--target", "npu"], ["--fp16"]):
        args = parser.parse_args(["export", "smollm2-135m", "-o", "x", *flags])
        args.func(args)
    assert [o.embed for o in seen] == ["quantized", "fp16", "fp16"]


def test_a_quantized_embedding_is_refused_where_the_graph_cannot_take_it():
    from edgespec.errors import EdgespecError
    from edgespec.export.pipeline import ExportOptions

    ExportOptions(embed="quantized").check()
    with pytest.raises(EdgespecError, match="--embed quantized is built for the dynamic onnx graph, not --target npu"):
        ExportOptions(target="npu", embed="quantized").check()
    with pytest.raises(EdgespecError, match="--int4 exports only"):
        ExportOptions(precision="fp16", embed="quantized").check()
    with pytest.raises(EdgespecError, match="--embed tied is built for the dynamic onnx graph, not --target npu"):
        ExportOptions(target="npu", embed="tied").check()
    with pytest.raises(EdgespecError, match="--embed tied reads the rows from a quantized lm_head, not --lm-head fp32"):
        ExportOptions(embed="tied", lm_head="fp32", recipe="faithful").check()


def test_a_tied_model_stores_its_table_once_and_an_untied_one_is_refused():
    """The whole graph with --embed tied: on a tied model one quantized table serves the embedding and the lm_head
    (the data holds it once); on a model whose lm_head is another table (tiny qwen2: random, unrelated rows) the
    export stops, naming the measured difference."""
    from edgespec.errors import EdgespecError
    from edgespec.quant.linear import QuantizedLinear, TiedEmbedding

    class Source:  # the float weights as a source QuantizedLinear can read
        def __init__(self, config, weights):
            self.config, self.w = config, weights

        def tensor(self, name):
            return self.w[name]

    config = TINY_CONFIGS["llama"]
    weights = random_weights(config)
    head = QuantizedLinear(Source(config, weights), 4, 32, accuracy_level=0)
    graph = build_graph(config, weights, MAX_LEN, linear=head, lm_head_linear=head, embedding=TiedEmbedding(head))
    names = [t.name for t in graph.graph.initializer]
    assert "embed.qweight" in names and not any(n.startswith(("embed.fp16", "embed.table", "embed_rows.levels"))
                                                for n in names)
    backend = OrtBackend(graph.SerializeToString(), config, MAX_LEN, threads=1)
    # the same model with an fp32 table holding the lm_head's dequantized int4 rows
    from edgespec.quant.int4 import dequantize
    table_rows = dict(weights, embed=dequantize(head.pack("embed", record=False)[0]))
    expected = logits(config, table_rows, linear=head, lm_head_linear=head, embed_dtype=np.float32)
    got = backend.forward(np.arange(1, 12) % config.vocab_size)
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()

    config = TINY_CONFIGS["qwen2"]
    weights = random_weights(config)
    head = QuantizedLinear(Source(config, weights), 4, 32, accuracy_level=0)
    with pytest.raises(EdgespecError, match=r"differ by \d+\.\d+ relative RMS"):
        build_graph(config, weights, MAX_LEN, linear=head, lm_head_linear=head, embedding=TiedEmbedding(head))
