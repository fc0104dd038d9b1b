"""Error-aware requantization (GPTQ), the int8 offset term, and precision planned under a bytes budget."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from edgespec.errors import EdgespecError
from edgespec.export.pipeline import ExportOptions
from edgespec.export.precision import PROJECTIONS, BudgetBelowLeastError, group_of, plan_precision
from edgespec.formats import open_weights
from edgespec.quant import int4
from edgespec.quant.gptq import gptq_int4, hessian, inverse_factor, output_error
from edgespec.quant.linear import QuantizedLinear, fold_offset, offset_int8
from edgespec.quant.recipe import RECIPES, Recipe, int4_bytes, packed_bytes, peer_int4_bytes

from .test_formats import write_tiny_hf
from .test_quant import run_matmulnbits
from .tiny import TINY_CONFIGS, random_weights


def correlated(rng, t: int, k: int) -> np.ndarray:
    """Activations with correlated channels and a few large ones, as a transformer's are."""
    x = rng.standard_normal((t, k)) @ rng.standard_normal((k, k)) * 0.1
    x[:, :4] *= 10
    return x.astype(np.float32)


def test_inverse_factor_is_the_upper_cholesky_of_the_damped_inverse():
    h = hessian(np.random.default_rng(0).standard_normal((300, 64)))
    u, dead = inverse_factor(h, damp=0.1)
    damped = h + 0.1 * np.mean(np.diag(h)) * np.eye(64)
    np.testing.assert_allclose(u.T @ u, np.linalg.inv(damped), rtol=1e-4, atol=1e-7)
    assert np.all(np.tril(u, -1) == 0) and not dead.any()


@pytest.mark.parametrize("block, symmetric", [(16, False), (32, False), (64, False), (128, False), (32, True),
                                              (128, True)])
def test_gptq_packs_for_matmulnbits_and_beats_round_to_nearest_on_held_out_rows(block, symmetric):
    rng = np.random.default_rng(block)
    w = rng.standard_normal((96, 256)).astype(np.float32)
    # an outlier late in every block: a block's range must come from all of its columns (blocks wider than
    # GPTQ's 32-column lazy batch once took it from their first half: 2x round-to-nearest's error at 64 and 128)
    w[:, block - 3::block] *= 8
    x = correlated(rng, 1400, 256)
    fit, held_out = x[:1024], x[1024:]
    packed = gptq_int4(w, hessian(fit), block, symmetric=symmetric)
    assert (packed.zero_points is None) == symmetric  # symmetric: onnxruntime-genai's format, the implied 8
    # the layout is MatMulNBits': onnxruntime computes x @ dequantize(packed)^T
    np.testing.assert_allclose(run_matmulnbits(packed, held_out), held_out @ int4.dequantize(packed).T,
                               rtol=1e-4, atol=1e-3)
    gptq = output_error(held_out, w, int4.dequantize(packed))
    rtn = output_error(held_out, w, int4.dequantize(int4.quantize(w, block, symmetric)))
    assert gptq < 0.8 * rtn, (gptq, rtn)
    assert packed_bytes(packed) == int4_bytes(96, 256, block, zero_points=not symmetric)


def test_dead_inputs_are_zeroed_not_divided_by():
    rng = np.random.default_rng(1)
    x = correlated(rng, 512, 64)
    x[:, 5] = 0  # an input that never fires
    packed = gptq_int4(rng.standard_normal((8, 64)).astype(np.float32), hessian(x))
    assert np.isfinite(int4.dequantize(packed)).all()


def test_int8_offset_term_runs_in_onnxruntime():
    """Q4_1 / Q4_K's per-block offset [N, K/32] as an int8 MatMulNBits over the block sums; K/32 = 18 is
    not a multiple of the 16-wide int8 block (rows are zero-padded)."""
    rng = np.random.default_rng(2)
    offset = rng.standard_normal((40, 18)).astype(np.float32)
    sums = rng.standard_normal((3, 18)).astype(np.float32)
    q = offset_int8(offset)
    exact = sums @ offset.T
    got = run_matmulnbits(q, sums, accuracy_level=0)
    assert np.abs(got - exact).max() <= 0.01 * np.abs(exact).max()


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory):
    config = TINY_CONFIGS["qwen2"]
    directory = tmp_path_factory.mktemp("tiny") / "hf"
    write_tiny_hf(directory, config, random_weights(config))
    return open_weights(directory)


def least_budget(make_plan) -> int:
    """The least bytes per token a plan can read, from the refusal of a budget below it (made before calibrating)."""
    with pytest.raises(BudgetBelowLeastError, match=r"--bytes-budget 0.0 MB is below the least this model can read") \
            as refused:
        make_plan(1)
    return refused.value.least


