"""Turning logits into the next token: greedy or sampled, reproducibly with a seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import EdgespecError


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0
    min_p: float = 0.0  # drop tokens whose probability is below min_p x the top one
    repetition_penalty: float = 1.0  # > 1 discourages tokens already in the context
    seed: int | None = None

    def __post_init__(self):
        if not self.temperature >= 0:
            raise EdgespecError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise EdgespecError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise EdgespecError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 <= self.min_p < 1:
            raise EdgespecError(f"min_p must be in [0, 1), got {self.min_p}")
        if not self.repetition_penalty > 0:
            raise EdgespecError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.seed is not None and not (isinstance(self.seed, int) and self.seed >= 0):
            raise EdgespecError(f"seed must be an integer >= 0 (or None for a random one), got {self.seed!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def penalize(logits: np.ndarray, history, penalty: float) -> np.ndarray:
    """CTRL-style repetition penalty: logits of seen tokens move toward 0 (divided if > 0, multiplied if < 0)."""
    if penalty == 1.0 or not len(history):
        return logits
    seen = np.unique(np.asarray(history, dtype=np.int64))
    out = logits.copy()
    out[seen] = np.where(out[seen] > 0, out[seen] / penalty, out[seen] * penalty)
    return out


def probabilities(logits: np.ndarray, params: SamplingParams) -> np.ndarray:
    """The distribution the sampler draws from: softmax(logits / T), then top-k, top-p, min-p."""
    z = logits.astype(np.float64) / params.temperature
    if params.top_k and params.top_k < len(z):
        kth = np.partition(z, -params.top_k)[-params.top_k]
        z = np.where(z >= kth, z, -np.inf)
    p = np.exp(z - z.max())
    p /= p.sum()
    if params.top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        cumulative = np.cumsum(p[order])
        cut = np.searchsorted(cumulative, params.top_p) + 1  # smallest prefix with mass >= top_p
        keep = np.zeros_like(p, dtype=bool)
        keep[order[:cut]] = True
        p = np.where(keep, p, 0.0)
        p /= p.sum()
    if params.min_p > 0:
        p = np.where(p >= params.min_p * p.max(), p, 0.0)
        p /= p.sum()
    return p


class Sampler:
    def __init__(self, params: SamplingParams):
        self.params = params
        self.rng = np.random.default_rng(params.seed)

    def __call__(self, logits: np.ndarray, history=()) -> int:
        """history: the token ids so far (prompt + generated), for the repetition penalty."""
        logits = penalize(logits, history, self.params.repetition_penalty)
        if self.params.greedy:
            return int(np.argmax(logits))
        return int(self.rng.choice(len(logits), p=probabilities(logits, self.params)))
