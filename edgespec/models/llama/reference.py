"""Llama / Qwen2 / SmolLM2: the numpy fp32 reference forward pass.

This is the oracle every ONNX graph and backend is tested against, so it is
written for clarity, not speed: one function per block, shapes in comments.

    h   = embed[tokens]
    for each layer:
        a = rmsnorm(h) ; q,k,v = a Wq(+bq), a Wk(+bk), a Wv(+bv)
        q,k = rope(q,k, positions) ; append k,v to the cache
        h  += softmax(q k^T / sqrt(d) + mask) v  Wo
        h  += (silu(rmsnorm(h) Wg) * (rmsnorm(h) Wu)) Wd
    logits = rmsnorm(h) W_lm_head   (W_lm_head = embed when tied)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ...config import ModelConfig, RopeScaling


@dataclass
class KVCache:
    """Per-layer keys/values [n_kv_heads, length, head_dim], grown by forward()."""

    keys: list[np.ndarray] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)

    @property
    def length(self) -> int:
        return self.keys[0].shape[1] if self.keys else 0

    def rollback(self, n: int) -> None:
        """Drop the last n entries."""
        keep = self.length - n
        self.keys = [k[:, :keep] for k in self.keys]
        self.values = [v[:, :keep] for v in self.values]

    def keep(self, start: int, indices: np.ndarray) -> None:
        """Keep entries [0, start) then the entries start+indices, in that order (tree compaction)."""
        rows = np.concatenate([np.arange(start), start + np.asarray(indices, dtype=np.int64)])
        self.keys = [k[:, rows] for k in self.keys]
        self.values = [v[:, rows] for v in self.values]


def rope_inv_freq(head_dim: int, theta: float, scaling: RopeScaling) -> np.ndarray:
    """Inverse frequencies [head_dim/2], with linear or llama3 scaling applied."""
    inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    if scaling.kind == "linear":
        inv_freq = inv_freq / scaling.factor
    elif scaling.kind == "llama3":
        # Llama 3.1: long wavelengths are slowed by `factor`, short ones kept,
        # the band between interpolated smoothly.
        old = scaling.original_max_position
        low_wavelen = old / scaling.low_freq_factor
        high_wavelen = old / scaling.high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        smooth = (old / wavelen - scaling.low_freq_factor) / (scaling.high_freq_factor - scaling.low_freq_factor)
        scaled = np.where(wavelen > low_wavelen, inv_freq / scaling.factor, inv_freq)
        between = (wavelen <= low_wavelen) & (wavelen >= high_wavelen)
        inv_freq = np.where(between, (1 - smooth) * inv_freq / scaling.factor + smooth * inv_freq, scaled)
    return inv_freq


def apply_rope(x: np.ndarray, positions: np.ndarray, inv_freq: np.ndarray) -> np.ndarray:
    """x [heads, T, head_dim] in rotate-half layout; positions [T]."""
    angles = positions.astype(np.float64)[:, None] * inv_freq[None, :]  # [T, hd/2]
    cos = np.cos(angles).astype(np.float32)
    sin = np.sin(angles).astype(np.float32)
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    variance = np.mean(np.square(x, dtype=np.float32), axis=-1, keepdims=True)
    return (x / np.sqrt(variance + eps)) * weight


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def causal_mask(past: int, new: int) -> np.ndarray:
    """[new, past+new] bool: new token i sees the whole past and new tokens j <= i."""
    return np.tri(new, past + new, k=past, dtype=bool)


class LlamaReference:
    """fp32 reference. weights: canonical name -> float32 array (see names.py)."""

    def __init__(self, config: ModelConfig, weights: Mapping[str, np.ndarray], materialize: bool = True):
        """materialize=False keeps `weights` as given (e.g. formats.LazyWeights, which dequantizes
        on access): slower, but only one tensor is ever held in fp32."""
        self.config = config
        self.w = weights
        if materialize:
            self.w = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in weights.items()}
        self._lm_head = "lm_head" if "lm_head" in weights else "embed"  # tied embeddings
        self.inv_freq = rope_inv_freq(config.head_dim, config.rope_theta, config.rope_scaling)

    @classmethod
    def from_source(cls, source) -> "LlamaReference":
        """source: an opened weights file (formats.open_weights), every tensor dequantized now. For a
        lazy reference pass formats.LazyWeights(source) with materialize=False instead."""
        return cls(source.config, {name: source.tensor(name) for name in source.names()})

    def new_cache(self) -> KVCache:
        return KVCache()

    def forward(self, tokens, cache: KVCache | None = None, positions=None, mask=None) -> np.ndarray:
        """Logits [T, vocab] for T new tokens; appends their K/V to `cache`.

        positions: [T] (default: cache.length + arange(T)).
        mask: [T, past+T] bool, True = may attend (default: causal). A token tree
        passes its ancestor mask here and tree depths as positions.
        """
        tokens = np.asarray(tokens, dtype=np.int64)
        cache = cache if cache is not None else KVCache()
        past = cache.length
        if positions is None:
            positions = past + np.arange(len(tokens))
        positions = np.asarray(positions, dtype=np.int64)
        if mask is None:
            mask = causal_mask(past, len(tokens))
        bias = np.where(mask, 0.0, -np.inf).astype(np.float32)

        h = self._rows("embed", tokens)  # [T, d]
        first_call = not cache.keys
        for i in range(self.config.num_layers):
            h = self._layer(i, h, positions, bias, cache, first_call)
        h = rms_norm(h, self.w["final_norm"], self.config.rms_norm_eps)
        if not hasattr(self.w, "rows"):
            return h @ self.w[self._lm_head].T
        # Lazy weights: the vocabulary matrix in slices, never whole in fp32.
        vocab, step = self.config.vocab_size, 16384
        return np.concatenate([h @ self._rows(self._lm_head, np.arange(i, min(i + step, vocab))).T
                               for i in range(0, vocab, step)], axis=1)

    def _rows(self, name: str, index) -> np.ndarray:
        if hasattr(self.w, "rows"):
            return np.asarray(self.w.rows(name, np.asarray(index)), dtype=np.float32)
        return np.asarray(self.w[name][index], dtype=np.float32)

    def _layer(self, i, h, positions, bias, cache, first_call):
        c, w = self.config, self.w
        p = f"layers.{i}."
        T = h.shape[0]
        a = rms_norm(h, w[p + "attn_norm"], c.rms_norm_eps)
        q, k, v = a @ w[p + "q"].T, a @ w[p + "k"].T, a @ w[p + "v"].T
        if c.attention_bias:
            q, k, v = q + w[p + "q_bias"], k + w[p + "k_bias"], v + w[p + "v_bias"]
        q = apply_rope(q.reshape(T, c.num_heads, c.head_dim).transpose(1, 0, 2), positions, self.inv_freq)
        k = apply_rope(k.reshape(T, c.num_kv_heads, c.head_dim).transpose(1, 0, 2), positions, self.inv_freq)
        v = v.reshape(T, c.num_kv_heads, c.head_dim).transpose(1, 0, 2)
        if first_call:
            cache.keys.append(k)
            cache.values.append(v)
        else:
            cache.keys[i] = np.concatenate([cache.keys[i], k], axis=1)
            cache.values[i] = np.concatenate([cache.values[i], v], axis=1)
        keys, values = cache.keys[i], cache.values[i]  # [kv, S, hd]

        group = c.num_heads // c.num_kv_heads
        qg = q.reshape(c.num_kv_heads, group * T, c.head_dim)  # heads of a group share K/V
        scores = (qg @ keys.transpose(0, 2, 1)).reshape(c.num_heads, T, -1) / np.float32(math.sqrt(c.head_dim))
        scores = scores + bias
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs = scores / scores.sum(axis=-1, keepdims=True)
        out = (probs.reshape(c.num_kv_heads, group * T, -1) @ values).reshape(c.num_heads, T, c.head_dim)
        h = h + out.transpose(1, 0, 2).reshape(T, -1) @ w[p + "o"].T

        m = rms_norm(h, w[p + "ffn_norm"], c.rms_norm_eps)
        h = h + (silu(m @ w[p + "gate"].T) * (m @ w[p + "up"].T)) @ w[p + "down"].T
        return h
