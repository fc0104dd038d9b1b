"""The Llama family's canonical tensor-name table (Llama/Qwen2/SmolLM2).

Canonical names follow the HF layout: matrices are [out_features, in_features]
and Q/K rows are in HF's "rotate-half" RoPE order. GGUF files of the llama
architecture store Q/K rows permuted for llama.cpp's interleaved RoPE; the GGUF
reader undoes that permutation (see `unpermute_qk`), so every consumer sees
one layout.
"""

from __future__ import annotations

import re

import numpy as np

# canonical -> (GGUF name, HF name). "{i}" is the layer index.
TENSOR_NAMES: dict[str, tuple[str, str]] = {
    "embed": ("token_embd.weight", "model.embed_tokens.weight"),
    "final_norm": ("output_norm.weight", "model.norm.weight"),
    "lm_head": ("output.weight", "lm_head.weight"),
    "layers.{i}.attn_norm": ("blk.{i}.attn_norm.weight", "model.layers.{i}.input_layernorm.weight"),
    "layers.{i}.q": ("blk.{i}.attn_q.weight", "model.layers.{i}.self_attn.q_proj.weight"),
    "layers.{i}.k": ("blk.{i}.attn_k.weight", "model.layers.{i}.self_attn.k_proj.weight"),
    "layers.{i}.v": ("blk.{i}.attn_v.weight", "model.layers.{i}.self_attn.v_proj.weight"),
    "layers.{i}.q_bias": ("blk.{i}.attn_q.bias", "model.layers.{i}.self_attn.q_proj.bias"),
    "layers.{i}.k_bias": ("blk.{i}.attn_k.bias", "model.layers.{i}.self_attn.k_proj.bias"),
    "layers.{i}.v_bias": ("blk.{i}.attn_v.bias", "model.layers.{i}.self_attn.v_proj.bias"),
    "layers.{i}.o": ("blk.{i}.attn_output.weight", "model.layers.{i}.self_attn.o_proj.weight"),
    "layers.{i}.ffn_norm": ("blk.{i}.ffn_norm.weight", "model.layers.{i}.post_attention_layernorm.weight"),
    "layers.{i}.gate": ("blk.{i}.ffn_gate.weight", "model.layers.{i}.mlp.gate_proj.weight"),
    "layers.{i}.up": ("blk.{i}.ffn_up.weight", "model.layers.{i}.mlp.up_proj.weight"),
    "layers.{i}.down": ("blk.{i}.ffn_down.weight", "model.layers.{i}.mlp.down_proj.weight"),
}

GGUF, HF = 0, 1


def _compile(column: int) -> list[tuple[re.Pattern[str], str]]:
    out = []
    for canonical, names in TENSOR_NAMES.items():
        pattern = re.escape(names[column]).replace(re.escape("{i}"), r"(?P<i>\d+)")
        out.append((re.compile(pattern + "$"), canonical))
    return out


_PATTERNS = {GGUF: _compile(GGUF), HF: _compile(HF)}


def to_canonical(name: str, column: int) -> str | None:
    """File tensor name -> canonical name, or None when the table does not know it."""
    for pattern, canonical in _PATTERNS[column]:
        match = pattern.match(name)
        if match:
            return canonical.replace("{i}", match.group("i")) if "i" in match.groupdict() else canonical
    return None


def from_canonical(canonical: str, column: int) -> str:
    """Canonical name -> the name a GGUF (column=GGUF) or HF (column=HF) file uses."""
    parts = canonical.split(".")
    if parts[0] == "layers":
        return TENSOR_NAMES["layers.{i}." + parts[2]][column].replace("{i}", parts[1])
    return TENSOR_NAMES[canonical][column]


def layer_tensor(i: int, kind: str) -> str:
    return f"layers.{i}.{kind}"


def unpermute_qk(weight: np.ndarray, n_head: int) -> np.ndarray:
    """GGUF llama Q/K rows (interleaved RoPE pairs) -> HF rotate-half order.

    convert_hf_to_gguf permutes rows as reshape(n_head, 2, hd/2, ...).swapaxes(1, 2);
    this is its inverse. Works for weights [out, in] and biases [out].
    """
    rest = weight.shape[1:]
    head_dim = weight.shape[0] // n_head
    return weight.reshape(n_head, head_dim // 2, 2, *rest).swapaxes(1, 2).reshape(weight.shape)


def permute_qk(weight: np.ndarray, n_head: int) -> np.ndarray:
    """HF rotate-half order -> GGUF llama interleaved order (for writing GGUF)."""
    rest = weight.shape[1:]
    head_dim = weight.shape[0] // n_head
    return weight.reshape(n_head, 2, head_dim // 2, *rest).swapaxes(1, 2).reshape(weight.shape)
