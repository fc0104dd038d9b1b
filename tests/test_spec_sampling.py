"""Speculative sampling preserves the target's distribution (chi-square), and a wrong verifier is caught."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgespec.models.llama.reference import LlamaReference
from edgespec.runtimes.reference import ReferenceBackend
from edgespec.sampling import Sampler, SamplingParams
from edgespec.speculative.drafters.draft_model import DraftModelDrafter
from edgespec.speculative.engine import decode
from edgespec.speculative.tree import DraftTree
from edgespec.speculative.verify import draw, verify_sampling

from .tiny import TINY_CONFIGS, random_weights

V = 6
rng0 = np.random.default_rng(7)
TARGET = rng0.dirichlet(np.ones(V) * 0.7, size=8)  # p at rows 0..7
DRAFT_Q = rng0.dirichlet(np.ones(V) * 0.7, size=8)  # the drafter's q (deliberately different from p)


def chi2_p_value(observed: np.ndarray, expected_probs: np.ndarray) -> float:
    """Pearson's chi-square test; p-value by the Wilson-Hilferty approximation (no scipy needed)."""
    keep = expected_probs > 0
    expected = expected_probs[keep] * observed.sum()
    assert observed[~keep].sum() == 0, "a token with zero target probability was emitted"
    stat = float(((observed[keep] - expected) ** 2 / expected).sum())
    k = int(keep.sum()) - 1
    z = ((stat / k) ** (1 / 3) - (1 - 2 / (9 * k))) / math.sqrt(2 / (9 * k))
    return 0.5 * math.erfc(z / math.sqrt(2))


def stochastic_tree(rng) -> DraftTree:
    """Root children: two independent draws from q_0 (SpecInfer siblings); below the first, a draw from q."""
    tree = DraftTree(draft_probs=[])
    a = tree.add(draw(DRAFT_Q[0], rng), -1, DRAFT_Q[0])
    tree.tokens.append(draw(DRAFT_Q[0], rng))  # an independent sibling, even if it repeats the token
    tree.parents.append(-1)
    tree.draft_probs.append(DRAFT_Q[0])
    tree.add(draw(DRAFT_Q[a + 1], rng), a, DRAFT_Q[a + 1])
    return tree


def deterministic_tree(rng) -> DraftTree:
    """Point-mass drafts: three distinct root children, a chain below the first."""
    tree = DraftTree()
    first, second, third = rng.permutation(V)[:3]
    a = tree.add(int(first))
    tree.add(int(second))
    tree.add(int(third))
    tree.add(int(rng.integers(V)), a)
    return tree


def sample_first_two(verifier, make_tree, n: int, seed: int = 0):
    """First emitted token, and the second when the first was an accepted draft (then it is
    emitted from the same pass: its row is the accepted node's)."""
    rng = np.random.default_rng(seed)
    first, second_after = np.zeros(V, int), {}
    for _ in range(n):
        tree = make_tree(rng)
        path, bonus = verifier(tree, lambda row: TARGET[row], rng)
        emitted = [tree.tokens[i] for i in path] + [bonus]
        first[emitted[0]] += 1
        if path:
            node = path[0]
            second_after.setdefault(node + 1, np.zeros(V, int))[emitted[1]] += 1
    return first, second_after


def naive_verifier(tree, target_probs, rng):
    """Wrong on purpose: on rejection it draws from p itself instead of the residual max(p - q, 0)."""
    node, accepted, children = -1, [], tree.children_by_node()
    while True:
        p = target_probs(node + 1)
        for c in children.get(node, ()):
            x = tree.tokens[c]
            q_x = 1.0 if tree.draft_probs is None or tree.draft_probs[c] is None else tree.draft_probs[c][x]
            if rng.random() * q_x < p[x]:
                accepted.append(c)
                node = c
                break
        else:
            return accepted, draw(p, rng)


@pytest.mark.parametrize("make_tree", [stochastic_tree, deterministic_tree])
def test_rejection_sampling_matches_the_target(make_tree):
    first, second_after = sample_first_two(verify_sampling, make_tree, 40000)
    assert chi2_p_value(first, TARGET[0]) > 1e-3
    for row, counts in second_after.items():
        if counts.sum() > 2000:
            assert chi2_p_value(counts, TARGET[row]) > 1e-3, row


def test_a_wrong_verifier_fails_the_same_test():
    first, _ = sample_first_two(naive_verifier, stochastic_tree, 40000)
    assert chi2_p_value(first, TARGET[0]) < 1e-6


def engine_second_token_p_value() -> float:
    """Through the engine on a tiny model at temperature 6, top-p 0.95 (its random logits are very
    peaked, so this is a spread-out distribution): the 2nd new token's
    distribution with a (different) draft model equals plain sampling's, two-sample chi-square."""
    config = TINY_CONFIGS["llama"]
    target = ReferenceBackend(LlamaReference(config, random_weights(config, 0)), 64)
    # drafting with the target's own weights: greedy drafts hit the likeliest tokens, where a biased
    # verifier would show most
    draft = DraftModelDrafter(ReferenceBackend(LlamaReference(config, random_weights(config, 0)), 64), draft_len=3)
    prompt, n = [3, 14, 15, 92, 65], 1500

    def second_tokens(drafter):
        counts = np.zeros(config.vocab_size, int)
        for seed in range(n):
            sampler = Sampler(SamplingParams(temperature=6.0, top_p=0.95, seed=seed))
            tokens = [e.token for e in decode(target, prompt, sampler, 3, drafter, 3)]
            counts[tokens[1]] += 1
        return counts

    return two_sample_p_value(second_tokens(None), second_tokens(draft))


def test_engine_sampling_distribution_is_the_targets():
    assert engine_second_token_p_value() > 1e-3


def test_the_engine_test_catches_a_wrong_verifier(monkeypatch):
    import edgespec.speculative.engine

    monkeypatch.setattr(edgespec.speculative.engine, "verify_sampling", naive_verifier)
    assert engine_second_token_p_value() < 1e-3


def two_sample_p_value(a: np.ndarray, b: np.ndarray, min_count: int = 20) -> float:
    """Chi-square test that two equal-size samples share one distribution; rare tokens are pooled
    into one bin (sparse bins make the test blind)."""
    both = a + b
    common = both >= min_count
    a = np.append(a[common], a[~common].sum())
    b = np.append(b[common], b[~common].sum())
    both = a + b
    keep = both > 0
    expected = both[keep] / 2
    stat = float((((a[keep] - expected) ** 2 + (b[keep] - expected) ** 2) / expected).sum())
    k = int(keep.sum()) - 1
    z = ((stat / k) ** (1 / 3) - (1 - 2 / (9 * k))) / math.sqrt(2 / (9 * k))
    return 0.5 * math.erfc(z / math.sqrt(2))
