"""The speculation controller alone (no model): it follows the device's cost and the acceptance."""

from __future__ import annotations

from edgespec.speculative.controller import Acceptance, Controller, CostModel

# a 2-core CPU running onnxruntime int4 (measured shape: c(2) ~1.08, c(8) ~1.6, c(16) ~2.5)
CPU = CostModel([1, 2, 4, 8, 16], [0.016, 0.0173, 0.020, 0.026, 0.040])


def trained(controller: Controller, name: str, rate: float, depth: int = 16) -> Controller:
    """As if the controller had seen many drafts whose every token is kept with probability `rate`."""
    acceptance = controller.acceptance.setdefault(name, Acceptance())
    acceptance.trials = [200.0] * depth
    acceptance.hits = [200.0 * rate] * depth
    return controller


def test_a_perfect_drafter_gets_long_drafts():
    controller = trained(Controller(CPU, free={"ngram"}), "ngram", rate=0.999)
    name, k = controller.plan(["ngram"])
    assert name == "ngram" and k >= 12


def test_a_slow_verify_device_gets_shorter_drafts():
    fast = trained(Controller(CPU, free={"ngram"}), "ngram", rate=0.8)
    slow = trained(Controller(CPU.scaled(4.0), free={"ngram"}), "ngram", rate=0.8)
    (_, k_fast), (_, k_slow) = fast.plan(["ngram"]), slow.plan(["ngram"])
    assert 0 < k_slow < k_fast


def test_a_useless_drafter_falls_back_to_plain_and_reprobes():
    controller = trained(Controller(CPU, free={"ngram"}, probe_every=5), "ngram", rate=0.02)
    plans = [controller.plan(["ngram"]) for _ in range(10)]
    assert plans.count((None, 0)) == 8 and plans[4] == ("ngram", 1) and plans[9] == ("ngram", 1)


def test_a_costly_drafter_needs_more_acceptance_than_a_free_one():
    controller = Controller(CPU, free={"ngram"})
    controller.draft_seconds["layerskip"] = 0.010  # each drafted token costs 10 ms of a 16 ms step
    for name in ("ngram", "layerskip"):
        trained(controller, name, rate=0.6)
    assert controller.plan(["layerskip"]) == (None, 0)
    assert controller.plan(["ngram"])[0] == "ngram"


def test_acceptance_counts_reached_depths_only():
    a = Acceptance(prior=0.5, decay=1.0)
    a.observe(drafted=4, accepted=2)  # depths 1, 2 hit; 3 tried and missed; 4 never reached
    assert a.trials == [1, 1, 1, 0] and a.hits == [1, 1, 0, 0]
    assert a.rate(1) == 0.75 and a.rate(3) == 0.25
    assert a.rate(4) == a.rate(3)  # never reached: borrows the deepest depth tried
    assert Acceptance(prior=0.5).rate(1) == 0.5  # nothing tried: the prior


def test_cost_model_interpolates_extrapolates_and_tracks_drift():
    assert abs(CPU.pass_seconds(3) - 0.01865) < 1e-9
    assert CPU.pass_seconds(32) > CPU.pass_seconds(16)
    cost = CostModel(list(CPU.sizes), list(CPU.seconds))
    for _ in range(200):
        cost.observe(4, 2 * 0.020)  # the device got twice as slow
    assert 1.9 < cost.drift < 2.01


def test_acceptance_is_kept_per_bucket_so_long_matches_get_long_drafts():
    """The n-gram drafter names its match length: a 4-token match that is usually copied gets a long
    draft while, at the same moment, a 1-token match with poor acceptance gets a plain step."""
    controller = trained(trained(Controller(CPU, free={"ngram"}), "ngram/n4", rate=0.95), "ngram/n1", rate=0.03)
    name, k = controller.plan(["ngram"], {"ngram": "ngram/n4"})
    assert name == "ngram" and k >= 8
    assert controller.plan(["ngram"], {"ngram": "ngram/n1"}) == (None, 0)
    controller.observe("ngram", drafted=3, accepted=0, draft_s=0.0, verify_T=4, verify_s=0.02, bucket="ngram/n4")
    assert controller.acceptance["ngram/n4"].trials[0] == 200 * 0.97 + 1 and controller.acceptance["ngram/n1"].trials[0] == 200


def test_ngram_bucket_names_the_match_length_and_propose_reuses_the_lookup():
    from edgespec.speculative.drafters.ngram import NgramDrafter

    drafter = NgramDrafter(min_ngram=1)
    context = [5, 6, 7, 8, 9, 5, 6, 7]
    assert drafter.bucket(context) == "ngram/n3"  # [5, 6, 7] occurred before, followed by 8
    assert drafter.propose(context, 2).tokens == [8, 9]
    assert drafter.bucket([1, 2, 3]) is None  # nothing seen before: no candidate this step


def test_reprobing_is_rarer_where_a_two_token_pass_is_dear():
    """Probing a drafter that does not pay costs c(2) - 1 steps each time; on a backend whose
    2-token pass costs 2.4 steps (llama.cpp here) it happens every ~70 plain steps, not 16."""
    llamacpp_like = CostModel([1, 2, 4, 8, 16], [0.016, 0.038, 0.053, 0.067, 0.081])
    assert Controller(CPU).probe_interval() == 16
    slow = trained(Controller(llamacpp_like, free={"ngram"}), "ngram", rate=0.02)
    interval = slow.probe_interval()
    assert 60 <= interval <= 80
    plans = [slow.plan(["ngram"]) for _ in range(2 * interval)]
    assert plans.count(("ngram", 1)) == 2 and plans[interval - 1] == ("ngram", 1)
