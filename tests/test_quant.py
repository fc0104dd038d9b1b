"""int4/int8 MatMulNBits packing, GGUF blocks kept without requantizing, checked in onnxruntime."""

from __future__ import annotations

from types import SimpleNamespace

import gguf
import numpy as np
import onnxruntime as ort
import pytest
from gguf import GGMLQuantizationType as Q
from onnx import TensorProto, helper, numpy_helper

from edgespec.errors import EdgespecError
from edgespec.quant import int4
from edgespec.quant.ggml_blocks import to_matmulnbits


def _model(graph) -> "onnx.ModelProto":
    """A graph of one test as a model onnxruntime runs (opset 21 + com.microsoft)."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    return model


def run_matmulnbits(p: int4.PackedInt4, x: np.ndarray, accuracy_level: int = 0) -> np.ndarray:
    inits = [numpy_helper.from_array(p.blob, "B"), numpy_helper.from_array(p.scales, "s")]
    names = ["x", "B", "s"]
    if p.zero_points is not None:
        inits.append(numpy_helper.from_array(p.zero_points, "zp"))
        names.append("zp")
    node = helper.make_node("MatMulNBits", names, ["y"], domain="com.microsoft", K=p.K, N=p.N, bits=p.bits,
                            block_size=p.block, accuracy_level=accuracy_level)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", p.K])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["T", p.N])], inits)
    model = _model(graph)
    return ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]


@pytest.mark.parametrize("block", int4.BLOCK_SIZES)
@pytest.mark.parametrize("symmetric", [True, False])
def test_pack_round_trip_and_error_bound(block, symmetric):
    w = np.random.default_rng(block).standard_normal((48, 256)).astype(np.float32)
    p = int4.quantize(w, block, symmetric)
    levels = np.random.default_rng(0).integers(0, 16, (48, 256 // block, block))
    np.testing.assert_array_equal(int4.unpack_nibbles(int4.pack_nibbles(levels)), levels)
    deq = int4.dequantize(p)
    bound = np.repeat(np.abs(p.scales).reshape(48, -1), block, axis=1) * (1.0 if symmetric else 0.5) + 1e-6
    assert np.all(np.abs(deq - w) <= bound)  # symmetric clips one level at the top: up to a full step
    # onnxruntime multiplies by exactly this weight (identity input, fp32 accuracy level)
    np.testing.assert_array_equal(run_matmulnbits(p, np.eye(256, dtype=np.float32)).T, deq)


def test_accuracy_level_4_tolerance():
    rng = np.random.default_rng(1)
    w, x = rng.standard_normal((64, 256)).astype(np.float32), rng.standard_normal((5, 256)).astype(np.float32)
    p = int4.quantize(w)
    exact = x @ int4.dequantize(p).T
    got = run_matmulnbits(p, x, accuracy_level=4)  # int8 activations
    rel = np.abs(got - exact).max() / np.abs(exact).max()
    print(f"accuracy level 4: max relative error {rel:.2e}")
    assert rel < 2e-2


def test_bad_block_size_names_both_values():
    with pytest.raises(EdgespecError, match="K=100.*blocks of 32"):
        int4.quantize(np.zeros((4, 100), np.float32), 32)
    with pytest.raises(EdgespecError, match="block size 48"):
        int4.quantize(np.zeros((4, 96), np.float32), 48)


EXACT = [Q.Q4_0, Q.Q8_0, Q.Q5_0]  # no per-group offset: bit-exact
AFFINE = [Q.Q4_1, Q.Q5_1]  # offset term: one float rounding


@pytest.mark.parametrize("qtype", EXACT + AFFINE, ids=lambda t: t.name)
def test_gguf_blocks_convert_without_requantizing(qtype):
    w = np.random.default_rng(2).standard_normal((32, 256)).astype(np.float32)
    raw = gguf.quants.quantize(w, qtype)
    expected = gguf.quants.dequantize(raw, qtype)
    packed, offset = to_matmulnbits(raw, qtype, w.shape)
    x = np.eye(256, dtype=np.float32)
    y = run_matmulnbits(packed, x)
    if offset is not None:  # what the graph adds: (group sums of x) @ offset^T
        y = y + x.reshape(256, -1, packed.block).sum(-1) @ offset.T
    if qtype in EXACT:
        assert offset is None
        np.testing.assert_array_equal(y.T, expected)  # Q4_0 -> MatMulNBits is bit-exact
    else:
        np.testing.assert_allclose(y.T, expected, rtol=0, atol=1e-6 * np.abs(expected).max())


def test_k_quants_convert_on_real_tensors(qwen05_gguf):
    reader = gguf.GGUFReader(qwen05_gguf)
    seen = {}
    for t in reader.tensors:
        if t.tensor_type in (Q.Q4_K, Q.Q6_K) and t.tensor_type not in seen:
            seen[t.tensor_type] = t
    assert set(seen) == {Q.Q4_K, Q.Q6_K}
    for qtype, t in seen.items():
        shape = tuple(int(d) for d in reversed(t.shape))
        packed, offset = to_matmulnbits(np.asarray(t.data), qtype, shape)
        deq = int4.dequantize(packed)
        if offset is not None:
            deq = deq + np.repeat(offset, packed.block, axis=1)
        expected = gguf.quants.dequantize(t.data, qtype).reshape(shape)
        assert np.abs(deq - expected).max() <= 1e-6 * np.abs(expected).max(), qtype.name
        assert packed.bits == (4 if qtype == Q.Q4_K else 8)


class _OneTable:
    """A weights source holding only 'embed' (a GGUF block table, or float)."""

    config = SimpleNamespace(architecture="qwen2")  # no llama Q/K row permutation

    def __init__(self, raw=None, table=None):
        self._raw, self._table = raw, table

    def raw(self, canonical):
        return self._raw

    def tensor(self, canonical):
        return self._table


def run_embedding(source, ids: np.ndarray, embedding=None, lm_head=None) -> tuple[np.ndarray, dict]:
    """The embedding strategy's rows for ids (QuantizedEmbedding by default); with lm_head (a Linear strategy)
    the graph also computes logits = rows @ table^T as the export does -> (rows, report, logits or None)."""
    from edgespec.models.onnx_builder import GraphBuilder
    from edgespec.quant.linear import QuantizedEmbedding

    g = GraphBuilder({})
    embedding = embedding or QuantizedEmbedding(source)
    g.node("Identity", [embedding(g, "ids")], ["rows"])
    outputs = [helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["T", None])]
    if lm_head is not None:
        lm_head(g, "rows", "embed", "logits")
        outputs.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["T", None]))
    graph = helper.make_graph(g.nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["T"])],
                              outputs, g.initializers)
    model = _model(graph)
    got = ort.InferenceSession(model.SerializeToString()).run(None, {"ids": ids})
    return got[0], embedding.report, (got[1] if lm_head is not None else None), model


@pytest.mark.parametrize("qtype", EXACT + AFFINE, ids=lambda t: t.name)
def test_a_quantized_embedding_reads_the_gguf_rows_it_stores(qtype):
    """--embed quantized (the web target): the GGUF's own levels, dequantized per row in the graph, give the
    GGUF's rows, bit for bit where the format has no offset term; nothing is requantized."""
    from edgespec.formats.gguf import RawTensor

    w = np.random.default_rng(3).standard_normal((40, 128)).astype(np.float32)
    raw = gguf.quants.quantize(w, qtype)
    expected = gguf.quants.dequantize(raw, qtype)
    ids = np.array([5, 0, 39, 5, 17])
    rows, report, *_ = run_embedding(_OneTable(RawTensor(qtype, w.shape, raw)), ids)
    assert report["route"] == f"{qtype.name} levels kept" and report["offset_term"] == (qtype in AFFINE)
    if qtype in EXACT:
        np.testing.assert_array_equal(rows, expected[ids])
    else:
        np.testing.assert_allclose(rows, expected[ids], rtol=0, atol=1e-6 * np.abs(expected).max())


