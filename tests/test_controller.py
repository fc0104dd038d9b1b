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
    from edgespec.speculative.drafters.ngram import PRIORS, NgramDrafter

    drafter = NgramDrafter(min_ngram=1)
    context = [5, 6, 7, 8, 9, 5, 6, 7]
    assert drafter.bucket(context) == "ngram/n3"  # [5, 6, 7] occurred before, followed by 8
    assert drafter.propose(context, 2).tokens == [8, 9]
    assert drafter.bucket([1, 2, 3]) is None  # nothing seen before: no candidate this step
    long = list(range(10, 20)) + [0] + list(range(10, 19))
    assert drafter.bucket(long) == "ngram/n7+" and drafter.last_match == 8  # 10..18 seen before (max_ngram 8)
    assert drafter.bucket(long[:-4]) == "ngram/n4-6"  # 10..14
    assert set(PRIORS) == {"ngram/n1", "ngram/n2", "ngram/n3", "ngram/n4-6", "ngram/n7+", "ngram/split"}


def test_auto_ngram_drafts_stop_where_earlier_continuations_part():
    """[1, 2] was followed by 3 4 5 once and by 3 4 6 later: auto's chain copies the shared 3 4 and stops
    (the most recent continuation's 6 is rarely what comes next there); fixed n-gram drafting keeps its tree
    with both branches. Where they part at the first token the context is its own bucket, ngram/split."""
    from edgespec.speculative.drafters.ngram import NgramDrafter, agreed_depth

    assert agreed_depth([[3, 4, 5], [3, 4, 6]]) == 2 and agreed_depth([[3], [7]]) == 0
    assert agreed_depth([[3, 4]]) is None and agreed_depth([]) is None
    context = [9, 1, 2, 3, 4, 5, 9, 1, 2, 3, 4, 6, 9, 1, 2]
    auto, fixed = NgramDrafter.for_auto(), NgramDrafter(min_ngram=1)
    assert auto.bucket(context) == fixed.bucket(context) == "ngram/n3"  # [9, 1, 2], followed by 3 4 5 and 3 4 6
    assert auto.propose(context, 6).tokens == [3, 4]
    tree = fixed.propose(context, 8)
    assert tree.tokens == [3, 4, 6, 9, 1, 2, 5, 9] and tree.depth() == 6  # 5 branches off after 3 4
    assert auto.propose(context, 2).tokens == [3, 4]  # they agree within K: the whole chain
    split = [1, 7, 2, 1, 5, 3, 1]  # 1 was followed by 7, then by 5
    assert auto.bucket(split) == "ngram/split" and auto.propose(split, 1).tokens == [5]


def test_auto_ngram_learns_whether_drafts_should_stop_where_continuations_part():
    """The drafter scores its prediction at the parting depth against the text as it grows (drafted or not):
    where such tokens turn out to be kept (a model repeating itself), drafts go on through the parting point."""
    from edgespec.speculative.drafters.ngram import STOP_BELOW, NgramDrafter

    context = [9, 1, 2, 3, 4, 5, 9, 1, 2, 3, 4, 6, 9, 1, 2]  # 3 4 6 predicted (most recent), 3 4 5 seen before
    for then, scored in (([3, 4, 6], [1.0, 1.0]), ([3, 4, 5], [0.0, 1.0])):
        auto = NgramDrafter.for_auto()
        assert auto.divergence_rate() < STOP_BELOW and auto.bucket(context) == "ngram/n3"
        auto.bucket(context + then)
        assert auto.divergence == scored, then
    auto.divergence = [30.0, 30.0]  # such tokens were kept
    assert auto.divergence_rate() > STOP_BELOW and auto.propose(context, 6).tokens == [3, 4, 6, 9, 1, 2]
    auto.reset()
    assert auto.divergence == [30.0, 30.0]  # kept across generations, as the controller's estimates are


def test_acceptance_with_measured_priors_starts_there_and_learns_at_their_weight():
    a = Acceptance(prior=0.8, deeper=0.9, weight=8.0, decay=1.0)
    assert a.rates(3) == [0.8, 0.9, 0.9]  # nothing tried: every depth at its prior
    a.observe(drafted=2, accepted=0)  # depth 1 tried and missed, depth 2 never reached
    assert a.rates(2) == [(0 + 8 * 0.8) / (1 + 8), 0.9]
    for _ in range(400):
        a.observe(drafted=1, accepted=0)
    assert a.rate(1) < 0.02  # the prior is worth 8 drafts, not more


def test_a_bucket_with_a_measured_prior_survives_an_unlucky_first_miss():
    """Without priors one missed draft of a 7-token match drops its estimate to 0.25 and the controller stops
    drafting it (the bucket is starved of the trials that would correct it); with the measured prior it drafts on."""
    from edgespec.speculative.drafters.ngram import PRIORS

    for priors, drafts_after_a_miss in ((PRIORS, True), ({}, False)):
        controller = Controller(CostModel([1, 2, 4, 8, 16], [0.014, 0.0173, 0.026, 0.0438, 0.0794]),
                                free={"ngram"}, priors=dict(priors))
        assert controller.plan(["ngram"], {"ngram": "ngram/n7+"})[1] >= 1
        controller.observe("ngram", drafted=4, accepted=0, draft_s=0.0, verify_T=5, verify_s=0.03, bucket="ngram/n7+")
        name, k = controller.plan(["ngram"], {"ngram": "ngram/n7+"})
        assert (name == "ngram" and k >= 3) == drafts_after_a_miss, (priors, name, k)


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