def plan(source, budget_factor=None, bytes_budget=None, cache_file=None, symmetric=False):
    recipe = Recipe("test", "tiny", budget_factor or 1.1, calib_tokens=160, kl_tokens=32, top_k=8, symmetric=symmetric)
    tokens = np.random.default_rng(3).integers(0, source.config.vocab_size, 160)
    linear = QuantizedLinear(source, 8, 32, 4, int8_offsets=True)
    return plan_precision(source, tokens, recipe, linear, linear, bytes_budget, cache_file=cache_file)


def test_plan_keeps_high_precision_by_measured_kl_within_the_budget(tiny_source):
    c = tiny_source.config
    everything = plan(tiny_source, bytes_budget=10**9)
    summary = everything.summary
    groups = sorted({group_of(i, p) for i in range(c.num_layers) for p in PROJECTIONS.values()}) + ["lm_head"]
    assert sorted(summary["groups_kept_high"]) == sorted(groups) and not everything.int4
    assert all(summary["group_int4_kl"][g] > 0 for g in groups)  # measured, not assumed
    nothing = plan(tiny_source, bytes_budget=summary["all_int4_bytes"])
    assert nothing.summary["groups_kept_high"] == [] and nothing.summary["bytes_per_token"] <= nothing.summary["budget_bytes"]
    assert set(nothing.int4) == {n for n in nothing.tensors}  # float source: every weight is requantizable
    # a budget for exactly one raised group: the one with the most KL saved per byte is raised
    low, high = nothing.summary["bytes_per_token"], summary["bytes_per_token"]
    one = plan(tiny_source, bytes_budget=low + (high - low) // len(groups) + 1)
    assert one.summary["bytes_per_token"] <= one.summary["budget_bytes"]
    assert sum(r["bytes"] for r in one.tensors.values()) == one.summary["bytes_per_token"]
    for name, record in one.tensors.items():
        assert record["choice"] in ("high", "int4") and "group_int4_kl" in record and record["bytes"] > 0
        assert (record["choice"] == "int4") == (name in one.int4)
        assert record["int4_method"] == "gptq"  # 128 calibration rows >= 96 inputs (ffn_down: 128)


def test_a_symmetric_recipe_plans_int4_without_zero_points_and_counts_their_bytes(tiny_source, tmp_path):
    """`compact`'s kind of recipe: every requantized weight symmetric (genai's format); the least a plan can read
    is then the symmetric count, and it is what the all-int4 plan reads. Its calibration is cached and reused."""
    def symmetric_plan(budget):
        return plan(tiny_source, bytes_budget=budget, cache_file=tmp_path / "symmetric.npz", symmetric=True)

    least = least_budget(symmetric_plan)
    low, again = symmetric_plan(least), symmetric_plan(least)  # calibrated, then read from the cache
    assert low.int4 and all(p.zero_points is None for p in low.int4.values())
    assert all(np.array_equal(again.int4[n].blob, p.blob) and again.int4[n].zero_points is None
               for n, p in low.int4.items())
    assert low.summary["bytes_per_token"] == least < least_budget(lambda budget: plan(tiny_source, bytes_budget=budget))
    assert RECIPES["compact"].symmetric and RECIPES["compact"].budget <= 1.0  # no more bytes than genai's model


def test_recipe_options_are_checked():
    assert set(RECIPES) >= {"faithful", "balanced", "fast"}
    with pytest.raises(EdgespecError, match="recipe 'tiny' is not one of"):
        ExportOptions(recipe="tiny").check()
    with pytest.raises(EdgespecError, match="--lm-head applies to --recipe faithful"):
        ExportOptions(lm_head="int4").check()
    with pytest.raises(EdgespecError, match="--bytes-budget"):
        ExportOptions(recipe="faithful", bytes_budget=10**8).check()
    ExportOptions(recipe="faithful", lm_head="int4").check()


def test_four_bit_gguf_levels_are_kept_exact_and_wider_ones_requantized(tmp_path):
    """Q4_0 / Q4_1 weights go over exactly, never requantized whatever the budget; Q5_0 and Q8_0 weights are
    GPTQ int4 candidates. (Q4_K too is kept: gguf.quants cannot write it, the real qwen GGUFs test it.)"""
    import gguf

    from .test_formats import write_tiny_gguf

    Q = gguf.GGMLQuantizationType
    config = TINY_CONFIGS["llama"]
    qtypes = {"layers.0.q": Q.Q4_1, "layers.0.k": Q.Q4_0, "layers.0.gate": Q.Q5_0, "layers.1.up": Q.Q8_0}
    write_tiny_gguf(tmp_path / "m.gguf", config, random_weights(config), quantized=qtypes)
    source = open_weights(tmp_path / "m.gguf")
    assert {n: source.raw(n).qtype.name for n in qtypes} == {n: t.name for n, t in qtypes.items()}
    least = least_budget(lambda budget: plan(source, bytes_budget=budget))
    for budget in (least, 10**9):  # nothing raised / everything raised
        p = plan(source, bytes_budget=budget)
        for name in ("layers.0.q", "layers.0.k"):
            assert name not in p.int4 and p.tensors[name]["choice"] == "high"
            assert "group_int4_kl" not in p.tensors[name]  # not a candidate: never measured
    low = plan(source, bytes_budget=least)
    assert low.summary["bytes_per_token"] == least  # the least is what the all-int4 plan reads
    assert {"layers.0.gate", "layers.1.up"} <= set(low.int4)


def test_a_cached_calibration_of_other_groups_is_made_again_not_trusted(tiny_source, tmp_path):
    """A calibration cached by a version that grouped weights otherwise (same cache key) must not crash the
    export or be used: it is redone."""
    from edgespec.export import precision

    cache = tmp_path / "calibration.npz"
    first = plan(tiny_source, cache_file=cache)
    int4, kl, measured, vocab = precision._load(cache)
    precision._save(cache, int4, {f"{g} attn_in": v for g, v in kl.items()}, measured, vocab)
    again = plan(tiny_source, cache_file=cache)
    assert again.summary["group_int4_kl"] == first.summary["group_int4_kl"]
    assert set(precision._load(cache)[1]) == set(kl)  # rewritten with this version's groups


def test_lm_head_rows_are_raised_as_a_prefix_and_computed_in_two_precisions(tiny_source, tmp_path):
    """The lm_head planned in row segments: with room for one segment only the first (lowest ids) is raised;
    the graph's logits are the high route's on rows 0-31 and the int4 weight's on the others, in token order.
    A plan that may not split (a tied embedding, NPU graphs) reads the same cached calibration."""
    from edgespec.formats import LazyWeights
    from edgespec.models.llama.graph import build_graph
    from edgespec.runtimes.ort import OrtBackend

    c = tiny_source.config
    recipe = Recipe("test", "tiny", 1.1, calib_tokens=160, kl_tokens=32, top_k=8, lm_head_rows=(32, 64))
    tokens = np.random.default_rng(3).integers(0, c.vocab_size, 160)
    cache = tmp_path / "calibration.npz"

    def planned(budget, split=True):
        layers, head = (QuantizedLinear(tiny_source, 8, 32, 4, int8_offsets=True) for _ in range(2))
        p = plan_precision(tiny_source, tokens, recipe, layers, head, budget, cache_file=cache, split_lm_head=split)
        layers.planned, head.planned, head.high_rows = p.int4, p.int4, p.high_rows
        return p, layers, head

    low = planned(least_budget(planned))[0]
    segments = ["lm_head rows 0-31", "lm_head rows 32-63", "lm_head rows 64-100"]
    assert low.summary["groups_int4"][-3:] == segments and not low.high_rows
    high_route = QuantizedLinear(tiny_source, 8, 32, 4).pack("lm_head", planned=False)[0]
    extra = (packed_bytes(int4.take_rows(high_route, slice(0, 32)))
             - packed_bytes(int4.take_rows(low.int4["lm_head"], slice(0, 32))))
    stamp = cache.stat().st_mtime_ns
    one, layers, head = planned(low.summary["bytes_per_token"] + extra)
    assert one.summary["groups_kept_high"] == segments[:1] and one.high_rows == {"lm_head": 32}
    assert one.tensors["lm_head"]["choice"] == "split" and one.tensors["lm_head"]["high_rows"] == 32
    assert one.summary["bytes_per_token"] == low.summary["bytes_per_token"] + extra
    assert sum(r["bytes"] for r in one.tensors.values()) == one.summary["bytes_per_token"]
    whole = planned(low.summary["bytes_per_token"] + extra, split=False)[0]
    assert "lm_head" in whole.summary["group_int4_kl"] and not whole.high_rows
    assert cache.stat().st_mtime_ns == stamp  # both kinds of plan from one calibration

    def logits(head_linear):
        graph = build_graph(c, LazyWeights(tiny_source), 64, linear=layers, lm_head_linear=head_linear)
        decoder = OrtBackend(graph.SerializeToString(), c, 64, threads=1)
        return decoder.forward(list(tokens[:12]))

    split = logits(head)
    assert any(n.op_type == "Concat" for n in build_graph(c, LazyWeights(tiny_source), 64, linear=layers,
                                                          lm_head_linear=head).graph.node)
    all_int4 = QuantizedLinear(tiny_source, 8, 32, 4, planned=one.int4)
    all_high = QuantizedLinear(tiny_source, 8, 32, 4)
    np.testing.assert_allclose(split[:, :32], logits(all_high)[:, :32], atol=1e-4)
    np.testing.assert_allclose(split[:, 32:], logits(all_int4)[:, 32:], atol=1e-4)
    assert np.abs(split - logits(all_int4)).max() > 1e-3  # the two routes differ: the test can tell them apart


def test_gptq_refuses_a_block_that_does_not_divide_the_inputs_as_round_to_nearest_does():
    w, x = np.ones((4, 96), np.float32), np.ones((200, 96), np.float32)
    for quantize_with in (lambda: int4.quantize(w, 64), lambda: gptq_int4(w, hessian(x), 64)):
        with pytest.raises(EdgespecError, match="K=96 columns cannot be split into int4 blocks of 64"):
            quantize_with()


def test_the_budget_is_relative_to_onnxruntime_genais_int4_bytes(tiny_source):
    """balanced's budget: 1.0975x what onnxruntime-genai's int4 model reads (symmetric int4, fp32 scales, its RoPE
    caches over the whole context), less what the bench counts beside our planned weights."""
    c = tiny_source.config
    made = plan(tiny_source, budget_factor=1.0975).summary
    matmuls = sum(n * k // 2 + n * (k // 32) * 4 for n, k in stacked_shapes(c))  # 4-bit levels + an fp32 scale per 32
    assert made["genai_int4_bytes"] == matmuls + peer_fixed(c)
    assert made["budget_bytes"] == int(1.0975 * made["genai_int4_bytes"]) - made["bytes_beside_plan"]
    # a tiny model's RoPE table (4096 positions) is more than the 9.5% margin: below the least plan, nothing raised
    assert made["budget_bytes"] < made["bytes_per_token"] and made["groups_kept_high"] == []


def stacked_shapes(c) -> list[tuple[int, int]]:
    """[n, k] of every projection as genai's builder stacks them (q/k/v, o, gate/up, down) and of the lm_head."""
    q, kv = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
    return [(q + 2 * kv, c.hidden_size), (c.hidden_size, q), (2 * c.intermediate_size, c.hidden_size),
            (c.hidden_size, c.intermediate_size)] * c.num_layers + [(c.vocab_size, c.hidden_size)]


def peer_fixed(c) -> int:
    rope = 2 * c.max_position_embeddings * (c.head_dim // 2) * 4
    biases = c.num_layers * (c.num_heads + 2 * c.num_kv_heads) * c.head_dim if c.attention_bias else 0
    return rope + 4 * ((2 * c.num_layers + 1) * c.hidden_size + biases)


def test_the_genai_estimate_matches_its_builders_model_of_smollm2(smollm2_gguf):
    """peer_int4_bytes against the model onnxruntime-genai 0.18.0's builder made of this GGUF (`-p int4`,
    benchmarks/plain-decode.md): 86,287,616 bytes of initializers (its model.onnx.data, 2026-12-06)."""
    c = open_weights(smollm2_gguf).config
    assert peer_int4_bytes(stacked_shapes(c), c) == 86_287_616


def test_raised_five_to_eight_bit_levels_are_reblocked_to_int8_and_run_as_the_gguf_does(tmp_path):
    """int8_block: Q5_0 / Q5_1 / Q8_0 levels (blocks of 32, Q5_1 with an offset term) stored as int8 in the widest
    block <= 128 that divides K, without an offset term; onnxruntime's MatMulNBits on them stays within a small
    part of one GGUF step of the GGUF weight's product. Where no wider block fits and there is no offset term to
    fold, the levels are kept exactly. Without int8_block they are always kept exactly."""
    import gguf

    from .test_formats import write_tiny_gguf

    Q = gguf.GGMLQuantizationType
    config = TINY_CONFIGS["llama"]  # hidden 64, intermediate 96: K = 64 for gate/up, 96 for down
    qtypes = {"layers.0.gate": Q.Q5_0, "layers.0.up": Q.Q5_1, "layers.1.down": Q.Q8_0, "layers.2.down": Q.Q5_1}
    write_tiny_gguf(tmp_path / "m.gguf", config, random_weights(config), quantized=qtypes)
    source = open_weights(tmp_path / "m.gguf")
    rng = np.random.default_rng(0)
    for name in qtypes:
        weight = source.tensor(name)  # the GGUF's own dequantized levels
        K = weight.shape[1]
        exact, offset = QuantizedLinear(source, 8).pack(name, record=False)
        assert exact.block == 32 and (offset is not None) == (qtypes[name] == Q.Q5_1)
        packed, none = QuantizedLinear(source, 8, int8_block=128).pack(name, record=False)
        assert none is None and packed.bits == 8
        assert packed.block == (64 if K == 64 else 32)
        if name == "layers.1.down":  # Q8_0, K = 96: nothing to gain, kept exactly
            assert np.array_equal(packed.blob, exact.blob) and np.array_equal(packed.scales, exact.scales)
        if K == 64:
            assert packed.blob.nbytes + packed.scales.nbytes < exact.blob.nbytes + exact.scales.nbytes
        step = np.abs(weight).max() / 15  # about one Q5 step of the widest block
        assert np.abs(int4.dequantize(packed) - weight).max() <= step / 8
        x = rng.standard_normal((3, K)).astype(np.float32)
        got = run_matmulnbits(packed, x)
        assert np.allclose(got, x @ weight.T, atol=step / 8 * np.abs(x).sum(1).max())


def test_a_folded_offset_term_runs_as_the_separate_int8_one(tmp_path):
    """fold_offsets: a Q4_1 weight's per-block offset term, folded into its own 4-bit MatMulNBits over [x, s, s]
    (one kernel instead of two and an Add), adds no zero points where the weight has none, and gives the separate
    int8 term's product in onnxruntime, both within a small part of one Q4_1 step of the GGUF weight's. K = 64 and 96 (2 and 3 block
    sums, padded to a whole block of 32), T = 1 and 3 rows; with and without the weight's own zero points."""
    import gguf

    from edgespec.models.onnx_builder import GraphBuilder

    from .test_formats import write_tiny_gguf
    from .test_quant import _run_builder

    Q = gguf.GGMLQuantizationType
    config = TINY_CONFIGS["llama"]  # hidden 64, intermediate 96
    qtypes = {"layers.0.gate": Q.Q4_1, "layers.0.down": Q.Q4_1}
    write_tiny_gguf(tmp_path / "m.gguf", config, random_weights(config), quantized=qtypes)
    source = open_weights(tmp_path / "m.gguf")
    rng = np.random.default_rng(3)

    def run(linear, name, x):
        g = GraphBuilder({})
        linear(g, "x", name, "y")
        return _run_builder(g, x, None), [n.op_type for n in g.nodes]

    for name in qtypes:
        weight = source.tensor(name)
        K = weight.shape[1]
        separate = QuantizedLinear(source, 8, accuracy_level=0, int8_offsets=True)
        folded = QuantizedLinear(source, 8, accuracy_level=0, int8_offsets=True, fold_offsets=True)
        packed, offset = folded.pack(name, record=False)
        assert offset is not None and folded.folds(packed) and packed.zero_points is None
        assert fold_offset(packed, offset).zero_points is None  # Q4_1's implied zero point: none added
        explicit = replace(packed, zero_points=int4.pack_zero_points(np.full((packed.N, K // 32), 8)))
        x = rng.standard_normal((2, K)).astype(np.float32)
        sums = np.zeros((2, 32), np.float32)
        sums[:, :K // 32] = x.reshape(2, -1, 32).sum(-1)
        x_sums = np.concatenate([x, sums, sums], axis=1)
        assert np.allclose(run_matmulnbits(fold_offset(explicit, offset), x_sums),
                           run_matmulnbits(fold_offset(packed, offset), x_sums), atol=1e-5)
        for T in (1, 3):
            x = rng.standard_normal((T, K)).astype(np.float32)
            want, want_ops = run(separate, name, x)
            got, ops = run(folded, name, x)
            assert want_ops.count("MatMulNBits") == 2 and "Add" in want_ops
            assert ops.count("MatMulNBits") == 1 and "Add" not in ops
            step, scale = np.abs(weight).max() / 15, np.abs(x).sum(1, keepdims=True)
            for y in (got, want):
                assert np.all(np.abs(y - x @ weight.T) <= step / 16 * scale)
            # with block sums of one sign a level off in the folded offset would add up: at most half of
            # its step d (max |O| / 119 per row here: one block of groups) per unit of block sum
            positive = np.abs(x)
            half_step = np.abs(offset).max(1) / 119 / 2
            bound = half_step[None, :] * positive.sum(1, keepdims=True) + 1e-5 * np.abs(positive @ weight.T)
            assert np.all(np.abs(run(folded, name, positive)[0] - positive @ weight.T) <= bound)