@pytest.mark.parametrize("form", ["int4 asymmetric", "int4 odd blocks", "int4 symmetric", "int8"])
def test_a_tied_embedding_reads_its_rows_from_the_lm_heads_weight(form):
    """--embed tied: the rows are the lm_head's quantized weight dequantized ((level - zero point) * scale, the
    4-bit levels and zero points unpacked in the graph), and the table is stored once for both uses."""
    from edgespec.quant.linear import QuantizedLinear, TiedEmbedding

    k = 96 if form == "int4 odd blocks" else 128  # 3 blocks: packed zero points padded to whole bytes
    w = np.random.default_rng(4).standard_normal((40, k)).astype(np.float32)
    table = _OneTable(table=w)
    lm_head = QuantizedLinear(table, 8 if form == "int8" else 4, 32, accuracy_level=0,
                              symmetric=form == "int4 symmetric")
    packed, _ = lm_head.pack("embed", record=False)
    assert (packed.zero_points is None) == (form in ("int4 symmetric", "int8"))
    ids = np.array([5, 0, 39, 5, 17])
    rows, report, logits, model = run_embedding(table, ids, TiedEmbedding(lm_head), lm_head)
    np.testing.assert_array_equal(rows, int4.dequantize(packed)[ids])
    assert report["bytes"] == 0 and report["levels_from_bits"] == packed.bits
    names = [t.name for t in model.graph.initializer]
    assert names.count("embed.qweight") == 1 and len(names) == len(set(names))
    ref = rows @ int4.dequantize(packed).T
    assert np.abs(logits - ref).max() <= 1e-4 * np.abs(ref).max()  # the lm_head read the same table


