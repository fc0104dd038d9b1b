"""Static-shape ONNX graphs of the Llama/Qwen2/SmolLM2 family for NPUs (QNN HTP, OpenVINO).

One graph per row bucket T, every shape fixed, the KV cache owned by the host:

  inputs   input_ids [1,T] int32
           rope_cos / rope_sin [1,1,T,hd] float  host RoPE tables: cos = [cos, cos], sin = [-sin, sin]
                                                 (rotate-half folded into the sign, so RoPE is Mul/Add)
           attention_bias [1,1,T,W] float         0 = may attend, MASK_VALUE (finite) = may not, per window slot
           placement [1,1,W,T] float              one-hot: the slot each new row takes (its position)
           past_key.i / past_value.i [1,kv,W,hd]  the host's KV window (this pass's slots zero, stale ones masked)
  outputs  logits [1,T,vocab]                     every row (no dynamic gather of rows)
           new_key.i / new_value.i [1,kv,T,hd]    the new rows' K (RoPE applied) and V only

Ops: Gather (embedding), RMSNormalization, MatMul/Softmax attention (GQA as a reshape of the query
heads into groups), Split/Concat/Mul/Add for RoPE, Sigmoid/Mul for SwiGLU; projections through the
export's Linear strategy on 3-D input: MatMulNBits with fp16 activations for int4/int8 weights (the
form QNN HTP takes) or MatMul on fp16/fp32 weights. No If, no GroupQueryAttention, no contrib norm,
no dynamic shapes: what the QNN HTP backend compiles (measured in tests/test_npu.py).

The contract (names, the mask value, the host's RoPE tables) is models/static_contract.py.
Padding rows (a pass of fewer rows than the bucket) attend only to themselves, so their softmax is
finite; their K/V and logits are dropped by the host. Rollback = the host not copying rejected rows.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper

from ...config import ModelConfig
from ..onnx_builder import MS_DOMAIN, OPSET, ExternalData, GraphBuilder, Linear

from .version import STATIC_GRAPH_VERSION  # noqa: F401  (kept apart so a start-up imports no onnx)


def build_static_graph(config: ModelConfig, weights: Mapping[str, np.ndarray], rows: int, window: int,
                       linear: Linear, lm_head_linear: Linear | None = None, embed_dtype=np.float16,
                       external: ExternalData | None = None) -> onnx.ModelProto:
    """The decoder for passes of exactly `rows` tokens over a KV window of `window` slots (module docstring).

    linear / lm_head_linear: Linear strategies taking 3-D input (onnx_builder.matmul_linear, or Fp16Activations over a
    QuantizedLinear with float_type float16). external: share one data file across the bucket graphs."""
    c, T, W = config, rows, window
    L, kv, hd = c.num_layers, c.num_kv_heads, c.head_dim
    g = GraphBuilder(weights, linear, external=external)
    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT32, [1, T]),
              helper.make_tensor_value_info("rope_cos", f32, [1, 1, T, hd]),
              helper.make_tensor_value_info("rope_sin", f32, [1, 1, T, hd]),
              helper.make_tensor_value_info("attention_bias", f32, [1, 1, T, W]),
              helper.make_tensor_value_info("placement", f32, [1, 1, W, T])]
    outputs = [helper.make_tensor_value_info("logits", f32, [1, T, c.vocab_size])]
    for i in range(L):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(f"past_{kind}.{i}", f32, [1, kv, W, hd]))
            outputs.append(helper.make_tensor_value_info(f"new_{kind}.{i}", f32, [1, kv, T, hd]))

    embed = g.constant("embed.fp16" if np.dtype(embed_dtype) == np.float16 else "embed.table",
                       np.asarray(weights["embed"], dtype=embed_dtype))
    h = g.node("Gather", [embed, "input_ids"])  # [1, T, d]
    if np.dtype(embed_dtype) != np.float32:
        h = g.node("Cast", [h], to=f32)
    shapes = {name: g.constant(f"shape.{name}", np.array(shape, np.int64)) for name, shape in {
        "q": [1, T, c.num_heads, hd], "kv": [1, T, kv, hd], "grouped": [1, kv, (c.num_heads // kv) * T, hd],
        "scores": [1, c.num_heads, T, W], "grouped_scores": [1, kv, (c.num_heads // kv) * T, W],
        "heads": [1, c.num_heads, T, hd], "merged": [1, T, c.num_heads * hd]}.items()}
    g.constant("half_split", np.array([hd // 2, hd // 2], np.int64))
    g.constant("q_scale", np.array(1.0 / math.sqrt(hd), np.float32))
    for i in range(L):
        h = _layer(g, c, i, h, shapes)
    normed = g.node("RMSNormalization", [h, g.weight("final_norm")], epsilon=c.rms_norm_eps, axis=-1)
    (lm_head_linear or linear)(g, normed, "lm_head" if "lm_head" in weights else "embed", "logits")

    graph = helper.make_graph(g.nodes, f"edgespec_static_t{T}", inputs, outputs, g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)])
    model.ir_version = 10
    return model


def _rope(g: GraphBuilder, x: str, out: str | None = None) -> str:
    """x * cos + rotate_half(x) * signed sin, with x [1, heads, T, hd]."""
    first, second = g.fresh("x1"), g.fresh("x2")
    g.node("Split", [x, "half_split"], [first, second], axis=-1)
    swapped = g.node("Concat", [second, first], axis=-1)
    return g.node("Add", [g.node("Mul", [x, "rope_cos"]), g.node("Mul", [swapped, "rope_sin"])],
                  [out] if out else None)


def _heads(g: GraphBuilder, x: str, shape: str) -> str:
    """[1, T, heads*hd] -> [1, heads, T, hd]."""
    return g.node("Transpose", [g.node("Reshape", [x, shape])], perm=[0, 2, 1, 3])


def _project(g: GraphBuilder, c: ModelConfig, x: str, canonicals: list[str], sizes: list[int],
             biases: list[str] | None = None) -> list[str]:
    """x @ W_j^T (+ b_j) for each j: one stacked product split in parts when the strategy can."""
    outs = [g.fresh(name.rsplit(".", 1)[-1]) for name in canonicals]
    stacked = g.fresh("stacked")
    if g.project_stacked(x, canonicals, stacked, biases):
        g.node("Split", [stacked, g.constant(f"split.{'.'.join(map(str, sizes))}", np.array(sizes, np.int64))],
               outs, axis=-1)
        return outs
    g.project(x, canonicals, outs)
    if biases:
        outs = [g.node("Add", [out, g.constant(b + ".f32", np.asarray(g.weights[b], np.float32))])
                for out, b in zip(outs, biases)]
    return outs


def _layer(g: GraphBuilder, c: ModelConfig, i: int, h: str, shapes: dict[str, str]) -> str:
    p = f"layers.{i}."
    qd, kvd = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
    a = g.node("RMSNormalization", [h, g.weight(p + "attn_norm")], epsilon=c.rms_norm_eps, axis=-1)
    q, k, v = _project(g, c, a, [p + "q", p + "k", p + "v"], [qd, kvd, kvd],
                       [p + "q_bias", p + "k_bias", p + "v_bias"] if c.attention_bias else None)
    q = _rope(g, g.node("Mul", [_heads(g, q, shapes["q"]), "q_scale"]))  # [1, H, T, hd], pre-scaled
    _rope(g, _heads(g, k, shapes["kv"]), f"new_key.{i}")  # [1, kv, T, hd]
    g.node("Transpose", [g.node("Reshape", [v, shapes["kv"]])], [f"new_value.{i}"], perm=[0, 2, 1, 3])
    # The new rows placed in their window slots (zero in past_*): placement is one-hot, so the MatMul
    # copies exactly, and attention always reduces over the same W slots whatever the pass shape
    # (a Concat of W + T columns rounds a row differently in a 4-row and an 8-row graph).
    keys = g.node("Add", [f"past_key.{i}", g.node("MatMul", ["placement", f"new_key.{i}"])])  # [1, kv, W, hd]
    values = g.node("Add", [f"past_value.{i}", g.node("MatMul", ["placement", f"new_value.{i}"])])
    # Query heads of one KV group side by side: [1, kv, group*T, hd] against the group's keys.
    scores = g.node("MatMul", [g.node("Reshape", [q, shapes["grouped"]]),
                               g.node("Transpose", [keys], perm=[0, 1, 3, 2])])
    scores = g.node("Add", [g.node("Reshape", [scores, shapes["scores"]]), "attention_bias"])
    probs = g.node("Reshape", [g.node("Softmax", [scores], axis=-1), shapes["grouped_scores"]])
    attn = g.node("MatMul", [probs, values])  # [1, kv, group*T, hd]
    attn = g.node("Reshape", [g.node("Transpose", [g.node("Reshape", [attn, shapes["heads"]])], perm=[0, 2, 1, 3]),
                              shapes["merged"]])  # [1, T, H*hd]
    o = g.fresh("o")
    g.project(attn, [p + "o"], [o])
    h1 = g.node("Add", [h, o])
    m = g.node("RMSNormalization", [h1, g.weight(p + "ffn_norm")], epsilon=c.rms_norm_eps, axis=-1)
    gate, up = _project(g, c, m, [p + "gate", p + "up"], [c.intermediate_size] * 2)
    act = g.node("Mul", [g.node("Mul", [gate, g.node("Sigmoid", [gate])]), up])  # SwiGLU
    down = g.fresh("down")
    g.project(act, [p + "down"], [down])
    return g.node("Add", [h1, down])
