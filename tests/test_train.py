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


def test_ppd_training_lowers_the_loss_and_resumes(tmp_path):
    from edgespec.train.data import data_hash
    from edgespec.train.ppd import PPDOptions, Trainer, step_loss
    from edgespec.train.torch_llama import TorchLlama

    config = TINY_CONFIGS["llama"]
    weights = random_weights(config)
    model, sequences = TorchLlama(config, weights), _tiny_sequences(config, weights)
    options = PPDOptions(k=3, anchors=8, lr=0.05, minutes=None, steps=30, eval_seconds=1e9)

    def loss(embeds):
        with torch.no_grad():
            return sum(float(step_loss(model, embeds, s, list(range(5, 15)))) for s in sequences)

    trainer = Trainer(model, sequences, options, tmp_path, data_hash(sequences))
    before = loss(trainer.embeds)
    trainer.run()
    assert trainer.step == 30 and loss(trainer.embeds) < 0.8 * before
    assert trainer.curve[0]["step"] == 0 and trainer.curve[-1]["step"] == 30
    # a second trainer on the same data resumes from the checkpoint; more steps continue from there
    again = Trainer(model, sequences, PPDOptions(**{**options.__dict__, "steps": 35}), tmp_path,
                    data_hash(sequences))
    assert again.step == 30 and torch.equal(again.embeds.detach(), trainer.embeds.detach())
    again.run()
    assert again.step == 35
    # only the prompt tokens trained: the model's weights are the ones it was built from
    np.testing.assert_array_equal(model.w["layers.0.q"].numpy(), weights["layers.0.q"])