def test_a_tied_embedding_is_refused_for_an_untied_model_or_an_offset_table():
    from edgespec.models.onnx_builder import GraphBuilder
    from edgespec.formats.gguf import RawTensor
    from edgespec.quant.linear import QuantizedLinear, TiedEmbedding

    rng = np.random.default_rng(5)
    w, other = (rng.standard_normal((8, 64)).astype(np.float32) for _ in range(2))
    with pytest.raises(EdgespecError, match=r"lm_head to be the embedding table; this model's differ by 1\.\d\d"):
        TiedEmbedding(QuantizedLinear(_OneTable(table=w)))(GraphBuilder({"lm_head": other, "embed": w}), "ids")
    q4k = _OneTable(RawTensor(Q.Q4_1, w.shape, gguf.quants.quantize(w, Q.Q4_1)))
    with pytest.raises(EdgespecError, match="per-block offset.*Q4_1/Q4_K"):
        TiedEmbedding(QuantizedLinear(q4k))(GraphBuilder({}), "ids")


def test_a_quantized_embedding_of_real_k_quant_tables(qwen05_gguf):
    from edgespec.formats.gguf import RawTensor

    reader = gguf.GGUFReader(qwen05_gguf)
    tables = {t.tensor_type: t for t in reader.tensors if t.tensor_type in (Q.Q4_K, Q.Q6_K)}
    for qtype, t in tables.items():
        shape = tuple(int(d) for d in reversed(t.shape))
        expected = gguf.quants.dequantize(t.data, qtype).reshape(shape)
        ids = np.array([0, shape[0] - 1, 7])
        rows, report, *_ = run_embedding(_OneTable(RawTensor(qtype, shape, np.asarray(t.data))), ids)
        assert report["levels_from_bits"] == (4 if qtype == Q.Q4_K else 8)
        assert np.abs(rows - expected[ids]).max() <= 1e-6 * np.abs(expected).max(), qtype.name


