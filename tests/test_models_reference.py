"""The numpy reference forward: cache consistency, tree masks, RoPE scaling, registry coverage."""

from __future__ import annotations

import numpy as np
import pytest

from edgespec.config import ModelConfig, RopeScaling
from edgespec.errors import UnsupportedArchitectureError
from edgespec.models import reference_model_class, supported_architectures
from edgespec.models.llama.reference import causal_mask, rope_inv_freq

from .tiny import TINY_CONFIGS, random_weights, root_path, tree_layout

# Architectures whose reference model this file tests. test_every_architecture_is_tested
# fails when the registry gains a name that is not listed here.
TESTED_ARCHITECTURES = sorted(TINY_CONFIGS)


def test_every_architecture_is_tested():
    untested = set(supported_architectures()) - set(TESTED_ARCHITECTURES)
    assert not untested, f"registered architectures without a tiny-model test: {sorted(untested)}"


def test_config_reads_exactly_the_registered_architectures():
    """config.py asks no registry (that was an import cycle): its own list must match the families'."""
    from edgespec.config import SUPPORTED_ARCHITECTURES

    assert list(SUPPORTED_ARCHITECTURES) == supported_architectures()


@pytest.fixture(params=TESTED_ARCHITECTURES)
def tiny(request):
    config = TINY_CONFIGS[request.param]
    return reference_model_class(config.architecture)(config, random_weights(config))


def test_cache_equals_no_cache(tiny):
    tokens = np.random.default_rng(1).integers(0, tiny.config.vocab_size, 20)
    full = tiny.forward(tokens)
    cache = tiny.new_cache()
    stepwise = np.concatenate([tiny.forward(tokens[:7], cache)] +
                              [tiny.forward(tokens[i:i + 1], cache) for i in range(7, 13)] +
                              [tiny.forward(tokens[13:], cache)])
    assert cache.length == len(tokens)
    np.testing.assert_allclose(stepwise, full, atol=1e-4, rtol=0)
    assert np.abs(full).max() > 0.1  # the model is not degenerate


def test_rollback_restores_cache(tiny):
    tokens = np.random.default_rng(2).integers(0, tiny.config.vocab_size, 12)
    cache = tiny.new_cache()
    tiny.forward(tokens[:8], cache)
    snapshot = _copy(cache)
    expected = tiny.forward(tokens[8:9], snapshot)
    tiny.forward(tokens[8:12], cache)  # speculative tokens
    cache.rollback(4)
    np.testing.assert_array_equal(tiny.forward(tokens[8:9], cache), expected)  # bit-identical
    assert snapshot.length == cache.length


def test_tree_mask_matches_paths(tiny):
    """Each node of a token tree gets the logits of running its root-to-node path alone."""
    rng = np.random.default_rng(3)
    prefix = rng.integers(0, tiny.config.vocab_size, 6)
    # tree: 0 -> 1 -> 2, 0 -> 3, 1 -> 4   (parents[i] = parent node index, -1 = root)
    parents = [-1, 0, 1, 0, 1]
    nodes = rng.integers(0, tiny.config.vocab_size, len(parents))
    depth, ancestors = tree_layout(parents)
    cache = tiny.new_cache()
    tiny.forward(prefix, cache)
    mask = np.concatenate([np.ones((len(nodes), len(prefix)), bool), ancestors], axis=1)
    tree_logits = tiny.forward(nodes, cache, positions=len(prefix) + depth, mask=mask)
    for i in range(len(nodes)):
        alone = tiny.forward(np.concatenate([prefix, nodes[root_path(parents, i)]]))[-1]
        np.testing.assert_allclose(tree_logits[i], alone, atol=1e-4, rtol=0)


def test_causal_mask_shape():
    m = causal_mask(2, 3)
    assert m.tolist() == [[True, True, True, False, False], [True, True, True, True, False], [True] * 5]


def test_rope_scaling_variants():
    base = rope_inv_freq(64, 10000.0, RopeScaling())
    np.testing.assert_allclose(rope_inv_freq(64, 10000.0, RopeScaling("linear", 4.0)), base / 4)
    llama3 = rope_inv_freq(64, 500000.0, RopeScaling("llama3", 8.0, 8192, 1.0, 4.0))
    plain = rope_inv_freq(64, 500000.0, RopeScaling())
    assert llama3[0] == plain[0]  # high frequencies untouched
    np.testing.assert_allclose(llama3[-1], plain[-1] / 8)  # lowest frequency slowed by factor


def test_unknown_architecture_names_supported():
    with pytest.raises(UnsupportedArchitectureError, match=r"'mamba'.*supported: llama, qwen2"):
        reference_model_class("mamba")
    with pytest.raises(UnsupportedArchitectureError, match="'mamba'"):
        ModelConfig.from_hf({"model_type": "mamba", "architectures": ["MambaForCausalLM"]})


def test_config_from_dict_ignores_unknown_keys():
    config = TINY_CONFIGS["qwen2"]
    again = ModelConfig.from_dict({**config.to_dict(), "some_future_key": 1})
    assert again == config


def _copy(cache):
    from edgespec.models.llama.reference import KVCache
    return KVCache([k.copy() for k in cache.keys], [v.copy() for v in cache.values])
