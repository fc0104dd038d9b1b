"""The Llama / Qwen2 / SmolLM2 family in torch, frozen, for training drafters against it.

Built from the same canonical float32 weights as the numpy reference (models/llama.py) and the
ONNX export (dequantized GGUF via edgespec.formats), and checked against the reference in
tests/test_train.py. Nothing here has trainable weights: drafters train input rows (PPD prompt
tokens) that ride along with real tokens.

One primitive, `rows(h, positions, mask, past)`: run input rows h [R, d] through every layer,
attending to `past` (the per-layer K/V of tokens already run, e.g. a whole training sequence)
and to each other, under a boolean mask [R, P + R] (True = may attend). Real tokens are run
once without gradients (`sequence`), then many groups of prompt rows, each anchored at another
position of the sequence, in one batched call whose mask gives each group its own prefix.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ModelConfig
from ..models.llama.reference import rope_inv_freq


class TorchLlama:
    def __init__(self, config: ModelConfig, weights: Mapping[str, np.ndarray]):
        self.config = config
        self.w = {name: torch.from_numpy(np.ascontiguousarray(weights[name], dtype=np.float32))
                  for name in weights}
        self.lm_head = self.w["lm_head"] if "lm_head" in self.w else self.w["embed"]
        self.inv_freq = torch.from_numpy(rope_inv_freq(config.head_dim, config.rope_theta, config.rope_scaling))
        self.keep_sequences, self._kept = False, {}

    @classmethod
    def from_source(cls, source) -> "TorchLlama":
        """source: an opened weights file (formats.open_weights); tensors are dequantized to float32."""
        return cls(source.config, {name: source.tensor(name) for name in source.names()})

    def embed(self, ids) -> torch.Tensor:
        return self.w["embed"][torch.as_tensor(np.asarray(ids), dtype=torch.long)]

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return _rms_norm(h, self.w["final_norm"], self.config.rms_norm_eps) @ self.lm_head.T

    @torch.no_grad()
    def sequence(self, ids) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Causal pass over real tokens: (logits [n, vocab], per-layer (K, V) [n_kv, n, hd]).

        With `keep_sequences` set, each sequence's pass is kept (logits as float16): the target is
        frozen, so a training set's real passes are computed once, not once per step."""
        key = tuple(int(i) for i in ids)
        if key in self._kept:
            logits, kv = self._kept[key]
            return logits.float(), kv
        n = len(ids)
        mask = torch.ones(n, n, dtype=torch.bool).tril()
        h, kv = self.rows(self.embed(ids), torch.arange(n), mask)
        logits = self.logits(h)
        if self.keep_sequences:
            self._kept[key] = (logits.half(), kv)
        return logits, kv

    def rows(self, h: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor,
             past: list[tuple[torch.Tensor, torch.Tensor]] | None = None, skip=()):
        """h [R, d] at `positions` [R]; mask [R, P + R] over (past, these rows). -> (h out [R, d], their K/V).

        skip: layers left out (the ONNX graph's layer plan: h passes a skipped layer unchanged)."""
        c = self.config
        angles = positions.to(torch.float64)[:, None] * self.inv_freq[None, :]
        cos, sin = torch.cos(angles).float(), torch.sin(angles).float()
        bias = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))[None]
        new_kv = []
        for i in range(c.num_layers):
            if i in skip:
                new_kv.append(None)
                continue
            h, kv = self._layer(i, h, cos, sin, bias, None if past is None else past[i])
            new_kv.append(kv)
        return h, new_kv

    def _layer(self, i, h, cos, sin, bias, past):
        c, w, p = self.config, self.w, f"layers.{i}."
        R = h.shape[0]
        a = _rms_norm(h, w[p + "attn_norm"], c.rms_norm_eps)
        q, k, v = a @ w[p + "q"].T, a @ w[p + "k"].T, a @ w[p + "v"].T
        if c.attention_bias:
            q, k, v = q + w[p + "q_bias"], k + w[p + "k_bias"], v + w[p + "v_bias"]
        q = _rope(q.view(R, c.num_heads, c.head_dim).transpose(0, 1), cos, sin)
        k = _rope(k.view(R, c.num_kv_heads, c.head_dim).transpose(0, 1), cos, sin)
        v = v.view(R, c.num_kv_heads, c.head_dim).transpose(0, 1)
        keys, values = (k, v) if past is None else (torch.cat([past[0], k], 1), torch.cat([past[1], v], 1))
        group = c.num_heads // c.num_kv_heads
        out = F.scaled_dot_product_attention(q, keys.repeat_interleave(group, 0), values.repeat_interleave(group, 0),
                                             attn_mask=bias, scale=1.0 / math.sqrt(c.head_dim))
        h = h + out.transpose(0, 1).reshape(R, -1) @ w[p + "o"].T
        m = _rms_norm(h, w[p + "ffn_norm"], c.rms_norm_eps)
        h = h + (F.silu(m @ w[p + "gate"].T) * (m @ w[p + "up"].T)) @ w[p + "down"].T
        return h, (k, v)


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [heads, R, hd] in rotate-half layout (as models/llama.apply_rope)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