def test_a_float_embedding_is_quantized_to_int8_blocks():
    w = np.random.default_rng(4).standard_normal((16, 64)).astype(np.float32)
    ids = np.arange(16)
    rows, report, *_ = run_embedding(_OneTable(table=w), ids)
    assert report["levels_from_bits"] == 8 and "int8" in report["route"]
    step = np.abs(w.reshape(16, 2, 32)).max(-1, keepdims=True) / 127  # half a level at most
    assert np.all(np.abs(rows - w).reshape(16, 2, 32) <= step / 2 + 1e-7)


class _Tables:
    """A weights source of several named weights, each a GGUF block tensor (RawTensor) or a float array."""

    config = SimpleNamespace(architecture="qwen2")

    def __init__(self, **weights):
        self._weights = weights

    def raw(self, canonical):
        w = self._weights[canonical]
        return None if isinstance(w, np.ndarray) else w

    def tensor(self, canonical):
        return self._weights[canonical]


def test_weights_of_different_routes_stack_into_one_exact_matmulnbits():
    """qwen's q/k keep their Q4_K levels (implied zero point 8 + offset term) where v is requantized to int4
    with zero points: stacked as one MatMulNBits (explicit zero points of 8 for q/k, an offset of zero for v)
    they give each weight's own product; an 8-bit part cannot join 4-bit ones."""
    from edgespec.formats.gguf import RawTensor
    from edgespec.models.onnx_builder import GraphBuilder
    from edgespec.quant.linear import QuantizedLinear

    rng = np.random.default_rng(6)
    K = 96  # 3 blocks: packed zero points padded to whole bytes per row
    wq, wk, wv, w8 = (rng.standard_normal((n, K)).astype(np.float32) for n in (24, 8, 8, 8))
    source = _Tables(q=RawTensor(Q.Q4_1, wq.shape, gguf.quants.quantize(wq, Q.Q4_1)),
                     k=RawTensor(Q.Q4_1, wk.shape, gguf.quants.quantize(wk, Q.Q4_1)), v=wv,
                     v8=RawTensor(Q.Q8_0, w8.shape, gguf.quants.quantize(w8, Q.Q8_0)))
    linear = QuantizedLinear(source, 4, 32, accuracy_level=0, int8_offsets=True)  # as exports store them
    linear.planned["v"] = int4.quantize(wv, 32, symmetric=False)  # what the precision plan hands over
    assert linear.planned["v"].zero_points is not None
    g = GraphBuilder({})
    assert not linear.stack(g, "x", ["q", "k", "v8"], "never") and not g.nodes  # int4 with int8: not joined
    assert linear.stack(g, "x", ["q", "k", "v"], "y")
    assert [n.op_type for n in g.nodes].count("MatMulNBits") == 2  # the weights and ONE offset term
    x = rng.standard_normal((5, K)).astype(np.float32)
    y = _run_builder(g, x, 40)
    separate = []  # each weight on its own route, as the graph computed them before stacking
    for name in "qkv":
        one = GraphBuilder({})
        linear(one, "x", name, "y")
        separate.append(_run_builder(one, x, None))
    np.testing.assert_allclose(y, np.concatenate(separate, axis=1), rtol=1e-5, atol=1e-5)
    expected = np.concatenate([gguf.quants.dequantize(source.raw("q").data, Q.Q4_1),
                               gguf.quants.dequantize(source.raw("k").data, Q.Q4_1),
                               int4.dequantize(linear.planned["v"])])
    ref = x @ expected.T  # the offset term is stored as int8 (one rounding, as in every export)
    assert np.abs(y - ref).max() <= 2e-2 * np.abs(ref).max()


def _run_builder(g, x: np.ndarray, n) -> np.ndarray:
    graph = helper.make_graph(g.nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", x.shape[1]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["T", n])], g.initializers)
    model = _model(graph)
    return ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
