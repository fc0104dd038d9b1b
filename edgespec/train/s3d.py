"""S3D's objective (Skippy Simultaneous Speculative Decoding, arXiv 2405.20314): gamma - 1 mask-token
embeddings for a draft pass that skips a middle block of layers.

The draft pass anchored at t feeds the root x_t at position t and mask rows at t+1 .. t+gamma-1,
runs only the layers outside `skip`, and attends to the prefix's K/V from the full model (the
target's cache) and causally to its own rows. Row i predicts x_{t+1+i}; trained towards the full
model's row t + i with the PPD weights 0.8^i (the root row has nothing to train: it only reports).
"""

from __future__ import annotations

import torch

from .ppd import RowsObjective, group_mask


class S3DObjective(RowsObjective):
    kind = "s3d"

    def __init__(self, gamma: int, skip):
        self.gamma, self.skip, self.rows = gamma, sorted(skip), gamma - 1

    def describe(self) -> dict:
        return {"gamma": self.gamma, "skip": self.skip}

    def anchors(self, seq) -> list[int]:
        """Roots inside the answer whose gamma targets exist: t + gamma <= n - 1."""
        return list(range(max(seq.start - 1, 1), len(seq.ids) - self.gamma))

    def draft_logits(self, model, embeds, seq, anchors, sequence):
        """(logits [A, gamma, vocab] of the draft rows, teacher row index [A, gamma])."""
        _, kv = sequence
        g, n = self.gamma, len(seq.ids)
        rows = torch.cat([torch.cat([model.embed([seq.ids[t]]), embeds]) for t in anchors])
        positions = torch.tensor([t + i for t in anchors for i in range(g)])
        h, _ = model.rows(rows, positions, group_mask(anchors, n, g, sees_anchor=False), kv, skip=set(self.skip))
        index = torch.tensor(anchors)[:, None] + torch.arange(g)[None, :]
        return model.logits(h).view(len(anchors), g, -1), index
