"""Training PPD drafters ([train] extra; skipped without torch): the torch model equals the numpy
reference, prompt-row training lowers the loss and writes a drafter the runtime loads."""

from __future__ import annotations

import numpy as np
import pytest

from edgespec.models.llama import LlamaReference

from .tiny import TINY_CONFIGS, random_weights

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_torch_model_matches_the_numpy_reference(arch):
    from edgespec.train.torch_llama import TorchLlama

    config = TINY_CONFIGS[arch]
    weights = random_weights(config)
    ids = list(np.random.default_rng(1).integers(config.vocab_size, size=12))
    ref = LlamaReference(config, weights)
    model = TorchLlama(config, weights)
    logits, kv = model.sequence(ids)
    np.testing.assert_allclose(logits.numpy(), ref.forward(ids), atol=1e-4)
    # rows over a cached sequence: extra rows anchored at position 5 (seeing tokens 0..5 and each
    # other) equal the reference fed those tokens and the same rows appended
    extra = weights["embed"][[3, 4]] * 0.7
    mask = torch.zeros(2, 12 + 2, dtype=torch.bool)
    mask[:, :6] = True
    mask[:, 12:] = torch.ones(2, 2, dtype=torch.bool).tril()
    h, _ = model.rows(torch.from_numpy(extra), torch.tensor([6, 7]), mask, kv)
    expected = LlamaReference(config, weights).forward(ids[:6], extra_embeds=extra)[6:]
    np.testing.assert_allclose(model.logits(h).detach().numpy(), expected, atol=1e-4)


def _tiny_sequences(config, weights, n_seq=4, length=20):
    """The tiny model's own greedy continuations of random prompts (self-distillation in miniature)."""
    from edgespec.train.data import Sequence

    ref, rng, out = LlamaReference(config, weights), np.random.default_rng(0), []
    for i in range(n_seq):
        ids = rng.integers(config.vocab_size, size=6).tolist()
        for _ in range(length):
            ids.append(int(ref.forward(ids)[-1].argmax()))
        out.append(Sequence(ids, 6, "test", greedy=i % 2 == 0))
    return out


@pytest.mark.parametrize("kind", ["ppd", "s3d"])
def test_training_lowers_the_loss_and_resumes(tmp_path, kind):
    from edgespec.train.data import data_hash
    from edgespec.train.run import objective_for
    from edgespec.train.torch_llama import TorchLlama
    from edgespec.train.trainer import Trainer, TrainOptions

    torch.set_num_threads(1)
    config = TINY_CONFIGS["llama"]
    weights = random_weights(config)
    model, sequences = TorchLlama(config, weights), _tiny_sequences(config, weights)
    options = TrainOptions(k=3, anchors=8, lr=0.05, minutes=None, steps=20, eval_seconds=1e9)
    objective = objective_for(kind, options, config.num_layers)

    def loss(embeds):
        with torch.no_grad():
            return sum(float(objective.loss(model, embeds, s, list(range(6, 15)))) for s in sequences)

    trainer = Trainer(model, sequences, options, tmp_path, data_hash(sequences), objective)
    before = loss(trainer.embeds)
    trainer.run()
    assert trainer.step == 20 and loss(trainer.embeds) < 0.9 * before
    assert trainer.curve[0]["step"] == 0 and trainer.curve[-1]["step"] == 20
    # a second trainer on the same data resumes from the checkpoint; more steps continue from there
    again = Trainer(model, sequences, TrainOptions(**{**options.__dict__, "steps": 23}), tmp_path,
                    data_hash(sequences), objective)
    assert again.step == 20 and torch.equal(again.embeds.detach(), trainer.embeds.detach())
    again.run()
    assert again.step == 23
    # only the drafter's rows trained: the model's weights are the ones it was built from
    np.testing.assert_array_equal(model.w["layers.0.q"].numpy(), weights["layers.0.q"])


def test_s3d_draft_rows_in_torch_equal_the_onnx_layer_plan():
    """The rows S3D trains (root + mask rows, middle layers skipped, over the full model's prefix K/V)
    are what the export computes with a layer plan and extra_embeds."""
    from edgespec.models.llama.graph import build_graph
    from edgespec.runtimes.ort import OrtBackend
    from edgespec.train.ppd import group_mask
    from edgespec.train.torch_llama import TorchLlama

    config = TINY_CONFIGS["qwen2"]
    weights = random_weights(config)
    ids = list(np.random.default_rng(2).integers(config.vocab_size, size=10))
    mask_rows = weights["embed"][[5, 6]] * 0.3
    model = TorchLlama(config, weights)
    _, kv = model.sequence(ids)
    t = 7  # the root x_7 after the prefix x_0..x_6
    rows = torch.cat([model.embed([ids[t]]), torch.from_numpy(mask_rows)])
    h, _ = model.rows(rows, torch.tensor([7, 8, 9]), group_mask([t], len(ids), 3, sees_anchor=False), kv, skip={1})
    backend = OrtBackend(build_graph(config, weights, 64, extra_embeds=True, layer_plans=True).SerializeToString(),
                         config, 64)
    backend.forward(ids[:t])
    got = backend.forward([ids[t]], extra_embeds=mask_rows, plan=np.array([True, False]))
    np.testing.assert_allclose(got, model.logits(h).detach().numpy(), atol=1e-4)


def test_training_progress_reaches_a_log_every_30_seconds_with_an_estimate(monkeypatch, caplog):
    """Without a terminal the progress line goes to the log by time, not by step count: a 4-second step
    (qwen 0.5b on one core) must not leave the log silent for 50 steps."""
    import logging
    import types

    from edgespec.train import run as train_run
    from edgespec.train.trainer import TrainOptions

    clock = [1000.0]
    monkeypatch.setattr(train_run.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(train_run.sys.stderr, "isatty", lambda: False, raising=False)
    report = train_run._reporter("ppd", TrainOptions(minutes=10.0))
    trainer = types.SimpleNamespace(step=0, seconds=0.0)
    with caplog.at_level(logging.INFO, logger=train_run.log.name):
        for step in range(1, 31):  # 30 steps of 4 s: two minutes
            clock[0] += 4.0
            trainer.step, trainer.seconds = step, 4.0 * step
            report(trainer, 2.0)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("train ppd:")]
    assert 4 <= len(lines) <= 5, lines  # one per 30 s, not one per 50 steps (which would be none here)
    assert "step 25," in lines[-1] and "ETA 8.3 min" in lines[-1] and "4.00 s/step" in lines[-1]
