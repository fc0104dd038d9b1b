"""The ONNX decoder graph against the numpy reference (fp32), through the ORT session harness."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgespec.models.llama import LlamaReference
from edgespec.models.onnx_llama import build_graph
from edgespec.runtimes.ort import OrtBackend

from .tiny import TINY_CONFIGS, random_weights, root_path, tree_layout

MAX_LEN = 64
TOL = 1e-3


@pytest.fixture(params=sorted(TINY_CONFIGS))
def pair(request):
    config = TINY_CONFIGS[request.param]
    weights = random_weights(config)
    decoder = OrtBackend(build_graph(config, weights, MAX_LEN).SerializeToString(), config, MAX_LEN, threads=1)
    return decoder, LlamaReference(config, weights), weights


def tokens_for(config, n, seed=0):
    return np.random.default_rng(seed).integers(0, config.vocab_size, n)


def test_prefill_and_decode_match_reference(pair):
    decoder, ref, _ = pair
    tokens = tokens_for(ref.config, 20)
    expected = ref.forward(tokens)
    got = np.concatenate([decoder.forward(tokens[:9])] + [decoder.forward(tokens[i:i + 1]) for i in range(9, 14)]
                         + [decoder.forward(tokens[14:])])
    assert decoder.cache_len == 20
    assert np.abs(got - expected).max() <= TOL


def test_logits_index_returns_only_requested_rows(pair):
    decoder, ref, _ = pair
    tokens = tokens_for(ref.config, 10)
    got = decoder.forward(tokens, logits_for=[9, 3])
    assert got.shape == (2, ref.config.vocab_size)
    expected = ref.forward(tokens)
    assert np.abs(got - expected[[9, 3]]).max() <= TOL


def test_rollback_is_bit_identical(pair):
    decoder, ref, _ = pair
    tokens = tokens_for(ref.config, 16)
    decoder.forward(tokens[:8])
    before = decoder.forward(tokens[8:9])
    decoder.rollback(1)
    decoder.forward(tokens[8:15])  # 7 speculative tokens
    decoder.rollback(7)
    after = decoder.forward(tokens[8:9])
    np.testing.assert_array_equal(after, before)


def test_tree_mask_nodes_equal_their_paths(pair):
    decoder, ref, _ = pair
    prefix = tokens_for(ref.config, 6, seed=1)
    parents = [-1, 0, 1, 0, 1, 3]  # 0->1->2, 0->3->5, 1->4
    nodes = tokens_for(ref.config, len(parents), seed=2)
    depth, mask = tree_layout(parents)
    decoder.forward(prefix)
    tree_logits = decoder.forward(nodes, positions=len(prefix) + depth, tree_mask=mask)
    for i in range(len(nodes)):
        alone = ref.forward(np.concatenate([prefix, nodes[root_path(parents, i)]]))[-1]
        assert np.abs(tree_logits[i] - alone).max() <= TOL, f"node {i}"


def test_layer_mask_skips_a_layer(pair):
    decoder, ref, weights = pair
    c = ref.config
    skip = 1
    kept = [i for i in range(c.num_layers) if i != skip]
    renumbered = {k: v for k, v in weights.items() if not k.startswith("layers.")}
    for new, old in enumerate(kept):
        renumbered.update({k.replace(f"layers.{old}.", f"layers.{new}.", 1): v
                           for k, v in weights.items() if k.startswith(f"layers.{old}.")})
    shallow = LlamaReference(dataclasses.replace(c, num_layers=len(kept)), renumbered)
    tokens = tokens_for(c, 7)
    mask = np.ones(c.num_layers, dtype=bool)
    mask[skip] = False
    got = decoder.forward(tokens, plan=mask)
    assert np.abs(got - shallow.forward(tokens)).max() <= TOL
    # The skipped layer's cache was not written; the full model still works after a rollback.
    decoder.rollback(len(tokens))
    assert np.abs(decoder.forward(tokens) - ref.forward(tokens)).max() <= TOL


@pytest.mark.parametrize("path", [[0, 1, 2], [0, 3, 5]])
def test_keep_compacts_an_accepted_tree_path(pair, path):
    decoder, ref, _ = pair
    prefix = tokens_for(ref.config, 6, seed=1)
    parents = [-1, 0, 1, 0, 1, 3]
    nodes = tokens_for(ref.config, len(parents), seed=2)
    depth, mask = tree_layout(parents)
    decoder.forward(prefix)
    decoder.forward(nodes, positions=len(prefix) + depth, tree_mask=mask)
    decoder.keep(path)  # the accepted root-to-leaf path
    assert decoder.cache_len == len(prefix) + len(path)
    nxt = tokens_for(ref.config, 1, seed=3)
    expected = ref.forward(np.concatenate([prefix, nodes[path], nxt]))[-1]
    assert np.abs(decoder.forward(nxt)[0] - expected).max() <= TOL


def test_unknown_and_missing_devices_are_named():
    from edgespec.errors import EdgespecError
    from edgespec.runtimes.ort import providers_for

    assert providers_for("cpu") == ["CPUExecutionProvider"]
    with pytest.raises(EdgespecError, match="unknown device 'tpu'; known devices: cpu, xnnpack"):
        providers_for("tpu")
    with pytest.raises(EdgespecError, match="QNNExecutionProvider.*it has: .*CPUExecutionProvider"):
        providers_for("qnn")


def test_memory_report(pair):
    decoder, ref, _ = pair
    m = decoder.memory()
    c = ref.config
    assert m["kv_per_token"] == 2 * c.num_layers * c.num_kv_heads * c.head_dim * 4
    assert m["kv_allocated"] == m["kv_per_token"] * MAX_LEN and m["weights"] > 0 and m["rss"] > 0
