"""The graph contract: every input and output of an exported decoder graph (model.onnx).

The ONNX builder declares its inputs and outputs from this table, export writes it into the
manifest (`graph_contract`), and loading refuses an export written under another version, so
onnxruntime-Python, the phone app's JS engine and the static NPU graphs all read one
description instead of a docstring. Bump GRAPH_CONTRACT_VERSION whenever a name, dtype, shape
or meaning below changes (tests/test_contract.py compares it with a real export's graph).

Symbolic dimensions (strings in `shape`):
  T       tokens fed this pass (T_ids + E when extra rows are appended)
  S       past + T: the attention span of this pass
  N       rows whose logits are wanted (len(logits_index))
  E       appended embedding rows (extra_embeds is fed [1, 0, d] when there are none)
  kv_len  the KV buffer length the runtime allocated (<= max_len in the manifest)
Integers: L layers, n_kv KV heads, head_dim, d hidden size, vocab (all from the manifest's config).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..config import ModelConfig
from ..errors import EdgespecError, ModelFormatError

GRAPH_CONTRACT_VERSION = 5  # 2: extra_embeds in default exports, always fed; 3: only skippable_layers() take a plan;
                            # 4: new_key.i / new_value.i outputs (the rows a pass wrote); 5: those only with --new-rows


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy / ONNX element type name: int64, int32, float32, bool
    shape: tuple  # ints and symbolic dimension names
    meaning: str
    optional: bool = False  # the graph may lack it (see `present_when`), or it may be left unfed
    present_when: str = "always"

    def as_dict(self) -> dict:
        return {**asdict(self), "shape": list(self.shape)}


def skippable_layers(num_layers: int) -> list[int]:
    """The layers a layer plan may skip: the middle half, [L//4, L - L//4). Each is an If node in the graph,
    and an If costs ~0.1 ms per pass on a 2-core CPU whatever the layer does (qwen2.5-coder-0.5b, 1-row passes
    at 64 / 512 / 2048 cached tokens: an If on all 24 layers 17.2 / 17.7 / 21.4 ms, on the middle 12 15.9 / 15.8
    / 20.0, none 14.3 / 15.4 / 19.2). Drafting skips middle layers only: S3D's block is the middle ~40%, and
    the layer-skip sets that measured best were middle blocks (benchmarks/layerskip-tune.md)."""
    return list(range(num_layers // 4, num_layers - num_layers // 4))


def graph_inputs(config: ModelConfig, layer_plans: bool = False, extra_embeds: bool = False) -> list[TensorSpec]:
    """The inputs, in the graph's order."""
    L, kv, hd = config.num_layers, config.num_kv_heads, config.head_dim
    specs = [
        TensorSpec("input_ids", "int64", (1, "T"), "token ids of the T_ids new tokens"),
        TensorSpec("position_ids", "int64", (1, "T"),
                   "position of each new row: past + index for a chain, past + tree depth for a draft tree"),
        TensorSpec("attention_bias", "float32", (1, 1, "T", "S"),
                   "added to attention scores: 0 = may attend, -inf = may not; columns [0, past) are the cache "
                   "(always 0), [past, S) the new rows (causal for a chain, the ancestor mask for a tree)"),
        TensorSpec("seqlens_k", "int32", (1,), "S - 1 (GroupQueryAttention's convention)"),
        TensorSpec("total_sequence_length", "int32", (), "S"),
        TensorSpec("logits_index", "int64", ("N",),
                   "rows of the T new rows whose logits are computed (the lm_head runs on N rows only)"),
    ]
    if layer_plans:
        specs.append(TensorSpec("layer_mask", "bool", (L,),
                                "False = skip layer i (layer-skip drafting), for i in skippable_layers(L) only "
                                "(the manifest lists them; the other layers always run); a skipped layer's K/V "
                                "rows are left untouched, so roll back to the last all-layers length before a "
                                "fuller plan reads them",
                                optional=True, present_when="exported with layer plans (`--layer-plans`; not the default since graph 6)"))
    for i in range(L):
        for kind in ("key", "value"):
            specs.append(TensorSpec(f"past_{kind}.{i}", "float32", (1, kv, "kv_len", hd),
                                    f"layer {i}'s {kind} cache; rows [0, past) valid. Bind the same buffer as "
                                    f"present_{kind}.{i} so new rows are written in place"))
    if extra_embeds:
        specs.append(TensorSpec("extra_embeds", "float32", (1, "E", config.hidden_size),
                                "embedding rows appended after the token embeddings (mask / prompt tokens); "
                                "position_ids, attention_bias and logits_index cover T_ids + E rows; always fed "
                                "when present: [1, 0, d] on a pass without extra rows (IOBinding cannot bind an "
                                "input with a default)",
                                optional=True, present_when="exported with extra_embeds=True (the default since "
                                                            "contract 2: PPD / S3D rows)"))
    return specs


def graph_outputs(config: ModelConfig, new_rows: bool = False) -> list[TensorSpec]:
    L, kv, hd = config.num_layers, config.num_kv_heads, config.head_dim
    specs = [TensorSpec("logits", "float32", ("N", config.vocab_size), "logits of the rows in logits_index")]
    for i in range(L):
        for kind in ("key", "value"):
            specs.append(TensorSpec(f"present_{kind}.{i}", "float32", (1, kv, "kv_len", hd),
                                    f"layer {i}'s {kind} cache with the T new rows written at [past, S) "
                                    f"(the past_{kind}.{i} buffer itself when bound to it)"))
    for i in range(L if new_rows else 0):
        for kind in ("key", "value"):
            specs.append(TensorSpec(f"new_{kind}.{i}", "float32", (1, kv, "T", hd),
                                    f"the T rows this pass wrote into present_{kind}.{i} (rows [past, S)): for "
                                    "runtimes without IOBinding, which keep the cache themselves and fetch these "
                                    "instead of present_* (onnxruntime-node copies every output it returns)",
                                    optional=True, present_when="exported with --new-rows (not the default since "
                                                                "contract 5: onnxruntime runs their Slices on "
                                                                "every pass, ~2% of a plain step)"))
    return specs


def manifest_entry(config: ModelConfig, layer_plans: bool = False, extra_embeds: bool = False,
                   new_rows: bool = False) -> dict:
    """What export writes into the manifest under `graph_contract`."""
    entry = {"version": GRAPH_CONTRACT_VERSION,
             "inputs": [s.as_dict() for s in graph_inputs(config, layer_plans, extra_embeds)],
             "outputs": [s.as_dict() for s in graph_outputs(config, new_rows)]}
    if layer_plans:
        entry["skippable_layers"] = skippable_layers(config.num_layers)
    return entry


def check_skip(num_layers: int, skip, what: str) -> None:
    """Refuse a skip set a layer plan cannot run, naming the layers and the ones it may skip."""
    allowed = skippable_layers(num_layers)
    bad = [i for i in skip if i not in allowed]
    if bad:
        may = f"layers {allowed[0]}..{allowed[-1]}" if allowed else "no layer"
        raise EdgespecError(f"{what} names layers {bad}; a layer plan of this {num_layers}-layer model may skip "
                            f"{may} (the others always run)")


def check_manifest(manifest: dict, where: str) -> None:
    """Refuse an ONNX export written under another graph contract (naming both versions)."""
    found = (manifest.get("graph_contract") or {}).get("version")
    if found != GRAPH_CONTRACT_VERSION:
        written = "no graph contract (an export older than contract version 1)" if found is None \
            else f"graph contract version {found}"
        raise ModelFormatError(f"export '{where}' was written with {written}; this edgespec runs graph contract "
                               f"version {GRAPH_CONTRACT_VERSION} — export the model again")
