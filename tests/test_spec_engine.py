"""The speculative engine on tiny random fp32 models: every drafter's greedy output == plain greedy,
token for token, on the numpy reference and on onnxruntime; the cache invariant; Ctrl-C."""

from __future__ import annotations

import numpy as np
import pytest

from edgespec.errors import EdgespecError
from edgespec.models.llama.reference import LlamaReference
from edgespec.models.llama.graph import build_graph
from edgespec.runtimes.ort import OrtBackend
from edgespec.runtimes.reference import ReferenceBackend
from edgespec.sampling import Sampler, SamplingParams
from edgespec.speculative.controller import Controller, ControlledDrafter, CostModel
from edgespec.speculative.drafters.draft_model import DraftModelDrafter
from edgespec.speculative.drafters.layerskip import LayerSkipDrafter
from edgespec.speculative.drafters.ngram import NgramDrafter
from edgespec.speculative.engine import SpecStats, decode
from edgespec.speculative.tree import DraftTree

from .tiny import TINY_CONFIGS, random_weights

MAX_LEN = 128
CONFIG = TINY_CONFIGS["llama"]
PROMPT = [5, 17, 33, 8, 5, 17, 33, 8, 5, 17, 60, 2, 9]


def make_backend(kind: str, seed: int = 0):
    weights = random_weights(CONFIG, seed)
    if kind == "reference":
        return ReferenceBackend(LlamaReference(CONFIG, weights), MAX_LEN)
    # with layer plans, so the layer-skip drafters run on it too
    return OrtBackend(build_graph(CONFIG, weights, MAX_LEN, layer_plans=True).SerializeToString(), CONFIG, MAX_LEN,
                      threads=1)


class OracleTreeDrafter:
    """Drafts a tree around a known continuation: the right token among wrong siblings, then
    right-or-wrong chains below it, so every verification branch (accept, reject, bonus) happens."""

    name = "oracle"

    def __init__(self, truth: list[int], prompt_len: int, vocab: int, seed: int = 0):
        self.truth, self.prompt_len, self.vocab = truth, prompt_len, vocab
        self.rng = np.random.default_rng(seed)

    def propose(self, context, budget):
        done = len(context) - self.prompt_len  # generated so far (the root included)
        ahead = self.truth[done:done + 4]
        tree, parent = DraftTree(), -1
        for depth, token in enumerate(ahead):
            if len(tree) + 2 > budget:
                break
            wrong = int((token + 1 + self.rng.integers(self.vocab - 1)) % self.vocab)
            tree.add(wrong, parent)  # a wrong sibling first
            right = token if self.rng.random() < 0.8 else int((token + 1) % self.vocab)
            parent = tree.add(right, parent)
        return tree

    def observe(self, accepted):
        pass

    def reset(self):
        pass


def run(backend, drafter=None, n=40, budget=8, exact=False, stats=None):
    return [e.token for e in decode(backend, PROMPT, Sampler(SamplingParams()), n, drafter, budget, stats,
                                    exact=exact)]


@pytest.fixture(params=["reference", "ort"])
def backend(request):
    return make_backend(request.param)


def _drafters(backend, truth):
    drafters = {"ngram": NgramDrafter(), "oracle-tree": OracleTreeDrafter(truth, len(PROMPT), CONFIG.vocab_size),
                "draft-model": DraftModelDrafter(make_backend(backend.name, seed=1), draft_len=3),
                "self-as-draft": DraftModelDrafter(make_backend(backend.name, seed=0), draft_len=5)}
    if backend.supports_plan():
        drafters["layerskip"] = LayerSkipDrafter(backend, CONFIG.num_layers, [1], draft_len=3)
        cost = CostModel(list(range(1, 10)), [1.0] * 9)  # a device where verification is free
        drafters["auto"] = ControlledDrafter({"ngram": NgramDrafter(), "layerskip": LayerSkipDrafter(
            backend, CONFIG.num_layers, [1], draft_len=3)}, Controller(cost, free={"ngram"}))
    return drafters


@pytest.mark.parametrize("exact", [False, True])
def test_every_drafter_reproduces_plain_greedy(backend, exact):
    plain = run(backend, exact=exact)
    for name, drafter in _drafters(backend, plain).items():
        stats = SpecStats()
        assert run(backend, drafter, exact=exact, stats=stats) == plain, name
        assert backend.cache_len == len(PROMPT) + len(plain) - 1  # every emitted token but the last
        if name in ("self-as-draft", "oracle-tree"):
            assert stats.accepted > 0, f"{name} never had a draft accepted: {stats.as_dict()}"


def test_exact_mode_has_no_one_row_pass(backend):
    rows = []
    forward = backend.forward
    backend.forward = lambda tokens, *a, **k: rows.append(len(tokens)) or forward(tokens, *a, **k)
    run(backend, NgramDrafter(), n=20, exact=True)
    assert min(rows) >= 2


def test_early_stop_leaves_exactly_the_consumed_tokens_cached(backend):
    plain = run(backend)
    events = decode(backend, PROMPT, Sampler(SamplingParams()), 40, OracleTreeDrafter(plain, len(PROMPT), 97), 8)
    taken = [next(events).token for _ in range(7)]
    events.close()  # like a stop string or EOS in the middle of an accepted run
    assert taken == plain[:7] and backend.cache_len == len(PROMPT) + 6


