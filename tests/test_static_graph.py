"""Static-shape (NPU) graphs on tiny random models, on the CPU EP: equal to the numpy reference through
every bucket, padding, passes split across buckets, token trees, rollback and keep."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgespec.errors import EdgespecError
from edgespec.models.llama import LlamaReference
from edgespec.models.llama.static_graph import build_static_graph
from edgespec.models.onnx_builder import Fp16Activations, matmul_linear
from edgespec.quant import int4
from edgespec.quant.linear import QuantizedLinear
from edgespec.runtimes.static import StaticBackend

from .tiny import TINY_CONFIGS, random_weights, root_path, tree_layout

WINDOW = 48
BUCKETS = (1, 4, 8)
TOL = 1e-3


class FloatSource:
    """The minimal weights source QuantizedLinear reads: float tensors, requantized to int4."""

    def __init__(self, config, weights):
        self.config, self.weights = config, weights

    def tensor(self, name):
        return self.weights[name]


def backend_for(config, weights, tmp_path, linear=None, lm_head=None, embed_dtype=np.float32) -> StaticBackend:
    graphs = {}
    for rows in BUCKETS:
        graph = build_static_graph(config, weights, rows, WINDOW, linear or matmul_linear(), lm_head, embed_dtype)
        onnx.checker.check_model(graph, full_check=True)  # every shape is fixed and infers
        graphs[rows] = tmp_path / f"t{rows}.onnx"
        onnx.save(graph, str(graphs[rows]))
    return StaticBackend(graphs, config, WINDOW, "cpu", threads=1)


@pytest.fixture(params=sorted(TINY_CONFIGS))
def pair(request, tmp_path):
    config = TINY_CONFIGS[request.param]
    weights = random_weights(config)
    return backend_for(config, weights, tmp_path), LlamaReference(config, weights)


def tokens_for(config, n, seed=0):
    return np.random.default_rng(seed).integers(0, config.vocab_size, n)


def test_every_bucket_and_split_passes_match_reference(pair):
    backend, ref = pair
    tokens = tokens_for(ref.config, 40)
    expected = ref.forward(tokens)
    # 19 rows: passes of 8 + 8 + 3 (padded to 4); then 1, 2 (padded to 4), 5 (padded to 8), 13 (8 + 5)
    got = np.concatenate([backend.forward(tokens[:19]), backend.forward(tokens[19:20]), backend.forward(tokens[20:22]),
                          backend.forward(tokens[22:27]), backend.forward(tokens[27:])])
    assert backend.cache_len == 40
    assert np.abs(got - expected).max() <= TOL
    assert set(backend.runners) == set(BUCKETS)


def test_tree_wider_than_the_largest_bucket_matches_reference(pair):
    """A 13-node token tree verified in two passes (8 + 5 rows): later rows see earlier ones via the mask."""
    backend, ref = pair
    prefix = tokens_for(ref.config, 10)
    parents = [-1, 0, 0, 1, 1, 2, 3, 3, 4, 5, 6, 8, 9]
    nodes = tokens_for(ref.config, len(parents), seed=3)
    depth, mask = tree_layout(parents)
    backend.forward(prefix)
    got = backend.forward(nodes, positions=10 + depth, tree_mask=mask)
    for node in (7, 11, 12):  # leaves: each root-to-leaf path decoded plainly
        path = root_path(parents, node)
        want = ref.forward(np.concatenate([prefix, nodes[path]]))[10:]
        assert np.abs(got[path] - want).max() <= TOL


def test_rollback_and_keep(pair):
    backend, ref = pair
    tokens = tokens_for(ref.config, 20)
    backend.forward(tokens[:8])
    plain = backend.forward(tokens[8:9])
    backend.rollback(1)
    backend.forward(tokens[8:15])
    backend.rollback(7)
    assert np.array_equal(backend.forward(tokens[8:9]), plain)  # stale slots never leak
    # keep a path of a tree: the cache then equals decoding that path
    backend.reset()
    backend.forward(tokens[:8])
    parents = [-1, 0, 0, 2]
    nodes = tokens_for(ref.config, 4, seed=5)
    depth, mask = tree_layout(parents)
    backend.forward(nodes, positions=8 + depth, tree_mask=mask)
    backend.keep([0, 2, 3])
    next_logits = backend.forward(tokens[15:16])
    want = ref.forward(np.concatenate([tokens[:8], nodes[[0, 2, 3]], tokens[15:16]]))[-1]
    assert np.abs(next_logits[0] - want).max() <= TOL


def test_rows_are_bit_identical_whatever_the_pass_shape(pair):
    """What exact speculation needs: a row's logits (and K/V) do not depend on which bucket or how many
    other rows its pass had (attention always reduces over the same W slots)."""
    backend, ref = pair
    tokens = tokens_for(ref.config, 30)
    backend.forward(tokens[:20])
    whole = backend.forward(tokens[20:27])  # one 7-row pass (8-row graph)
    backend.rollback(7)
    parts = np.concatenate([backend.forward(tokens[20:22]), backend.forward(tokens[22:25]),
                            backend.forward(tokens[25:27])])  # 2 + 3 + 2 rows (4-row graph)
    assert np.array_equal(whole, parts)


def test_int4_fp16_activation_graph_matches_dequantized_reference(tmp_path):
    """MatMulNBits on 3-D fp16 input (the form QNN HTP takes), requantized int4 weights and an int8 lm_head,
    against the reference on the same dequantized weights: the error is fp16 rounding only."""
    config = TINY_CONFIGS["qwen2"]  # untied lm_head and q/k/v biases (stacked with the weights)
    weights = random_weights(config)
    source = FloatSource(config, weights)
    layers = Fp16Activations(QuantizedLinear(source, 4, 32, accuracy_level=0, float_type=np.float16))
    head = Fp16Activations(QuantizedLinear(source, 8, 32, accuracy_level=0, float_type=np.float16))
    backend = backend_for(config, weights, tmp_path, layers, head, np.float16)
    dequantized = dict(weights)
    for name in weights:
        if weights[name].ndim == 2 and name not in ("embed",):
            pack = int4.quantize_int8 if name == "lm_head" else int4.quantize
            dequantized[name] = int4.dequantize(pack(weights[name], 32))
    dequantized["embed"] = weights["embed"].astype(np.float16).astype(np.float32)
    tokens = tokens_for(config, 24)
    got = np.concatenate([backend.forward(tokens[:13]), backend.forward(tokens[13:14]), backend.forward(tokens[14:])])
    expected = LlamaReference(config, dequantized).forward(tokens)
    assert np.abs(got - expected).max() <= 0.05 * np.abs(expected).max()
    assert np.mean(got.argmax(-1) == expected.argmax(-1)) >= 0.95


def test_overflow_and_layer_plans_are_refused(pair):
    backend, ref = pair
    with pytest.raises(EdgespecError, match="window of 48"):
        backend.forward(tokens_for(ref.config, WINDOW + 1))
    with pytest.raises(EdgespecError, match="no layer plans"):
        backend.forward(tokens_for(ref.config, 2), plan=np.array([True, False] + [True] * (ref.config.num_layers - 2)))
    assert not backend.supports_plan()


@pytest.mark.parametrize("options, message", [
    (dict(target="gpu"), "--target gpu is not one of cpu, npu"),
    (dict(target="npu", format="gguf"), "--target npu needs --format onnx"),
    (dict(target="npu", buckets=(0, 4)), "buckets >= 1"),
    (dict(target="npu", new_rows=True), r"--new-rows is an output of the dynamic onnx graph .*not of --target npu"),
    (dict(format="gguf", new_rows=True), "--new-rows .* not of --target cpu --format gguf"),
])
def test_bad_static_export_options_are_refused(options, message):
    from edgespec.export.pipeline import ExportOptions

    with pytest.raises(EdgespecError, match=message):
        ExportOptions(**options).check()
    assert ExportOptions(target="npu").context() == 1024 and ExportOptions().context() == 4096
