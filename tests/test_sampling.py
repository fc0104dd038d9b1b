"""Sampling: filters, penalties, seeds, stop strings, context limits."""

from __future__ import annotations

import numpy as np
import pytest

from edgespec.api import load
from edgespec.errors import ContextOverflowError, EdgespecError
from edgespec.sampling import Sampler, SamplingParams, penalize, probabilities

from .test_cli import assert_clean_error, run_cli

LOGITS = np.log(np.array([0.5, 0.25, 0.15, 0.07, 0.03]))


def test_filters():
    assert np.count_nonzero(probabilities(LOGITS, SamplingParams(temperature=1, top_k=2))) == 2
    assert np.count_nonzero(probabilities(LOGITS, SamplingParams(temperature=1, top_p=0.8))) == 3  # .5+.25+.15
    assert np.count_nonzero(probabilities(LOGITS, SamplingParams(temperature=1, min_p=0.2))) == 3  # >= 0.1
    np.testing.assert_allclose(probabilities(LOGITS, SamplingParams(temperature=1)), np.exp(LOGITS))
    sharp = probabilities(LOGITS, SamplingParams(temperature=0.1))
    assert sharp[0] > 0.99


def test_repetition_penalty_moves_seen_logits_toward_zero():
    logits = np.array([2.0, -2.0, 1.0])
    np.testing.assert_allclose(penalize(logits, [0, 1], 2.0), [1.0, -4.0, 1.0])


@pytest.mark.parametrize("seed", [-1, 2.5, "7"])
def test_a_seed_must_be_a_non_negative_integer(seed):
    with pytest.raises(EdgespecError, match="seed must be an integer >= 0"):
        SamplingParams(seed=seed)


def test_seed_reproduces_and_differs():
    def draws(seed):
        sampler = Sampler(SamplingParams(temperature=1.0, seed=seed))
        return [sampler(LOGITS) for _ in range(50)]

    assert draws(7) == draws(7) and draws(7) != draws(8)


@pytest.mark.parametrize("bad", [dict(temperature=-1), dict(top_p=0), dict(top_k=-2), dict(min_p=1.5),
                                 dict(repetition_penalty=0)])
def test_bad_parameters_name_the_value(bad):
    name, value = next(iter(bad.items()))
    with pytest.raises(EdgespecError, match=f"{name}.*{value}"):
        SamplingParams(**bad)


@pytest.fixture(scope="module")
def model(smollm2_gguf):
    return load(str(smollm2_gguf))


def test_stop_string_cuts_the_text(model):
    full = "".join(e.text for e in model.generate("The three primary colors are", max_tokens=24))
    stop = full[10:14]
    generation = model.generate("The three primary colors are", max_tokens=24, stop=(stop,))
    cut = "".join(e.text for e in generation)
    assert cut == full[:full.find(stop)] and generation.stats.stop_reason == "stop"


def test_same_seed_same_text(model):
    params = SamplingParams(temperature=0.8, top_p=0.95, seed=3)
    runs = ["".join(e.text for e in model.generate("Once upon a time", max_tokens=20, sampling=params))
            for _ in range(2)]
    assert runs[0] == runs[1]


def test_prompt_longer_than_context(model):
    with pytest.raises(ContextOverflowError, match="does not fit the context of 4096"):
        list(model.generate(list(range(100, 100 + 5000)), max_tokens=4))


def test_cli_refuses_unknown_device_and_missing_backend(smollm2_gguf):
    # qnn/openvino run static exports (tests/test_npu.py); an execution provider this build lacks is refused
    assert_clean_error(run_cli("generate", str(smollm2_gguf), "-p", "hi", "--device", "coreml"),
                       "CoreMLExecutionProvider", "CPUExecutionProvider")
    assert_clean_error(run_cli("generate", str(smollm2_gguf), "-p", "hi", "--backend", "llamacpp", "--device", "qnn"),
                       "--device qnn needs the onnxruntime or static backend")
    assert_clean_error(run_cli("generate", str(smollm2_gguf), "-p", "hi", "--spec", "magic"), "unknown --spec 'magic'")
