"""The ONNX decoder graph against the numpy reference (fp32), through the ORT session harness."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from edgespec.models.llama.reference import LlamaReference
from edgespec.models.llama.graph import build_graph
from edgespec.models.onnx_builder import gemm_linear
from edgespec.quant import int4
from edgespec.quant.linear import QuantizedLinear
from edgespec.runtimes.ort import OrtBackend

from .tiny import TINY_CONFIGS, random_weights, root_path, tree_layout

MAX_LEN = 64
TOL = 1e-3


@pytest.fixture(params=sorted(TINY_CONFIGS))
def pair(request):
    config = TINY_CONFIGS[request.param]
    weights = random_weights(config)
    # with layer plans (an If per middle layer): the plan tests below skip layers through them
    decoder = OrtBackend(build_graph(config, weights, MAX_LEN, layer_plans=True).SerializeToString(), config, MAX_LEN,
                         threads=1)
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


def test_logits_past_the_backends_buffer_come_from_onnxruntime_and_returned_logits_are_not_overwritten(pair,
                                                                                                     monkeypatch):
    import edgespec.runtimes.ort as ort_runtime

    decoder, ref, _ = pair
    tokens = tokens_for(ref.config, 12)
    expected = ref.forward(tokens)
    monkeypatch.setattr(ort_runtime, "LOGITS_BUFFER_ROWS", 4)  # 9 rows: onnxruntime's own output
    first = decoder.forward(tokens[:9])
    rows = [decoder.forward(tokens[i:i + 1]) for i in range(9, 12)]  # 1 row each: the backend's buffer
    assert np.abs(first - expected[:9]).max() <= TOL
    assert np.abs(np.concatenate(rows) - expected[9:]).max() <= TOL  # each pass's rows kept, not the last pass's


def test_one_token_passes_reuse_bound_inputs_and_equal_the_general_path_bit_for_bit(pair):
    """A one-token pass writes its inputs in place (OrtBackend._forward_one); the same pass through the general
    path (a [[True]] tree mask) gives the same logits, whatever wider passes rebound in between."""
    decoder, ref, _ = pair
    tokens = tokens_for(ref.config, 12)
    expected = ref.forward(tokens)
    decoder.forward(tokens[:5])
    for i in range(5, 11):
        bound = decoder.forward(tokens[i:i + 1])
        decoder.rollback(1)
        general = decoder.forward(tokens[i:i + 1], tree_mask=[[True]])
        np.testing.assert_array_equal(bound, general)
        assert np.abs(bound[0] - expected[i]).max() <= TOL
        if i % 2:  # a wider pass between two one-token passes
            decoder.forward(tokens[i + 1:i + 3], logits_for=[1])
            decoder.rollback(2)
    assert decoder.cache_len == 11
    again = decoder.forward(tokens[11:12], positions=[11])
    assert np.abs(again[0] - expected[11]).max() <= TOL


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


def without_layers(c, weights, skip) -> LlamaReference:
    """The reference model with the layers `skip` taken out (what a layer plan skipping them computes)."""
    kept = [i for i in range(c.num_layers) if i not in skip]
    renumbered = {k: v for k, v in weights.items() if not k.startswith("layers.")}
    for new, old in enumerate(kept):
        renumbered.update({k.replace(f"layers.{old}.", f"layers.{new}.", 1): v
                           for k, v in weights.items() if k.startswith(f"layers.{old}.")})
    return LlamaReference(dataclasses.replace(c, num_layers=len(kept)), renumbered)


def test_only_the_middle_layers_are_if_nodes_and_only_they_can_be_skipped():
    """An If costs ~0.1 ms per pass whatever its layer does: the graph wraps the skippable (middle) layers only,
    inlines the others, and a plan that would skip an inlined layer is refused, naming it."""
    from edgespec.errors import EdgespecError
    from edgespec.models.contract import manifest_entry, skippable_layers

    c = dataclasses.replace(TINY_CONFIGS["llama"], num_layers=8)
    weights = random_weights(c)
    graph = build_graph(c, weights, MAX_LEN, layer_plans=True)
    assert skippable_layers(8) == [2, 3, 4, 5] == manifest_entry(c, layer_plans=True)["skippable_layers"]
    assert [n.output[0] for n in graph.graph.node if n.op_type == "If"] == [f"h.{i}" for i in (2, 3, 4, 5)]
    decoder = OrtBackend(graph.SerializeToString(), c, MAX_LEN, threads=1)
    tokens = tokens_for(c, 7)
    assert np.abs(decoder.forward(tokens) - LlamaReference(c, weights).forward(tokens)).max() <= TOL
    decoder.rollback(len(tokens))
    plan = np.ones(8, dtype=bool)
    plan[[3, 4]] = False
    assert np.abs(decoder.forward(tokens, plan=plan) - without_layers(c, weights, {3, 4}).forward(tokens)).max() <= TOL
    plan[[0, 7]] = False
    with pytest.raises(EdgespecError, match=r"names layers \[0, 7\]; a layer plan of this 8-layer model may skip "
                                            r"layers 2\.\.5"):
        decoder.forward(tokens, plan=plan)


def test_layer_mask_skips_a_layer(pair):
    decoder, ref, weights = pair
    c = ref.config
    skip = 1
    shallow = without_layers(c, weights, {skip})
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


def test_kv_is_written_in_place_and_skipped_layers_are_untouched(pair):
    decoder, ref, _ = pair
    tokens = tokens_for(ref.config, 8)
    decoder.forward(tokens[:5])
    before = [buffer.copy() for buffer in decoder.kv]
    assert all(b[:, :, :5].any() and not b[:, :, 5:].any() for b in before)
    decoder.forward(tokens[5:8])  # present_* is the past_* buffer: rows [5, 8) appear in the numpy arrays
    for old, new in zip(before, decoder.kv):
        np.testing.assert_array_equal(new[:, :, :5], old[:, :, :5])
        assert new[:, :, 5:8].all(axis=-1).any() and not new[:, :, 8:].any()
    decoder.rollback(3)
    before = [buffer.copy() for buffer in decoder.kv]
    plan = np.ones(ref.config.num_layers, dtype=bool)
    plan[1] = False
    decoder.forward(tokens_for(ref.config, 2, seed=9), plan=plan)  # new tokens where the rolled-back ones were
    np.testing.assert_array_equal(decoder.kv[2], before[2])  # layer 1's K and V: not written, not copied
    np.testing.assert_array_equal(decoder.kv[3], before[3])
    assert not np.array_equal(decoder.kv[0], before[0])  # layer 0 did write its rows


def _run_fresh(model_bytes, config, ids, extra=None):
    """One call on an empty cache with plain session.run (extra_embeds [1, 0, d] unless given)."""
    import onnxruntime as ort

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    T = len(ids) + (0 if extra is None else len(extra))
    bias = np.where(np.tri(T, dtype=bool), 0, -np.inf).astype(np.float32)[None, None]
    feeds = {"input_ids": np.asarray(ids, np.int64)[None], "position_ids": np.arange(T)[None],
             "attention_bias": bias, "seqlens_k": np.array([T - 1], np.int32),
             "total_sequence_length": np.array(T, np.int32), "logits_index": np.arange(T)}
    if any(i.name == "layer_mask" for i in session.get_inputs()):
        feeds["layer_mask"] = np.ones(config.num_layers, dtype=bool)
    if any(i.name == "extra_embeds" for i in session.get_inputs()):
        feeds["extra_embeds"] = np.zeros((1, 0, config.hidden_size), np.float32) if extra is None else \
            np.asarray(extra, np.float32)[None]
    for i in range(config.num_layers):
        for kind in ("key", "value"):
            feeds[f"past_{kind}.{i}"] = np.zeros((1, config.num_kv_heads, MAX_LEN, config.head_dim), np.float32)
    return session.run(["logits"], feeds)[0]


@pytest.mark.parametrize("arch", sorted(TINY_CONFIGS))
def test_new_rows_are_the_rows_the_pass_wrote_and_a_longer_past_reads_only_its_valid_rows(arch):
    """What the JS engine's AppendedKv relies on (android_demo/engine/backend/kv.js): past_* fed at a capacity
    beyond the P valid rows (stale rows after them), never bound as present_*; new_* return the T new rows."""
    import onnxruntime as ort

    config = TINY_CONFIGS[arch]
    weights = random_weights(config)
    session = ort.InferenceSession(build_graph(config, weights, MAX_LEN, extra_embeds=True,
                                               new_rows=True).SerializeToString(), providers=["CPUExecutionProvider"])
    L, kv, hd = config.num_layers, config.num_kv_heads, config.head_dim
    tokens = tokens_for(config, 9)
    names = [f"{kind}.{i}" for i in range(L) for kind in ("key", "value")]

    def run(ids, P, past):
        T = len(ids)
        bias = np.zeros((1, 1, T, P + T), np.float32)
        bias[0, 0, :, P:] = np.where(np.tri(T, dtype=bool), 0, -np.inf)
        feeds = {"input_ids": np.asarray(ids, np.int64)[None], "position_ids": np.arange(P, P + T)[None],
                 "attention_bias": bias, "seqlens_k": np.array([P + T - 1], np.int32),
                 "total_sequence_length": np.array(P + T, np.int32), "logits_index": np.arange(T),
                 "extra_embeds": np.zeros((1, 0, config.hidden_size), np.float32),
                 **{f"past_{n}": past[j] for j, n in enumerate(names)}}
        out = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
        return out["logits"], [out[f"present_{n}"] for n in names], [out[f"new_{n}"] for n in names]

    empty = [np.zeros((1, kv, 0, hd), np.float32)] * len(names)
    _, present, new = run(tokens[:6], 0, empty)
    for p, n in zip(present, new):
        np.testing.assert_array_equal(n, p[:, :, 0:6])
    exact = present  # 6 rows
    stale = [np.concatenate([p, np.full((1, kv, 20, hd), 7.0, np.float32)], axis=2) for p in present]  # 26 rows
    logits_exact, present_exact, new_exact = run(tokens[6:9], 6, exact)
    logits_long, _, new_long = run(tokens[6:9], 6, stale)
    np.testing.assert_array_equal(logits_long, logits_exact)
    expected = LlamaReference(config, weights).forward(tokens)[6:9]
    assert np.abs(logits_long - expected).max() <= TOL
    for pe, ne, nl in zip(present_exact, new_exact, new_long):
        assert nl.shape == (1, kv, 3, hd)
        np.testing.assert_array_equal(nl, ne)
        np.testing.assert_array_equal(ne, pe[:, :, 6:9])


def test_extra_embeds_are_appended_after_the_tokens():
    config = TINY_CONFIGS["qwen2"]
    weights = random_weights(config)
    model = build_graph(config, weights, MAX_LEN, extra_embeds=True).SerializeToString()
    tokens = tokens_for(config, 9)
    expected = LlamaReference(config, weights).forward(tokens)
    assert np.abs(_run_fresh(model, config, tokens) - expected).max() <= TOL  # E = 0: no extra rows
    got = _run_fresh(model, config, tokens[:6], extra=weights["embed"][tokens[6:]])
    assert np.abs(got - expected).max() <= TOL


@pytest.mark.realmodel
def test_smollm2_fp32_graph_matches_reference(smollm2_gguf):
    from edgespec.formats import open_weights

    source = open_weights(smollm2_gguf)
    weights = {name: source.tensor(name) for name in source.names()}
    decoder = OrtBackend(build_graph(source.config, weights, MAX_LEN).SerializeToString(), source.config, MAX_LEN)
    ref = LlamaReference(source.config, weights, materialize=False)
    tokens = tokens_for(source.config, 24)
    expected = ref.forward(tokens)
    got = np.concatenate([decoder.forward(tokens[:16])] + [decoder.forward(tokens[i:i + 1]) for i in range(16, 20)]
                         + [decoder.forward(tokens[20:])])
    diff = np.abs(got - expected).max()
    logging.getLogger(__name__).info("smollm2 fp32 graph vs reference: max abs logit diff %.3g", diff)
    assert diff <= TOL


def test_unknown_and_missing_devices_are_named():
    from edgespec.errors import EdgespecError
    from edgespec.runtimes.ort import providers_for

    assert providers_for("cpu") == ["CPUExecutionProvider"]
    with pytest.raises(EdgespecError, match="unknown device 'tpu'; known devices: cpu, xnnpack"):
        providers_for("tpu")
    # coreml is never in a Linux build (qnn can be: onnxruntime-qnn registers its plugin provider in-process)
    with pytest.raises(EdgespecError, match="CoreMLExecutionProvider.*it has: .*CPUExecutionProvider"):
        providers_for("coreml")


def test_memory_report(pair):
    decoder, ref, _ = pair
    m = decoder.memory()
    c = ref.config
    assert m["kv_per_token"] == 2 * c.num_layers * c.num_kv_heads * c.head_dim * 4
    assert m["kv_allocated"] == m["kv_per_token"] * MAX_LEN and m["weights"] > 0 and m["rss"] > 0


class _FloatSource:
    """A weights source without GGUF blocks: QuantizedLinear requantizes every weight."""

    def __init__(self, config, weights):
        self.config, self.weights = config, weights

    def tensor(self, name):
        return self.weights[name]


@pytest.mark.parametrize("arch", sorted(TINY_CONFIGS))
def test_int4_graph_with_and_without_layer_plans_matches_dequantized_reference(arch):
    """Stacked q/k/v (packed into GroupQueryAttention, biases inside MatMulNBits) and gate/up, with the
    layers in If nodes or inlined: both equal the reference run on the dequantized int4 weights."""
    config = TINY_CONFIGS[arch]
    weights = random_weights(config)
    dequantized = dict(weights)
    for name in weights:
        if name.startswith("layers.") and weights[name].ndim == 2:
            dequantized[name] = int4.dequantize(int4.quantize(weights[name], 32))
    tokens = tokens_for(config, 12)
    expected = LlamaReference(config, dequantized).forward(tokens)
    got = {}
    for plans in (True, False):
        linear = QuantizedLinear(_FloatSource(config, weights), 4, 32, accuracy_level=0)
        graph = build_graph(config, weights, MAX_LEN, linear=linear, lm_head_linear=gemm_linear, layer_plans=plans)
        assert sum(n.op_type == "If" for n in graph.graph.node) == (config.num_layers if plans else 0)
        decoder = OrtBackend(graph.SerializeToString(), config, MAX_LEN, threads=1)
        assert decoder.supports_plan() == plans
        got[plans] = np.concatenate([decoder.forward(tokens[:8]), decoder.forward(tokens[8:9]),
                                     decoder.forward(tokens[9:])])
        assert np.abs(got[plans] - expected).max() <= TOL
    if config.attention_bias:  # the q/k/v biases went into the stacked MatMulNBits, no Add for them;
        ops = [n.op_type for n in build_graph(config, weights, MAX_LEN, linear=linear, layer_plans=False).graph.node]
        # inlined, every residual add is fused with the norm that follows it (the next layer's, or the final)
        assert ops.count("Add") == 0 and ops.count("RMSNormalization") == 1
        assert ops.count("SkipSimplifiedLayerNormalization") == 2 * config.num_layers
        assert ops.count("MatMulNBits") == 4 * config.num_layers + 1
    np.testing.assert_allclose(got[True], got[False], rtol=1e-5, atol=1e-4)  # fused norms round differently
