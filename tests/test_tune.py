"""The quick layer-skip search behind the first `--spec auto`: the gain bound, pruning before any
search, the time budget, and calibrations keyed by the threads that run (not how they are spelled)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from edgespec.speculative import calibration
from edgespec.speculative.calibration.costs import cached_cost_model
from edgespec.speculative.calibration.layerskip import K_MAX, candidate_skip_sets, gain_bound, quick_tune_layerskip
from edgespec.speculative.controller import CostModel
from edgespec.sysinfo import effective_threads

from .test_spec_engine import CONFIG, PROMPT, make_backend

FREE = CostModel(list(range(1, 10)), [0.01] * 9)  # verification as cheap as a step: a memory-bound CPU
STEEP = CostModel(list(range(1, 10)), [0.01 * T for T in range(1, 10)])  # every row costs a full step


def test_gain_bound_is_the_perfect_acceptance_speedup():
    # free verification, a draft pass at half a step: (k + 1) / (k / 2 + 1), largest at k = K_MAX
    bound, k = gain_bound(FREE, 0.5)
    assert k == K_MAX and bound == pytest.approx((K_MAX + 1) / (K_MAX / 2 + 1))
    # compute-bound verification: (k + 1) / (k d + k + 1) < 1 for every d > 0: never worth a search
    assert gain_bound(STEEP, 0.1)[0] < 1


class Counting:
    """The real onnxruntime backend of a tiny model, counting forward passes."""

    def __init__(self, backend):
        self.inner, self.passes = backend, 0

    def forward(self, *args, **kwargs):
        self.passes += 1
        return self.inner.forward(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def quick(backend, cost, budget_s):
    return quick_tune_layerskip(backend, CONFIG.num_layers, list(PROMPT), 1, cost, budget_s=budget_s)


def test_skip_sets_that_cannot_pay_are_not_searched():
    backend = Counting(make_backend("ort"))
    record = quick(backend, STEEP, budget_s=30)
    assert backend.passes == 0  # pruned by the bound: no decoding at all
    assert not record["pays"] and not any(row["searched"] for row in record["candidates"])
    assert len(record["candidates"]) == len(candidate_skip_sets(CONFIG.num_layers))


def test_search_stops_at_its_budget_and_scores_what_it_measured():
    backend = Counting(make_backend("ort"))
    record = quick(backend, FREE, budget_s=0)
    assert backend.passes == 0 and not any(row["searched"] for row in record["candidates"])
    record = quick(backend, FREE, budget_s=60)
    searched = [row for row in record["candidates"] if row["searched"]]
    assert searched and backend.passes > 0
    for row in searched:  # the controller's model: E[k] / (k d + c(k + 1)) never exceeds the bound
        assert 0 < row["speedup"] <= gain_bound(FREE, row["draft_cost"])[0] + 1e-9
        assert 1 <= row["draft_len"] <= K_MAX
    assert record["pays"] == (record["speedup"] > 1.05)


def test_cost_curve_is_cached_per_threads_that_run(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESPEC_CACHE", str(tmp_path))
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"weights")
    measured = []

    def fake_measure(backend, prompt_ids):  # counts calibrations; the curve itself is not under test here
        measured.append(1)
        return CostModel([1, 2], [0.01, 0.02])

    monkeypatch.setattr(calibration.costs, "measure_cost_model", fake_measure)
    for threads in (0, effective_threads(0)):  # "all physical cores" and their number: one setting
        cached_cost_model(SimpleNamespace(name="ort"), [1, 2, 3], weights, "m", threads)
    assert len(measured) == 1


def test_every_skip_set_searched_or_trained_is_one_the_graph_can_run():
    """The tuner's candidates and S3D's block lie within the layers the graph wraps in If nodes."""
    from edgespec.models.contract import skippable_layers
    from edgespec.speculative.drafters.s3d import middle_skip

    for layers in range(1, 65):
        allowed = set(skippable_layers(layers))
        assert set(middle_skip(layers)) <= allowed, layers
        assert all(set(s) <= allowed for s in candidate_skip_sets(layers)), layers