def test_ctrl_c_mid_step_rolls_back(backend):
    plain = run(backend)
    calls, forward = [0], backend.forward

    def interrupting(tokens, *a, **k):
        calls[0] += 1
        if calls[0] == 5:
            raise KeyboardInterrupt
        return forward(tokens, *a, **k)

    backend.forward = interrupting
    taken = []
    with pytest.raises(KeyboardInterrupt):
        for event in decode(backend, PROMPT, Sampler(SamplingParams()), 40, NgramDrafter(), 8):
            taken.append(event.token)
    backend.forward = forward
    assert backend.cache_len == len(PROMPT) + len(taken) - 1
    assert taken == plain[:len(taken)]
    # and the cache is usable: continuing from it gives the plain continuation
    logits = backend.forward([taken[-1]])[-1]
    assert int(np.argmax(logits)) == plain[len(taken)]


def test_layerskip_refuses_backends_without_plans():
    with pytest.raises(EdgespecError, match="layer plans"):
        LayerSkipDrafter(make_backend("reference"), CONFIG.num_layers, [1])
    with pytest.raises(EdgespecError, match=r"names layers \[7\]"):
        LayerSkipDrafter(make_backend("ort"), CONFIG.num_layers, [1, 7])


def test_ngram_drafts_the_continuations_of_the_longest_match():
    drafter = NgramDrafter(max_ngram=3, branches=2)
    tree = drafter.propose([1, 2, 3, 4, 9, 2, 3, 5, 7, 2, 3], budget=8)
    assert drafter.last_match == 2  # "7 2 3" never occurred before; "2 3" did, twice
    assert tree.first_chain().tokens == [5, 7, 2, 3]  # the most recent occurrence first
    assert [tree.tokens[i] for i in tree.children(-1)] == [5, 4] and len(tree) == 8
    assert len(drafter.propose([1, 2, 3], budget=8)) == 0  # nothing repeats yet


def test_tune_stores_the_calibration_and_layerskip_uses_it(smollm2_gguf):
    import json

    from edgespec.api import load

    from .test_cli import run_cli

    result = run_cli("tune", str(smollm2_gguf), "--threads", "2", "--tokens", "12", timeout=900)
    assert result.returncode == 0, result.stderr.decode()
    # tune ran on the export variant with layer plans; --spec layerskip opens that one, using the stored
    # calibration (no second search)
    model = load(str(smollm2_gguf), threads=2, spec="layerskip")
    entries = [d for d in json.loads((model.source / "edgespec.json").read_text())["drafters"]
               if d["kind"] == "layerskip" and d["threads"] == 2]
    assert len(entries) == 1 and entries[0]["candidates"] and "pays" in entries[0]
    assert model.drafter.skip == entries[0]["skip"] and model.drafter.draft_len == entries[0]["draft_len"]
    assert str(model.source) in result.stdout.decode() and "tok/s" in result.stdout.decode()
    # the default export has no layer plans (they cost every plain step) and says how to get them
    default = load(str(smollm2_gguf), threads=2)
    assert default.source != model.source and not default.backend.supports_plan()
    with pytest.raises(EdgespecError, match=r"has none .*--spec layerskip / s3d or --layer-plans"):
        default.set_spec("layerskip")


def test_draft_model_with_another_vocabulary_is_refused_naming_the_token(smollm2_gguf, qwen05_gguf):
    from edgespec.errors import TokenizerError
    from edgespec.formats import open_weights
    from edgespec.speculative.drafters.draft_model import check_same_vocabulary
    from edgespec.tokenizer import tokenizer_for

    def tokenizer(path):
        source = open_weights(path)
        return tokenizer_for("gguf", path, source.metadata, source.config.vocab_size)

    qwen, smol = tokenizer(qwen05_gguf), tokenizer(smollm2_gguf)
    check_same_vocabulary(qwen, qwen, "qwen", "qwen")
    with pytest.raises(TokenizerError, match=r"token 0 is b'!' in the target but b'<\|endoftext\|>' in the draft"):
        check_same_vocabulary(qwen, smol, "qwen", "smollm2")


def test_the_next_chat_turn_reuses_the_cached_prefix(smollm2_gguf):
    """Turn 2 feeds only what turn 1 did not cache; in exact mode its output equals a fresh prefill's."""
    from edgespec.api import load

    model = load(str(smollm2_gguf), threads=2, spec="ngram", exact=True)
    history = [{"role": "user", "content": "Name three colours."}]
    answer = "".join(e.text for e in model.generate(model.chat_prompt(history), max_tokens=24))
    history += [{"role": "assistant", "content": answer}, {"role": "user", "content": "And three fruits?"}]
    prompt = model.chat_prompt(history)
    generation = model.generate(prompt, max_tokens=24)
    second = [e.token for e in generation]
    assert generation.stats.reused_tokens > 20
    model.backend.reset()  # a fresh start: the whole prompt prefilled
    generation = model.generate(prompt, max_tokens=24)
    fresh = [e.token for e in generation]
    assert generation.stats.reused_tokens == 0 and fresh == second
