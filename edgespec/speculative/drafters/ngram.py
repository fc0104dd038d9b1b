"""Prompt lookup / n-gram drafting: copy what followed earlier occurrences of the current suffix.

Free (no model call): an index from every n-gram of the context (n = max_ngram..min_ngram)
to the positions right after its occurrences, updated incrementally as the context grows.
The longest suffix that occurred before wins; up to `branches` distinct continuations
(most recent first) share their common prefixes in one tree.

For `--spec auto` the match length names the controller's acceptance bucket, and each bucket starts from
the acceptance measured for it (PRIORS): greedy outputs of qwen2.5-coder-0.5b on the suite prompts, replayed by
benchmarks/scripts/replay_controller.py, kept the first drafted token after a 1-token match 24% of the time,
after a 2-token match 51%, 3: 54%, 4-6: 78%, 7-8: 93% (each deeper token, given the one before: 55-90%); the
held-out prompts measured within 0.05 of these.

Where the earlier occurrences of the suffix were followed by different tokens, the most recent one (the first
continuation) is often not what comes next: on qwen2.5-coder-0.5b's outputs its token at the depth where the
continuations part was kept 4-11% of the time (against 55-93% elsewhere), on smollm2-135m's (which repeat
themselves) 19% at the first token, 55% deeper. So for `auto` (`for_auto()`) a context whose continuations part at
the first token is its own bucket ("ngram/split", prior 0.1), and a draft stops where they part while the drafter's
own score of such tokens says they are seldom kept (`stop_at_divergence`): it checks each prediction against the
text as it grows, so it learns the rate whether or not the token was drafted.
"""

from __future__ import annotations

from typing import Sequence

from ..tree import DraftTree


# (shortest match length of the bucket, its name), longest first
BUCKETS = ((7, "ngram/n7+"), (4, "ngram/n4-6"), (3, "ngram/n3"), (2, "ngram/n2"), (1, "ngram/n1"))
PRIOR_WEIGHT = 8.0  # worth 8 drafts: one unlucky miss does not stop a bucket from being drafted
SPLIT = "ngram/split"  # the earlier occurrences were followed by different tokens
DIVERGENCE_PRIOR = 0.1  # P(the first continuation's token kept where the continuations part), worth PRIOR_WEIGHT
STOP_BELOW = 0.3  # stop a draft where continuations part while that rate is below this
# bucket -> (P(first token kept), P(a deeper token kept | the one before was), worth in drafts)
PRIORS = {"ngram/n1": (0.25, 0.55, PRIOR_WEIGHT), "ngram/n2": (0.5, 0.7, PRIOR_WEIGHT),
          "ngram/n3": (0.55, 0.8, PRIOR_WEIGHT), "ngram/n4-6": (0.8, 0.85, PRIOR_WEIGHT),
          "ngram/n7+": (0.9, 0.9, PRIOR_WEIGHT), SPLIT: (0.1, 0.55, PRIOR_WEIGHT)}


