"""The `edgespec train` command's work: load -> self-distillation data -> train -> store in the export."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import torch

from ..errors import EdgespecError
from ..export.manifest import read_manifest
from ..export.trained import export_hash, register_in_export, save_drafter
from ..formats import open_weights
from . import data as train_data
from .ppd import PPDObjective
from ..speculative.drafters.s3d import middle_skip
from .s3d import S3DObjective
from .torch_llama import TorchLlama
from .trainer import TrainOptions, Trainer, prepare_data, workdir_for

log = logging.getLogger(__name__)


def objective_for(kind: str, options: TrainOptions, num_layers: int):
    """ppd: k prompt tokens; s3d: a draft of k tokens (k - 1 mask rows) with the middle layers skipped."""
    if kind == "ppd":
        return PPDObjective(options.k)
    if kind == "s3d":
        if options.k < 2:
            raise EdgespecError(f"s3d drafts gamma >= 2 tokens per pass; got --k {options.k}")
        return S3DObjective(options.k, middle_skip(num_layers))
    raise EdgespecError(f"unknown drafter kind '{kind}'; expected ppd or s3d")


def train(kind: str, spec: str, options: TrainOptions, out: str | Path | None = None, texts=(), threads: int = 0,
          show_progress: bool = True) -> tuple[Path, dict]:
    """Train a `kind` drafter for the ONNX export of `spec`; returns (drafter file, its record).

    Without `out` the drafter is stored in the export directory and listed in its manifest, so
    `--spec ppd` / `--spec s3d` find it; with `out` it is written there (`--spec ppd:FILE`)."""
    from ..api import load

    if threads:
        torch.set_num_threads(threads)
    # S3D drafts through the layer plans: it is trained for (and stored in) the export variant that has them
    model = load(spec, backend="ort", threads=threads, layer_plans=kind == "s3d")
    export_dir = Path(model.source)
    manifest = read_manifest(export_dir)
    target = export_hash(manifest)
    objective = objective_for(kind, options, model.config.num_layers)
    workdir = workdir_for(manifest)
    sequences = prepare_data(model, workdir, options, tuple(str(t) for t in texts))
    del model  # the onnxruntime session is not needed while training
    log.info("loading %s into torch (dequantized, frozen)", manifest["source"]["name"])
    torch_model = TorchLlama.from_source(open_weights(manifest["source"]["path"]))
    trainer = Trainer(torch_model, sequences, options, workdir, train_data.data_hash(sequences), objective)
    log.info("training %d %s rows on %d sequences (%d held out); checkpoints in %s", objective.rows, kind,
             len(trainer.train), len(trainer.held_out), workdir)
    trainer.run(_reporter(kind, options) if show_progress else None)
    record = trainer.record(target, manifest["source"]["name"], sequences)
    path = Path(out) if out else export_dir / f"{kind}.npz"
    save_drafter(path, trainer.embeds.detach().numpy(), record)
    if not out:
        register_in_export(export_dir, path, record)
    return path, record


def _reporter(kind: str, options: TrainOptions):
    """One progress line: step, loss, elapsed and the estimate of what is left (minutes or steps budget)."""
    state = {"loss": None, "drawn": 0.0}
    tty = sys.stderr.isatty()

    def report(trainer, loss: float) -> None:
        state["loss"] = loss if state["loss"] is None else 0.95 * state["loss"] + 0.05 * loss
        now = time.monotonic()
        # a terminal line redrawn every second; a log line every 30 s (a qwen 0.5b step takes ~4 s on
        # one core: counting steps left a log silent for minutes)
        if now - state["drawn"] < (1.0 if tty else 30.0):
            return
        state["drawn"] = now
        per_step = trainer.seconds / max(trainer.step, 1)
        left = []
        if options.minutes is not None:
            left.append(60 * options.minutes - trainer.seconds)
        if options.steps is not None:
            left.append((options.steps - trainer.step) * per_step)
        eta = max(min(left), 0) if left else 0
        line = (f"train {kind}: step {trainer.step}, loss {state['loss']:.3f}, {trainer.seconds / 60:.1f} min, "
                f"{per_step:.2f} s/step, ETA {eta / 60:.1f} min")
        if tty:
            sys.stderr.write("\r" + line + " ")
            sys.stderr.flush()
        else:
            log.info(line)

    return report
