"""How much to speculate, from measurements of this device (PPD's hardware-aware idea).

Each step the controller picks the drafter and draft length K that maximise expected tokens
per second:

    E[tokens | K]  = 1 + sum_{d=1..K} prod_{j<=d} a_j        a_j = P(draft j accepted | j-1 were)
    time(K)        = draft_time(K) + t(K + 1)                 t(T) = the device's T-token pass time
    choose argmax E / time over K = 0..budget (K = 0 is a plain step: 1 token in t(1))

t(T) comes from a short calibration cached per model, backend and machine (calibration/costs.py), and is rescaled
online when observed passes drift from it; a_j is a decayed online estimate per drafter and
depth. When no K > 0 beats plain decoding, the step is plain; every `probe_every` plain steps
a 1-token draft is tried anyway, so a drafter that starts to pay is noticed — less often where
a 2-token pass is dear, so that probing never costs more than PROBE_SHARE of the time:
    interval = max(probe_every, (t(2) / t(1) - 1) / PROBE_SHARE)
(onnxruntime here: c(2) = 1.08 -> every 16 steps; llama.cpp: c(2) = 2.4 -> every ~70).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from .tree import DraftTree

log = logging.getLogger(__name__)
CALIBRATION_SIZES = (1, 2, 3, 4, 6, 8, 12, 16)
PROBE_SHARE = 0.02  # at most this share of decode time goes to re-probing drafters that did not pay


@dataclass
class CostModel:
    """Seconds of one forward pass of T tokens, interpolated from measured sizes."""

    sizes: list[int]
    seconds: list[float]
    drift: float = 1.0  # observed / predicted, decayed
    _table: dict = field(default_factory=dict, repr=False, compare=False)  # T -> measured-curve seconds

    def pass_seconds(self, T: int) -> float:
        # the controller asks for ~20 sizes every step: a dict lookup, not an np.interp call (~40 us each)
        base = self._table.get(T)
        if base is None:
            base = self._table[T] = self._interpolate(T)
        return self.drift * base

    def _interpolate(self, T: int) -> float:
        sizes, seconds = self.sizes, self.seconds
        if T > sizes[-1]:  # extrapolate with the last segment's slope
            slope = (seconds[-1] - seconds[-2]) / (sizes[-1] - sizes[-2])
            return seconds[-1] + slope * (T - sizes[-1])
        return float(np.interp(T, sizes, seconds))

    def observe(self, T: int, seconds: float, decay: float = 0.95) -> None:
        predicted = self.pass_seconds(T) / self.drift
        self.drift = decay * self.drift + (1 - decay) * seconds / predicted

    def scaled(self, factor: float) -> "CostModel":
        """The same device with multi-token passes `factor` times dearer (t(1) unchanged)."""
        t1 = self.seconds[0]
        return CostModel(self.sizes, [t1 + factor * (s - t1) for s in self.seconds])


@dataclass
class Acceptance:
    """Decayed per-depth acceptance counts of one drafter, with a prior.

    Without `deeper` the prior is weak (worth one draft) and a depth never tried borrows the rate of the
    deepest one tried above it. With `deeper` (a drafter that knows its buckets, e.g. n-gram match lengths)
    every depth starts from a measured rate worth `weight` drafts:
        a_d = (hits_d + weight * p_d) / (trials_d + weight),   p_1 = prior, p_d = deeper for d > 1
    so a bucket whose first drafts miss by bad luck is not starved of the trials that would correct it."""

    prior: float = 0.5
    decay: float = 0.97
    hits: list[float] = field(default_factory=list)
    trials: list[float] = field(default_factory=list)
    deeper: float | None = None  # P(depth d kept | d-1 kept) before any draft, d > 1
    weight: float = 1.0  # the prior's worth, in drafts (with `deeper`)

    def rates(self, depth: int) -> list[float]:
        """a_1 .. a_depth."""
        if self.deeper is not None:
            return [(self._hits(d) + self.weight * (self.prior if d == 0 else self.deeper)) /
                    (self._trials(d) + self.weight) for d in range(depth)]
        # once a draft is being copied it tends to go on being copied, and a fixed prior would keep K from
        # ever growing past what was tried
        out, current = [], self.prior
        for d in range(depth):
            if d < len(self.trials) and self.trials[d] >= 1.0:
                current = (self.hits[d] + self.prior) / (self.trials[d] + 1.0)
            out.append(current)
        return out

    def _hits(self, d: int) -> float:
        return self.hits[d] if d < len(self.hits) else 0.0

    def _trials(self, d: int) -> float:
        return self.trials[d] if d < len(self.trials) else 0.0

    def rate(self, depth: int) -> float:  # depth counts from 1
        return self.rates(depth)[-1]

    def observe(self, drafted: int, accepted: int) -> None:
        """A chain of `drafted` tokens of which the first `accepted` were kept."""
        while len(self.trials) < drafted:
            self.hits.append(0.0)
            self.trials.append(0.0)
        for d in range(drafted):
            self.hits[d] *= self.decay
            self.trials[d] *= self.decay
            if d <= accepted:  # depth d+1 was reached: a trial
                self.trials[d] += 1
                self.hits[d] += d < accepted

    def expected_tokens_upto(self, k_max: int) -> list[float]:
        """E[tokens | K] for K = 0 .. k_max in one pass: 1 + sum_{d<=K} prod_{j<=d} a_j."""
        totals, reach = [1.0], 1.0
        for a in self.rates(k_max):
            reach *= a
            totals.append(totals[-1] + reach)
        return totals

    def expected_tokens(self, k: int) -> float:
        return self.expected_tokens_upto(k)[k]


@dataclass
class Controller:
    cost: CostModel
    max_budget: int = 16
    probe_every: int = 16
    acceptance: dict[str, Acceptance] = field(default_factory=dict)
    draft_seconds: dict[str, float] = field(default_factory=dict)  # per drafted token, decayed
    plain_steps: int = 0
    free: set = field(default_factory=set)  # drafters that cost nothing to ask (n-gram lookup)
    pass_rows: dict = field(default_factory=dict)  # drafter -> rows of its verify pass for k drafts (default k+1)
    # bucket -> (first-token rate, deeper rate, worth in drafts): where its acceptance starts (NgramDrafter.PRIORS)
    priors: dict = field(default_factory=dict)

    def acceptance_of(self, bucket: str) -> Acceptance:
        found = self.acceptance.get(bucket)
        if found is None:
            prior = self.priors.get(bucket)
            found = self.acceptance[bucket] = Acceptance() if prior is None else \
                Acceptance(prior=prior[0], deeper=prior[1], weight=prior[2])
        return found

    def plan(self, names: list[str], buckets: dict[str, str] | None = None) -> tuple[str | None, int]:
        """(drafter, K) with the highest expected tokens per second; (None, 0) = a plain step.

        buckets: drafter -> the acceptance estimate to use now (default its name). The n-gram drafter
        names its match length: a 4-token match is followed far more often than a 2-token one."""
        buckets = buckets or {}
        best, best_rate = (None, 0), 1.0 / self.cost.pass_seconds(1)
        for name in names:
            acceptance = self.acceptance_of(buckets.get(name, name))
            per_token = 0.0 if name in self.free else self.draft_seconds.get(name, 0.5 * self.cost.pass_seconds(1))
            expected = acceptance.expected_tokens_upto(self.max_budget)
            rows = self.pass_rows.get(name, _chain_rows)  # PPD's prompt rows make its pass bigger than k + 1
            for k in range(1, self.max_budget + 1):
                rate = expected[k] / (k * per_token + self.cost.pass_seconds(rows(k)))
                if rate > best_rate:
                    best, best_rate = (name, k), rate
        if best[0] is None and names:
            self.plain_steps += 1
            if self.plain_steps % self.probe_interval() == 0:  # re-probe: estimates move only when drafts are tried
                return names[0], 1
        return best

    def probe_interval(self) -> int:
        extra = self.cost.pass_seconds(2) / self.cost.pass_seconds(1) - 1  # what a 1-token probe costs, in steps
        return max(self.probe_every, math.ceil(extra / PROBE_SHARE))

    def observe(self, name: str, drafted: int, accepted: int, draft_s: float, verify_T: int, verify_s: float,
                bucket: str | None = None):
        if drafted:
            self.acceptance_of(bucket or name).observe(drafted, accepted)
            if name not in self.free:
                per_token = draft_s / drafted
                old = self.draft_seconds.get(name, per_token)
                self.draft_seconds[name] = 0.8 * old + 0.2 * per_token
        self.cost.observe(verify_T, verify_s)


def _chain_rows(k: int) -> int:
    return k + 1


class ControlledDrafter:
    """A Drafter that asks the controller which of its drafters to use and how far to draft.

    The engine calls propose/observe as for any drafter; `budget` caps K."""

    name = "auto"

    def __init__(self, drafters: dict, controller: Controller):
        self.drafters, self.controller = drafters, controller
        self._last = None  # (name, drafted depth, started)
        self.tally: dict[str, list[int]] = {}  # drafter -> [passes it drafted for, tokens drafted, kept]: who pays

    def propose(self, context, budget):
        # A drafter with a `bucket` method says which acceptance estimate fits this context, or None
        # when it has nothing to draft here (then it is not a candidate this step).
        buckets = {name: drafter.bucket(context) if hasattr(drafter, "bucket") else name
                   for name, drafter in self.drafters.items()}
        buckets = {name: bucket for name, bucket in buckets.items() if bucket is not None}
        name, k = self.controller.plan(list(buckets), buckets)
        if name is None or budget <= 0:
            self._last = None
            return DraftTree()
        started = time.perf_counter()
        tree = self.drafters[name].propose(context, min(k, budget))
        self._last = (name, buckets[name], tree, time.perf_counter() - started, time.perf_counter())
        self._extra = 0
        return tree

    def verify_rows(self, tree):
        """The chosen drafter's own rows for this pass (PPD prompt tokens), or None."""
        drafter = self.drafters[self._last[0]] if self._last is not None else None
        extra = drafter.verify_rows(tree) if hasattr(drafter, "verify_rows") else None
        self._extra = 0 if extra is None else len(extra.parents)
        return extra

    def read_rows(self, logits, end_row) -> None:
        self.drafters[self._last[0]].read_rows(logits, end_row)

    def observe(self, accepted) -> None:
        if self._last is None:
            return
        name, bucket, tree, draft_s, verify_started = self._last
        verify_s = time.perf_counter() - verify_started
        self.controller.observe(name, tree.depth(), len(accepted) - 1, draft_s, len(tree) + 1 + self._extra,
                                verify_s, bucket)
        self.drafters[name].observe(accepted)
        tally = self.tally.setdefault(name, [0, 0, 0])
        tally[0], tally[1], tally[2] = tally[0] + 1, tally[1] + len(tree), tally[2] + len(accepted) - 1

    def reset(self) -> None:  # a new generation: the tally is per generation
        self.tally = {}
        for drafter in self.drafters.values():
            drafter.reset()
