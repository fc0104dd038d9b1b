"""PPD's objective: k prompt-token embeddings trained against the frozen target (arXiv 2405.18628).

Prompt row j anchored at position t (sequence x_0..x_n) sits at position t + 1 + j, sees x_0..x_t
and prompt rows 0..j-1 of its own group, and is trained towards the target's distribution for the
token x_{t+2+j}, i.e. the target's own row t + 1 + j:

    loss = sum_j 0.8^j KL( p_target(. | x_<=t+1+j) || p_prompt_j(. | x_<=t) )

A step runs the real tokens once without gradients (their K/V and the teacher's logits), then up
to `anchors` groups of k prompt rows together, each group masked to its own prefix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DECAY = 0.8  # the paper's weight of depth j: 0.8^j


def group_mask(anchors: list[int], n: int, size: int, sees_anchor: bool = True) -> torch.Tensor:
    """[A*size, n + A*size] bool: group a's row j sees x_0..x_t (t = anchors[a]; x_t itself only if
    sees_anchor) and its own rows 0..j."""
    R = len(anchors) * size
    mask = torch.zeros(R, n + R, dtype=torch.bool)
    own = torch.ones(size, size, dtype=torch.bool).tril()
    for a, t in enumerate(anchors):
        rows = slice(a * size, (a + 1) * size)
        mask[rows, :t + int(sees_anchor)] = True
        mask[rows, n + a * size:n + (a + 1) * size] = own
    return mask


def distill_loss(teacher: torch.Tensor, logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """sum_j 0.8^j KL(softmax(teacher[index[:, j]]) || softmax(logits[:, j])), mean over anchors."""
    p_log = F.log_softmax(teacher[index], -1)
    kl = (p_log.exp() * (p_log - F.log_softmax(logits, -1))).sum(-1)  # [A, depth]
    return (kl * DECAY ** torch.arange(index.shape[1])).sum(-1).mean()


@torch.no_grad()
def chain_acceptance(objective, model, embeds, sequences, max_anchors: int = 40) -> list[float]:
    """Held-out chain acceptance per depth: P(drafts 1..d all equal the target's greedy tokens), on the
    target's greedy answers (what greedy verification accepts), top-1 of each drafting row."""
    hits, total = None, 0
    for seq in sequences:
        anchors = objective.anchors(seq)[:max_anchors]
        if not anchors:
            continue
        logits, truth_index = objective.draft_logits(model, embeds, seq, anchors, model.sequence(seq.ids))
        truth = torch.tensor(seq.ids)[truth_index + 1]
        found = torch.cumprod((logits.argmax(-1) == truth).long(), 1).sum(0).numpy()
        hits = found if hits is None else hits + found
        total += len(anchors)
    return [round(float(h / max(total, 1)), 4) for h in (hits if hits is not None else [])]


class RowsObjective:
    """Shared by the objectives: distillation loss and held-out acceptance over `draft_logits`."""

    def loss(self, model, embeds, seq, anchors) -> torch.Tensor:
        sequence = model.sequence(seq.ids)
        logits, index = self.draft_logits(model, embeds, seq, anchors, sequence)
        return distill_loss(sequence[0], logits, index)

    def acceptance(self, model, embeds, sequences) -> list[float]:
        return chain_acceptance(self, model, embeds, sequences)


class PPDObjective(RowsObjective):
    kind = "ppd"

    def __init__(self, k: int = 3):
        self.rows = k

    def describe(self) -> dict:
        return {"k": self.rows}

    def anchors(self, seq) -> list[int]:
        """Anchors inside the answer whose k targets exist: t + 1 + (k - 1) <= n - 1."""
        return list(range(max(seq.start - 1, 0), len(seq.ids) - self.rows - 1))

    def draft_logits(self, model, embeds, seq, anchors, sequence):
        """(logits [A, k, vocab] of the prompt rows, teacher row index [A, k]) for these anchors."""
        _, kv = sequence
        k, n = self.rows, len(seq.ids)
        positions = torch.tensor([t + 1 + j for t in anchors for j in range(k)])
        h, _ = model.rows(embeds.repeat(len(anchors), 1), positions, group_mask(anchors, n, k), kv)
        index = torch.tensor(anchors)[:, None] + 1 + torch.arange(k)[None, :]
        return model.logits(h).view(len(anchors), k, -1), index

