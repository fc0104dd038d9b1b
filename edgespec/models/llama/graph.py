"""ONNX graph for the Llama/Qwen2/SmolLM2 family, built from canonical weights (no tracing).

One graph serves prefill, decode, tree verification and layer-skip drafting. Its inputs and
outputs are the graph contract's (models/contract.py, versioned); in short:

  inputs   input_ids [1,T] int64      position_ids [1,T] int64 (tree depth + past for trees)
           attention_bias [1,1,T,S]   0 / -inf, S = past+T: any token tree over the new tokens
           seqlens_k [1] int32 (=S-1) total_sequence_length [] int32 (=S)
           logits_index [N] int64     rows of T whose logits are wanted (the lm_head runs on N rows only)
           layer_mask [L] bool        False = skip layer i (its K/V rows are left untouched)
           extra_embeds [1,E,d] float only with build_graph(extra_embeds=True) (the export's default): rows
                                      appended after the token embeddings, T = T_ids + E (mask/prompt
                                      tokens); always fed, [1,0,d] when there are none
           past_key.i / past_value.i  [1, n_kv, kv_len, head_dim]   kv_len <= max_len, the runtime's choice
  outputs  logits [N, vocab]          present_key.i / present_value.i  [1, n_kv, kv_len, head_dim]
           new_key.i / new_value.i    [1, n_kv, T, head_dim], only with build_graph(new_rows=True) (`--new-rows`):
                                      present's rows [past, S), for runtimes that keep the cache themselves
                                      (no IOBinding: the JS engine on onnxruntime-node)

KV cache: com.microsoft GroupQueryAttention writes the new rows [P, P+T) into a
max-length buffer; binding present_* to the same OrtValue as past_* (IOBinding)
makes that in place, so rollback is only a smaller seqlens_k next call. It reads
rows [0, S) only, so stale rows past the cache length never leak.

Layer plans: each skippable layer (contract.skippable_layers: the middle half; an If costs
~0.1 ms per pass, see there) sits in an If(layer_mask[i]) node: one session, one copy of
the (prepacked) weights, any subset of those layers; the others are inlined. A skipped layer's else branch is an
Identity of h and of its past_* buffers: nothing is copied (the bound buffer is
aliased) and its rows [P, P+T) keep whatever was there (zeros, or rows of an
earlier, rolled-back pass). So KV rows written under a partial plan are valid
for that plan only; the runtime must roll back to the last full-plan length before
a pass with more layers reads those positions (the speculative loop does: drafts
are rolled back and re-fed to the verify pass, which overwrites them). Drafting
with a partial plan over a prefix cached by the full model is the intended use.

Measured (onnxruntime 1.32 CPU, 2 threads, T=1, median ms/call, fp32 weights;
smollm2-shaped random model: 30 layers, d 576, 9/3 heads, vocab 49152):
                                             past 256 (buf 512)   past 1024 (buf 2048)
  GroupQueryAttention, in place (this graph)        6.72                8.80
  same graph with the If nodes inlined              6.39                8.30   (If costs ~5-6%)
  same, 14 of 30 layers skipped via layer_mask      4.91                6.45
  ONNX Attention-23 + RotaryEmbedding               6.90               28.5    present = concat: reallocated
  MatMul/Softmax + RotaryEmbedding + Concat         7.52               41.3    every call, no in-place cache
  TensorScatter-24 + Attention-24 on a max buffer   7.80               42.3    aliasing works, but copies
The tiny llama config: 0.043 (GQA) / 0.035 (no If) / 0.031 (Attention-23) / 0.048 (plain) ms.
All variants agree to 1e-4 in logits. GQA is the only one whose cost does not grow with a copy of the cache.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper

from ...config import ModelConfig
from ...errors import UnsupportedArchitectureError
from ..contract import graph_inputs, graph_outputs, skippable_layers
from ..onnx_builder import MS_DOMAIN, OPSET, ExternalData, GraphBuilder, Linear, gemm_linear, value_info
from .version import GRAPH_VERSION  # noqa: F401  (the version of what this module builds)
from .reference import rope_inv_freq


def build_graph(config: ModelConfig, weights: Mapping[str, np.ndarray], max_len: int,
                linear: Linear | None = None, lm_head_linear: Linear | None = None,
                embed_dtype=np.float32, external: ExternalData | None = None,
                extra_embeds: bool = False, layer_plans: bool = False, embed_rounding=None,
                embedding=None, new_rows: bool = False) -> onnx.ModelProto:
    """The decoder graph (see the module docstring for its contract).

    weights: canonical name -> float32 array (may be a lazy mapping over a weights file).
    linear / lm_head_linear: how projections are computed (default fp32 Gemm).
    embed_dtype: storage of the embedding table (float16 halves it; rows are cast after Gather).
    embed_rounding: a dtype the table's values are rounded through before being stored as embed_dtype
      (float16 into float32: the fp16 table's numbers, readable where a GPU has no fp16 in shaders).
    embedding: (builder, ids) -> rows [T, d] float32, instead of a float table (quant.linear.QuantizedEmbedding);
      a tied fp32 lm_head then gets an fp32 table of its own.
    external: stream initializers into this data file instead of keeping them in the proto.
    extra_embeds: add the input `extra_embeds` [1, E, d], rows appended after the token embeddings
        (S3D mask tokens, PPD prompt tokens); position_ids / attention_bias / logits_index then
        cover T_ids + E rows. It must be fed ([1, 0, d] when there are no extra rows).
    layer_plans: wrap each skippable layer in If(layer_mask[i]) (layer-skip drafting); False inlines every
        layer (no layer_mask input; the If nodes cost ~0.1 ms each per pass and block cross-layer fusions).
    new_rows: add the outputs new_key.i / new_value.i, the rows each pass wrote (for onnxruntime-node).
    """
    c = config
    g = GraphBuilder(weights, linear, external=external)
    lm_head_linear = lm_head_linear or g.linear
    if c.head_dim % 16:
        raise UnsupportedArchitectureError(f"head_dim {c.head_dim} is not a multiple of 16, which onnxruntime's "
                                           "GroupQueryAttention needs")
    L, hd = c.num_layers, c.head_dim
    # Inputs and outputs are the graph contract's (models/contract.py), in its order.
    inputs = [value_info(t) for t in graph_inputs(c, layer_plans, extra_embeds)]
    outputs = [value_info(t) for t in graph_outputs(c, new_rows)]

    inv_freq = rope_inv_freq(hd, c.rope_theta, c.rope_scaling)
    angles = np.arange(max_len, dtype=np.float64)[:, None] * inv_freq[None, :]
    g.constant("rope_cos", np.cos(angles).astype(np.float32))
    g.constant("rope_sin", np.sin(angles).astype(np.float32))
    g.constant("axes0", np.array([0], np.int64))

    ids = g.node("Squeeze", ["input_ids", "axes0"])  # [T]
    if embedding is not None:
        h, embed = embedding(g, ids), None
    else:
        # Named like fp16_linear's copy, so a tied fp16 lm_head reuses this table instead of a second one.
        table = np.asarray(weights["embed"], dtype=embed_rounding or embed_dtype).astype(embed_dtype, copy=False)
        embed = g.constant("embed.fp16" if np.dtype(embed_dtype) == np.float16 else "embed.table", table)
        h = g.node("Gather", [embed, ids])  # [T, d]
        if np.dtype(embed_dtype) != np.float32:
            h = g.node("Cast", [h], to=TensorProto.FLOAT)
    if extra_embeds:
        # A required input (declared by the contract), fed [1, 0, d] when there are no extra rows:
        # onnxruntime's IOBinding cannot bind an overridable initializer (an input with a default).
        h = g.node("Concat", [h, g.node("Squeeze", ["extra_embeds", "axes0"])], axis=0)  # [T_ids + E, d]
    normed = None  # inlined layers: the next norm of the residual stream, fused with the residual add
    branches = set(skippable_layers(L)) if layer_plans else set()
    for i in range(L):
        if i in branches:
            _layer_as_branch(g, c, i, h)
            normed = None
        else:  # the next layer's norm fused in, unless that layer is an If (it norms its own input)
            next_norm = None if i + 1 in branches else f"layers.{i + 1}.attn_norm" if i + 1 < L else "final_norm"
            normed = _layer_nodes(g, c, i, h, (f"h.{i}", f"present_key.{i}", f"present_value.{i}"),
                                  normed_in=normed, next_norm=next_norm)
        h = f"h.{i}"

    if new_rows:
        _new_row_outputs(g, L)

    if normed is not None:  # [N, d]: only the rows someone reads
        normed = g.node("Gather", [normed, "logits_index"])
    else:
        rows = g.node("Gather", [h, "logits_index"])
        normed = g.node("RMSNormalization", [rows, g.weight("final_norm")], epsilon=c.rms_norm_eps, axis=-1)
    if "lm_head" in weights or lm_head_linear is not gemm_linear:
        lm_head_linear(g, normed, "lm_head" if "lm_head" in weights else "embed", "logits")
    elif embed is not None and np.dtype(embed_dtype) == np.float32:  # tied fp32: multiply by the embedding table itself, no copy
        g.node("Gemm", [normed, embed], ["logits"], transB=1)
    else:
        gemm_linear(g, normed, "embed", "logits")

    graph = helper.make_graph(g.nodes, "edgespec_decoder", inputs, outputs, g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                    helper.make_opsetid(MS_DOMAIN, 1)])
    model.ir_version = 10
    return model


def _new_row_outputs(g: GraphBuilder, num_layers: int) -> None:
    """The rows this pass wrote, as outputs of their own: onnxruntime-node copies every output it returns into a
    new ArrayBuffer, so the JS engine feeds its own buffers as the past and fetches these T rows instead of the
    whole present (benchmarks/js-engine.md: `auto` 1.09x there). onnxruntime runs these Slices on every pass,
    fetched or not (graph outputs are not pruned per run): ~2% of a plain step (qwen2.5-coder-0.5b 1.8%, smollm2
    2.4%) for Python, which binds present_* and never reads them (benchmarks/plain-decode.md), so opt-in."""
    T = g.node("Shape", ["position_ids"], start=1, end=2)  # [1]
    S = g.node("Reshape", [g.node("Cast", ["total_sequence_length"], to=TensorProto.INT64),
                           g.constant("shape1", np.array([1], np.int64))])
    start, axes2 = g.node("Sub", [S, T]), g.constant("axes2", np.array([2], np.int64))
    for i in range(num_layers):
        for kind in ("key", "value"):
            g.node("Slice", [f"present_{kind}.{i}", start, S, axes2], [f"new_{kind}.{i}"])


def _layer_as_branch(outer: GraphBuilder, c: ModelConfig, i: int, h: str) -> None:
    """Layer i as If(layer_mask[i]): the layer, or Identity of h and of its past_* buffers."""
    cond = outer.node("Gather", ["layer_mask", outer.constant(f"layer_index.{i}", np.array(i, np.int64))])
    g = GraphBuilder(outer.weights, outer.linear, outer.float_type, outer.external)
    g._counter = outer._counter + 100_000 * (i + 1)  # unique value names across branches
    outs = (f"then_h.{i}", f"then_present_key.{i}", f"then_present_value.{i}")
    _layer_nodes(g, c, i, h, outs, outer)
    # Initializers the branch created (e.g. int4 blobs) move to the outer graph: one copy, prepacked once.
    for init in g.initializers:
        if init.name not in outer._names:
            outer._names[init.name] = g._names[init.name]
            outer.initializers.append(init)
        elif outer._names[init.name] != g._names[init.name]:
            raise ValueError(f"initializer '{init.name}' is {outer._names[init.name]} outside layer {i}, "
                             f"{g._names[init.name]} inside")
    outer._counter = g._counter
    then_graph = helper.make_graph(g.nodes, f"layer_{i}", [], [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outs])
    else_graph = helper.make_graph(
        [helper.make_node("Identity", [src], [f"skip_{dst}"]) for src, dst in
         ((h, f"h.{i}"), (f"past_key.{i}", f"present_key.{i}"), (f"past_value.{i}", f"present_value.{i}"))],
        f"skip_layer_{i}", [], [helper.make_tensor_value_info(f"skip_{n}", TensorProto.FLOAT, None)
                                for n in (f"h.{i}", f"present_key.{i}", f"present_value.{i}")])
    outer.node("If", [cond], [f"h.{i}", f"present_key.{i}", f"present_value.{i}"],
               then_branch=then_graph, else_branch=else_graph)


def _layer_nodes(g: GraphBuilder, c: ModelConfig, i: int, h: str, outs: tuple[str, str, str],
                 outer: GraphBuilder | None = None, normed_in: str | None = None,
                 next_norm: str | None = None) -> str | None:
    """Decoder layer i: h -> outs = (new h, present key, present value). Weights are initializers of
    `outer` (the main graph) when g builds an If branch. Inlined layers chain their norms:
    normed_in = RMSNorm(h) made by the previous layer; next_norm names the norm weight applied to the
    new h, computed with the residual add in one op and returned."""
    outer = outer or g
    p = f"layers.{i}."
    a = normed_in or g.node("RMSNormalization", [h, outer.weight(p + "attn_norm")], epsilon=c.rms_norm_eps,
                            axis=-1)
    biases = [p + kind + "_bias" for kind in "qkv"] if c.attention_bias else None
    qkv = g.fresh("qkv")
    if g.project_stacked(a, [p + kind for kind in "qkv"], qkv, biases):
        # Packed QKV [1, T, (heads + 2 kv_heads) * hd]: GroupQueryAttention splits it itself.
        qkv_inputs = [g.node("Unsqueeze", [qkv, "axes0"]), "", ""]
    else:
        qkv_inputs = []
        for j, kind in enumerate("qkv"):
            out = g.fresh(kind)
            g.project(a, [p + kind], [out])
            if biases:
                out = g.node("Add", [out, outer.weight(biases[j])])
            qkv_inputs.append(g.node("Unsqueeze", [out, "axes0"]))  # [1, T, heads*hd]
    attn = g.node("GroupQueryAttention",
                  qkv_inputs + [f"past_key.{i}", f"past_value.{i}", "seqlens_k",
                                "total_sequence_length", "rope_cos", "rope_sin", "position_ids", "attention_bias"],
                  [g.fresh("attn"), outs[1], outs[2]], domain=MS_DOMAIN,
                  num_heads=c.num_heads, kv_num_heads=c.num_kv_heads, do_rotary=1, rotary_interleaved=0,
                  scale=float(1.0 / np.sqrt(c.head_dim)))
    attn2d = g.node("Squeeze", [attn, "axes0"])
    o = g.fresh("o")
    g.project(attn2d, [p + "o"], [o])
    # m = RMSNorm(h + o) and h1 = h + o in one fused op.
    m, h1 = g.fresh("ffn_in"), g.fresh("h_attn")
    g.node("SkipSimplifiedLayerNormalization", [o, h, outer.weight(p + "ffn_norm")],
           [m, "", "", h1], domain=MS_DOMAIN, epsilon=c.rms_norm_eps)
    gate, up, down = g.fresh("gate"), g.fresh("up"), g.fresh("down")
    gate_up = g.fresh("gate_up")
    if g.project_stacked(m, [p + "gate", p + "up"], gate_up):
        g.node("Split", [gate_up], [gate, up], axis=-1, num_outputs=2)
    else:
        g.project(m, [p + "gate", p + "up"], [gate, up])
    act = g.node("Mul", [g.node("Mul", [gate, g.node("Sigmoid", [gate])]), up])  # SwiGLU
    g.project(act, [p + "down"], [down])
    if next_norm is None:
        g.node("Add", [h1, down], [outs[0]])
        return None
    normed_out = g.fresh("normed")
    g.node("SkipSimplifiedLayerNormalization", [down, h1, outer.weight(next_norm)], [normed_out, "", "", outs[0]],
           domain=MS_DOMAIN, epsilon=c.rms_norm_eps)
    return normed_out