class NgramDrafter:
    name = "ngram"
    priors = PRIORS

    def __init__(self, max_ngram: int = 8, min_ngram: int = 1, branches: int = 3, max_depth: int = 8,
                 stop_at_divergence: bool = False):
        self.max_ngram, self.min_ngram, self.branches, self.max_depth = max_ngram, min_ngram, branches, max_depth
        self.stop_at_divergence = stop_at_divergence
        self.divergence = [0.0, 0.0]  # decayed [kept, scored] of first-continuation tokens where continuations part
        self.reset()

    @classmethod
    def for_auto(cls) -> "NgramDrafter":
        """As `--spec auto` drafts: matches of every length (the controller keeps acceptance per match length, so
        1-token matches are drafted only where they are followed), chains that stop where continuations part."""
        return cls(min_ngram=1, stop_at_divergence=True)

    def reset(self) -> None:
        self._tokens: list[int] = []
        self._ends: dict[tuple[int, ...], list[int]] = {}  # n-gram -> positions just after each occurrence
        self.last_match = 0  # n of the suffix that matched in the last proposal (0: none)
        self._looked_up = None  # (context length, depth, continuations) of the last lookup
        self._pending: dict[int, int] = {}  # position -> the token predicted there where continuations part

    def divergence_rate(self) -> float:
        """How often the first continuation's token is what comes next where the continuations part."""
        kept, scored = self.divergence
        return (kept + PRIOR_WEIGHT * DIVERGENCE_PRIOR) / (scored + PRIOR_WEIGHT)

    def _index(self, context: Sequence[int]) -> None:
        n_old = len(self._tokens)
        if len(context) < n_old or (n_old and context[n_old - 1] != self._tokens[-1]):
            self.reset()  # a different context: start over
            n_old = 0
        self._tokens.extend(context[n_old:])
        tokens = self._tokens
        for position in [p for p in self._pending if p < len(tokens)]:  # score the predictions the text reached
            kept = tokens[position] == self._pending.pop(position)
            self.divergence = [0.97 * self.divergence[0] + kept, 0.97 * self.divergence[1] + 1]
        for end in range(n_old + 1, len(tokens) + 1):
            for n in range(self.min_ngram, min(self.max_ngram, end) + 1):
                self._ends.setdefault(tuple(tokens[end - n:end]), []).append(end)

    def candidates(self, context: Sequence[int], depth: int) -> list[list[int]]:
        """Up to `branches` distinct continuations of the longest earlier-seen suffix of `context`."""
        self._index(context)
        tokens, length = self._tokens, len(self._tokens)
        self.last_match = 0
        for n in range(min(self.max_ngram, length), self.min_ngram - 1, -1):
            found: list[list[int]] = []
            for end in reversed(self._ends.get(tuple(tokens[length - n:]), ())):
                continuation = tokens[end:end + depth]
                if end < length and continuation and continuation not in found:
                    found.append(continuation)
                    if len(found) == self.branches:
                        break
            if found:
                self.last_match = n
                return found
        return []

    def bucket(self, context: Sequence[int]) -> str | None:
        """For the controller: the match length's bucket (BUCKETS: longer matches are followed more often),
        or None when no suffix of the context occurred before (nothing to draft)."""
        found = self.candidates(context, self.max_depth)
        self._looked_up = (len(context), self.max_depth, found)
        if not found:
            return None
        agreed = agreed_depth(found)
        if agreed and len(found[0]) > agreed:
            self._pending[len(context) + agreed] = found[0][agreed]
        return SPLIT if agreed == 0 else next(name for shortest, name in BUCKETS if self.last_match >= shortest)

    def propose(self, context: Sequence[int], budget: int) -> DraftTree:
        tree = DraftTree()
        depth = min(self.max_depth, budget)
        looked_up = self._looked_up
        self._looked_up = None
        if looked_up is not None and looked_up[0] == len(context) and looked_up[1] >= depth:
            found = [c[:depth] for c in looked_up[2]]  # the lookup `bucket` just did for this context
            found = [c for i, c in enumerate(found) if c not in found[:i]]
        else:
            found = self.candidates(context, depth)
        agreed = agreed_depth(found)
        if self.stop_at_divergence and agreed and self.divergence_rate() < STOP_BELOW:
            found = [found[0][:agreed]]
        for continuation in found:
            parent = -1
            for token in continuation:
                if len(tree) == budget and token not in [tree.tokens[c] for c in tree.children(parent)]:
                    return tree
                parent = tree.add(token, parent)
        return tree

    def observe(self, accepted: Sequence[int]) -> None:
        pass  # the index catches up from the context on the next proposal


def agreed_depth(continuations: list[list[int]]) -> int | None:
    """How many leading tokens all continuations share; None when there is only one (nothing disagrees)."""
    if len(continuations) < 2:
        return None
    depth = 0
    while all(len(c) > depth for c in continuations) and len({c[depth] for c in continuations}) == 1:
        depth += 1
    return depth
