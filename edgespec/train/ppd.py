"""`edgespec train ppd MODEL`: train k PPD prompt-token embeddings against the frozen target.

Prompt row j anchored at position t (sequence x_0..x_n) sits at position t + 1 + j, sees x_0..x_t
and prompt rows 0..j-1 of its own group, and is trained towards the target's distribution for the
token x_{t+2+j}, i.e. the target's own row t + 1 + j (PPD, arXiv 2405.18628):

    loss = sum_j 0.8^j KL( p_target(. | x_<=t+1+j) || p_prompt_j(. | x_<=t) )

Only the k embeddings [k, d] train; the target (TorchLlama: the dequantized weights of the export's
source) is frozen. A step takes one sequence: the real tokens run once without gradients (their K/V
and the teacher's logits), then up to `anchors` groups of k prompt rows run together, each group
masked to its own prefix. Checkpoints every minute and on Ctrl-C; a re-run resumes.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import hub
from ..errors import EdgespecError
from ..sysinfo import peak_rss
from . import data as train_data
from .torch_llama import TorchLlama

log = logging.getLogger(__name__)
DECAY = 0.8  # the paper's weight of depth j: 0.8^j


@dataclass
class PPDOptions:
    k: int = 3  # prompt tokens (draft depth)
    anchors: int = 48  # prompt-row groups per step
    lr: float = 3e-3
    minutes: float | None = 15.0
    steps: int | None = None
    answer_tokens: int = 96
    samples: int = 1  # sampled answers per prompt beside the greedy one
    seed: int = 0
    checkpoint_seconds: float = 60.0
    eval_seconds: float = 120.0  # held-out acceptance every this many seconds of training


def group_mask(anchors: list[int], n: int, k: int) -> torch.Tensor:
    """[A*k, n + A*k] bool: group a's row j sees x_0..x_{anchors[a]} and its own rows 0..j."""
    R = len(anchors) * k
    mask = torch.zeros(R, n + R, dtype=torch.bool)
    own = torch.ones(k, k, dtype=torch.bool).tril()
    for a, t in enumerate(anchors):
        rows = slice(a * k, (a + 1) * k)
        mask[rows, :t + 1] = True
        mask[rows, n + a * k:n + (a + 1) * k] = own
    return mask


def prompt_logits(model: TorchLlama, embeds: torch.Tensor, kv, anchors: list[int], n: int) -> torch.Tensor:
    """Logits [A, k, vocab] of the prompt rows of every anchor."""
    k = embeds.shape[0]
    positions = torch.tensor([t + 1 + j for t in anchors for j in range(k)])
    h, _ = model.rows(embeds.repeat(len(anchors), 1), positions, group_mask(anchors, n, k), kv)
    return model.logits(h).view(len(anchors), k, -1)


def anchors_of(seq: train_data.Sequence, k: int) -> list[int]:
    """Anchors inside the answer whose k targets exist: t + 1 + (k - 1) <= n - 1."""
    return list(range(max(seq.start - 1, 0), len(seq.ids) - k))


def step_loss(model, embeds, seq, anchors) -> torch.Tensor:
    teacher, kv = model.sequence(seq.ids)
    k = embeds.shape[0]
    logits = prompt_logits(model, embeds, kv, anchors, len(seq.ids))
    index = torch.tensor(anchors)[:, None] + 1 + torch.arange(k)[None, :]  # [A, k] teacher rows
    p_log = F.log_softmax(teacher[index], -1)
    q_log = F.log_softmax(logits, -1)
    kl = (p_log.exp() * (p_log - q_log)).sum(-1)  # [A, k]
    return (kl * DECAY ** torch.arange(k)).sum(-1).mean()


@torch.no_grad()
def acceptance(model, embeds, sequences, max_anchors: int = 64) -> list[float]:
    """Held-out chain acceptance per depth: P(drafts 1..d all equal the target's greedy tokens), on the
    target's greedy answers (what greedy verification would accept), top-1 of each prompt row."""
    k, hits, total = embeds.shape[0], np.zeros(embeds.shape[0]), 0
    for seq in sequences:
        anchors = anchors_of(seq, k)[:max_anchors]
        if not anchors:
            continue
        guess = prompt_logits(model, embeds, model.sequence(seq.ids)[1], anchors, len(seq.ids)).argmax(-1)
        truth = torch.tensor([[seq.ids[t + 2 + j] if t + 2 + j < len(seq.ids) else -1 for j in range(k)]
                              for t in anchors])
        hits += torch.cumprod((guess == truth).long(), 1).sum(0).numpy()
        total += len(anchors)
    return [round(float(h / max(total, 1)), 4) for h in hits]


