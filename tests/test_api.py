"""edgespec.load is the one composition; each generation has its own stats; a Model serves one
generation at a time."""

from __future__ import annotations

import pytest

import edgespec
from edgespec.api import GenerationInProgressError
from edgespec.errors import EdgespecError
from edgespec.speculative.drafters.ngram import NgramDrafter

pytestmark = pytest.mark.realmodel


@pytest.fixture(scope="module")
def model(smollm2_gguf):
    return edgespec.load("smollm2-135m", threads=2, spec="ngram", draft_budget=4)


def test_load_composes_the_drafter(model):
    assert isinstance(model.drafter, NgramDrafter) and model.spec_name == "ngram" and model.budget == 4


def test_a_bad_spec_fails_before_loading():
    with pytest.raises(EdgespecError, match="unknown --spec 'fast'"):
        edgespec.load("no-such-model-either", spec="fast")  # the spec is checked before the name


def test_each_generation_has_its_own_stats(model):
    first = model.generate("Count: one, two, three,", max_tokens=4, stop_on_eos=False)
    list(first)
    second = model.generate("Count: one, two, three,", max_tokens=7, stop_on_eos=False)
    list(second)
    assert first.stats is not second.stats
    assert (first.stats.generated_tokens, second.stats.generated_tokens) == (4, 7)
    assert first.stats.stop_reason == second.stats.stop_reason == "length"
    assert second.stats.reused_tokens > 0 and first.stats.token_ids == second.stats.token_ids[:4]


def test_a_second_generation_while_one_is_open_is_refused(model):
    open_one = model.generate("Hello", max_tokens=8)
    next(open_one)
    with pytest.raises(GenerationInProgressError, match="one generation at a time"):
        model.generate("Hello again", max_tokens=2)
    with pytest.raises(GenerationInProgressError):
        model.set_spec("off")
    open_one.close("interrupted")
    assert open_one.stats.stop_reason == "interrupted" and open_one.stats.generated_tokens == 1
    with model.generate("Hello", max_tokens=2) as again:  # free again; a context manager closes it
        assert len([e for e in again if e.token >= 0]) == 2
    assert again.stats.stop_reason in ("length", "eos")


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "8"])
def test_max_tokens_must_be_a_positive_integer(model, bad):
    with pytest.raises(EdgespecError, match=f"max_tokens {bad!r}: expected a positive integer"):
        model.generate("Hello", max_tokens=bad)  # 2.5 reached a slice as a TypeError before
