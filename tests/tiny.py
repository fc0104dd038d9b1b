"""Tiny random models built in-test (no download): one config per architecture.

head_dim is 16 because onnxruntime's GroupQueryAttention needs a multiple of 16."""

from __future__ import annotations

import numpy as np

from edgespec.config import ModelConfig
from edgespec.speculative.tree import tree_layout  # noqa: F401  (re-exported for the graph tests)

TINY_CONFIGS = {
    "llama": ModelConfig(architecture="llama", vocab_size=97, hidden_size=64, intermediate_size=96, num_layers=3,
                         num_heads=4, num_kv_heads=2, head_dim=16, rms_norm_eps=1e-5, rope_theta=10000.0,
                         max_position_embeddings=128, tie_word_embeddings=True),
    "qwen2": ModelConfig(architecture="qwen2", vocab_size=101, hidden_size=96, intermediate_size=128, num_layers=2,
                         num_heads=6, num_kv_heads=2, head_dim=16, rms_norm_eps=1e-6, rope_theta=1e6,
                         max_position_embeddings=128, tie_word_embeddings=False, attention_bias=True),
}


def random_weights(config: ModelConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Canonical-name weights with the scale of a trained model (activations stay O(1))."""
    rng = np.random.default_rng(seed)
    c = config

    def mat(out_f, in_f):
        return (rng.standard_normal((out_f, in_f)) / np.sqrt(in_f)).astype(np.float32)

    w = {"embed": rng.standard_normal((c.vocab_size, c.hidden_size)).astype(np.float32),
         "final_norm": (1 + 0.1 * rng.standard_normal(c.hidden_size)).astype(np.float32)}
    if not c.tie_word_embeddings:
        w["lm_head"] = mat(c.vocab_size, c.hidden_size)
    q_out, kv_out = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
    for i in range(c.num_layers):
        p = f"layers.{i}."
        w[p + "attn_norm"] = (1 + 0.1 * rng.standard_normal(c.hidden_size)).astype(np.float32)
        w[p + "ffn_norm"] = (1 + 0.1 * rng.standard_normal(c.hidden_size)).astype(np.float32)
        w[p + "q"], w[p + "k"], w[p + "v"] = mat(q_out, c.hidden_size), mat(kv_out, c.hidden_size), mat(kv_out, c.hidden_size)
        w[p + "o"] = mat(c.hidden_size, q_out)
        w[p + "gate"], w[p + "up"] = mat(c.intermediate_size, c.hidden_size), mat(c.intermediate_size, c.hidden_size)
        w[p + "down"] = mat(c.hidden_size, c.intermediate_size)
        if c.attention_bias:
            for name, n in (("q_bias", q_out), ("k_bias", kv_out), ("v_bias", kv_out)):
                w[p + name] = (0.1 * rng.standard_normal(n)).astype(np.float32)
    return w


def root_path(parents: list[int], node: int) -> list[int]:
    path = [node]
    while parents[path[-1]] >= 0:
        path.append(parents[path[-1]])
    return path[::-1]