class Trainer:
    def __init__(self, model: TorchLlama, sequences, options: PPDOptions, workdir: Path, data_hash: str):
        self.model, self.options, self.workdir, self.data_hash = model, options, workdir, data_hash
        rng = np.random.default_rng(options.seed)
        greedy = [s for s in sequences if s.greedy and anchors_of(s, options.k)]
        held = set(rng.choice(len(greedy), size=max(1, len(greedy) // 8), replace=False).tolist()) if greedy else set()
        self.held_out = [s for i, s in enumerate(greedy) if i in held]
        self.train = [s for s in sequences if not any(s is h for h in self.held_out) and anchors_of(s, options.k)]
        if not self.train:
            raise EdgespecError("no training sequence is long enough for the prompt tokens; generate longer answers")
        embed = model.w["embed"]
        init = embed.mean(0, keepdim=True).repeat(options.k, 1)
        self.embeds = torch.nn.Parameter(init + 0.01 * embed.std() * torch.randn(init.shape,
                                         generator=torch.Generator().manual_seed(options.seed)))
        self.optimizer = torch.optim.Adam([self.embeds], lr=options.lr)
        self.step, self.seconds, self.curve = 0, 0.0, []
        self.checkpoint = workdir / "checkpoint.pt"
        self._resume()

    def _resume(self) -> None:
        if not self.checkpoint.is_file():
            return
        state = torch.load(self.checkpoint, weights_only=False)
        if state["data_hash"] != self.data_hash or state["options"]["k"] != self.options.k:
            log.warning("checkpoint %s is for other data or k; starting over", self.checkpoint)
            return
        with torch.no_grad():
            self.embeds.copy_(state["embeds"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.seconds, self.curve = state["step"], state["seconds"], state["curve"]
        log.info("resuming PPD training at step %d (%.1f min done)", self.step, self.seconds / 60)

    def save_checkpoint(self) -> None:
        tmp = self.checkpoint.with_name(self.checkpoint.name + ".partial")
        torch.save({"embeds": self.embeds.detach().clone(), "optimizer": self.optimizer.state_dict(),
                    "step": self.step, "seconds": self.seconds, "curve": self.curve, "data_hash": self.data_hash,
                    "options": asdict(self.options)}, tmp)
        tmp.replace(self.checkpoint)

    def evaluate(self) -> list[float]:
        acc = acceptance(self.model, self.embeds, self.held_out)
        self.curve.append({"minutes": round(self.seconds / 60, 2), "step": self.step, "acceptance": acc})
        log.info("step %d, %.1f min: held-out acceptance per depth %s", self.step, self.seconds / 60, acc)
        return acc

    def run(self, progress=None) -> None:
        o = self.options
        rng = np.random.default_rng(o.seed + self.step)
        budget_s = math.inf if o.minutes is None else 60 * o.minutes
        last_checkpoint = last_eval = time.monotonic()
        if not self.curve:
            self.evaluate()
        try:
            while (o.steps is None or self.step < o.steps) and self.seconds < budget_s:
                started = time.monotonic()
                seq = self.train[int(rng.integers(len(self.train)))]
                candidates = anchors_of(seq, o.k)
                anchors = sorted(rng.choice(candidates, size=min(o.anchors, len(candidates)), replace=False).tolist())
                loss = step_loss(self.model, self.embeds, seq, anchors)
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                self.step += 1
                self.seconds += time.monotonic() - started
                if progress is not None:
                    progress(self, float(loss))
                now = time.monotonic()
                if now - last_eval > o.eval_seconds:
                    self.evaluate()
                    last_eval = time.monotonic()
                if now - last_checkpoint > o.checkpoint_seconds:
                    self.save_checkpoint()
                    last_checkpoint = now
        finally:  # Ctrl-C included: what was trained is kept and a re-run resumes from here
            self.save_checkpoint()
        if not self.curve or self.curve[-1]["step"] != self.step:
            self.evaluate()
        self.save_checkpoint()


def workdir_for(export_hash: str) -> Path:
    path = hub.cache_dir() / "train" / f"ppd-{export_hash}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def prepare_data(model, workdir: Path, options: PPDOptions, texts=()) -> list[train_data.Sequence]:
    """The self-distillation set of this export, generated once (onnxruntime) and kept in `workdir`."""
    path = workdir / ("data.npz" if not texts else f"data-{hub.source_key(texts[0], *texts[1:])}.npz")
    if path.is_file():
        return train_data.load(path)
    log.info("generating self-distillation data with %s on onnxruntime", model.ref.name)
    sequences = train_data.generate(model, options.answer_tokens, options.samples, texts, options.seed)
    train_data.save(path, sequences)
    return sequences


def record_for(trainer: Trainer, export_hash: str, model_name: str, sequences) -> dict:
    acc = trainer.curve[-1]["acceptance"]
    return {"kind": "ppd", "k": trainer.options.k, "export_hash": export_hash, "model": model_name,
            "training_data": {"hash": trainer.data_hash, "sequences": len(sequences),
                              "tokens": sum(len(s.ids) - s.start for s in sequences),
                              "source": "edgespec/train/prompts.txt (written for edgespec) answered by the model "
                                        "itself (greedy + sampled), plus any --text files"},
            "steps": trainer.step, "minutes": round(trainer.seconds / 60, 2),
            "acceptance_per_depth": acc, "acceptance_measured_on": "held-out greedy answers, top-1 chain, torch fp32",
            "curve": trainer.curve, "peak_rss_bytes": peak_rss(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
