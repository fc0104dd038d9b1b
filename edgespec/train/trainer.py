"""The training loop shared by the trained drafters: a frozen TorchLlama, trainable input rows, an objective.

An objective (ppd.PPDObjective, s3d.S3DObjective) says which anchors of a sequence it trains on, its
loss for a batch of anchors, and its held-out acceptance per depth. The loop takes one sequence per
step, checkpoints every minute and on Ctrl-C (a re-run resumes: same data, same kind and row count),
and records held-out acceptance against minutes of training.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .. import hub
from ..errors import EdgespecError
from ..sysinfo import peak_rss
from . import data as train_data

log = logging.getLogger(__name__)


@dataclass
class TrainOptions:
    k: int = 3  # trained rows: PPD prompt tokens, or S3D draft length gamma (gamma - 1 mask rows)
    anchors: int = 16  # row groups per step
    lr: float = 3e-3
    minutes: float | None = 15.0
    steps: int | None = None
    answer_tokens: int = 96
    samples: int = 1  # sampled answers per prompt beside the greedy one
    seed: int = 0
    checkpoint_seconds: float = 60.0
    eval_seconds: float = 180.0  # held-out acceptance every this many seconds of training


class Trainer:
    def __init__(self, model, sequences, options: TrainOptions, workdir: Path, data_hash: str, objective):
        self.model, self.options, self.workdir, self.data_hash = model, options, workdir, data_hash
        self.objective = objective
        model.keep_sequences = True  # frozen target: each real pass once (~10 MB per 100-token sequence)
        rng = np.random.default_rng(options.seed)
        greedy = [s for s in sequences if s.greedy and objective.anchors(s)]
        held = set(rng.choice(len(greedy), size=min(max(1, len(greedy) // 8), 6), replace=False).tolist()) \
            if greedy else set()
        self.held_out = [s for i, s in enumerate(greedy) if i in held]
        self.train = [s for s in sequences if not any(s is h for h in self.held_out) and objective.anchors(s)]
        if not self.train:
            raise EdgespecError("no training sequence is long enough for the drafter; generate longer answers")
        embed = model.w["embed"]
        init = embed.mean(0, keepdim=True).repeat(objective.rows, 1)
        self.embeds = torch.nn.Parameter(init + 0.01 * embed.std() * torch.randn(
            init.shape, generator=torch.Generator().manual_seed(options.seed)))
        self.optimizer = torch.optim.Adam([self.embeds], lr=options.lr)
        self.step, self.seconds, self.curve = 0, 0.0, []
        self.checkpoint = workdir / f"checkpoint-{objective.kind}.pt"
        self._resume()

    def _resume(self) -> None:
        if not self.checkpoint.is_file():
            return
        state = torch.load(self.checkpoint, weights_only=False)
        if state["data_hash"] != self.data_hash or tuple(state["embeds"].shape) != tuple(self.embeds.shape):
            log.warning("checkpoint %s is for other data or another row count; starting over", self.checkpoint)
            return
        with torch.no_grad():
            self.embeds.copy_(state["embeds"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.seconds, self.curve = state["step"], state["seconds"], state["curve"]
        log.info("resuming %s training at step %d (%.1f min done)", self.objective.kind, self.step, self.seconds / 60)

    def save_checkpoint(self) -> None:
        tmp = self.checkpoint.with_name(self.checkpoint.name + ".partial")
        torch.save({"embeds": self.embeds.detach().clone(), "optimizer": self.optimizer.state_dict(),
                    "step": self.step, "seconds": self.seconds, "curve": self.curve, "data_hash": self.data_hash,
                    "options": asdict(self.options)}, tmp)
        tmp.replace(self.checkpoint)

    def evaluate(self) -> list[float]:
        acc = self.objective.acceptance(self.model, self.embeds, self.held_out)
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
                candidates = self.objective.anchors(seq)
                anchors = sorted(rng.choice(candidates, size=min(o.anchors, len(candidates)), replace=False).tolist())
                loss = self.objective.loss(self.model, self.embeds, seq, anchors)
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                self.step += 1
                self.seconds += time.monotonic() - started
                if progress is not None:
                    progress(self, loss.item())
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

    def record(self, export_hash: str, model_name: str, sequences) -> dict:
        return {"kind": self.objective.kind, **self.objective.describe(), "export_hash": export_hash,
                "model": model_name,
                "training_data": {"hash": self.data_hash, "sequences": len(sequences),
                                  "tokens": sum(len(s.ids) - s.start for s in sequences),
                                  "source": "edgespec/train/prompts.txt (written for edgespec) answered by the "
                                            f"model itself (greedy + {self.options.samples} sampled per prompt, "
                                            f"{self.options.answer_tokens} tokens), plus any --text files"},
                "steps": self.step, "minutes": round(self.seconds / 60, 2),
                "acceptance_per_depth": self.curve[-1]["acceptance"],
                "acceptance_measured_on": "held-out greedy answers, top-1 chain, torch fp32",
                "curve": self.curve, "peak_rss_bytes": peak_rss(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def workdir_for(manifest: dict) -> Path:
    """Data and checkpoints are keyed by the export's weights (its .data file's sha256): they depend on
    the weights alone, so a re-export that only changes the graph's form resumes from them. The drafter
    itself is bound to the whole export it is saved into (export/trained.py)."""
    files = manifest.get("files", {})
    weights = next((entry["sha256"] for name, entry in sorted(files.items()) if name.endswith(".data")), None)
    if weights is None:
        raise EdgespecError("this export has no weights data file listed in its manifest: export it again")
    path = hub.cache_dir() / "train" / f"weights-{weights[:16]}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def prepare_data(model, workdir: Path, options: TrainOptions, texts=()) -> list[train_data.Sequence]:
    """The self-distillation set of this export, generated once (onnxruntime) and kept in `workdir`."""
    key = f"{options.answer_tokens}x{options.samples}" + (f"-{hub.source_key(texts[0], *texts[1:])}" if texts else "")
    path = workdir / f"data-{key}.npz"
    if path.is_file():
        return train_data.load(path)
    log.info("generating self-distillation data with %s on onnxruntime", model.ref.name)
    sequences = train_data.generate(model, options.answer_tokens, options.samples, texts, options.seed)
    train_data.save(path, sequences)
    return sequences
