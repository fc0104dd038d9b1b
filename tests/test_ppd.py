"""PPD prompt rows on the verify pass, on tiny random models: the extra rows' logits agree between
onnxruntime and the numpy reference, and speculative output == plain output (greedy, exact mode
bit for bit, and the sampling distribution)."""

from __future__ import annotations

import numpy as np
import pytest

from edgespec.models.llama import LlamaReference
from edgespec.models.llama.graph import build_graph
from edgespec.runtimes.ort import OrtBackend
from edgespec.runtimes.reference import ReferenceBackend
from edgespec.sampling import Sampler, SamplingParams
from edgespec.speculative.controller import Controller, ControlledDrafter, CostModel
from edgespec.speculative.drafters.ngram import NgramDrafter
from edgespec.speculative.drafters.ppd import PPDDrafter
from edgespec.speculative.engine import SpecStats, decode
from edgespec.speculative.tree import DraftTree, tree_layout

from .test_spec_sampling import two_sample_p_value
from .tiny import TINY_CONFIGS, random_weights

MAX_LEN = 128
PROMPT = [5, 17, 33, 8, 5, 17, 33, 8, 5, 17, 60, 2, 9]


def make_backend(kind: str, config, weights):
    if kind == "reference":
        return ReferenceBackend(LlamaReference(config, weights), MAX_LEN)
    return OrtBackend(build_graph(config, weights, MAX_LEN, extra_embeds=True, layer_plans=True).SerializeToString(), config,
                      MAX_LEN, threads=1)


def prompt_embeds(weights, k: int = 3, seed: int = 0):
    """Untrained stand-ins for prompt tokens: scaled token embeddings (what matters here is exactness)."""
    rng = np.random.default_rng(seed)
    return weights["embed"][rng.integers(len(weights["embed"]), size=k)] * 0.5


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_prompt_rows_on_a_tree_agree_between_ort_and_reference(arch):
    config = TINY_CONFIGS[arch]
    weights = random_weights(config)
    tree = DraftTree()
    a = tree.add(7)
    tree.add(9)
    tree.add(11, a)
    drafter = PPDDrafter(prompt_embeds(weights), siblings=2)
    drafter._m = 2
    extra = drafter.verify_rows(tree)
    tokens, parents = tree.flatten_parents(4)
    depths, mask = tree_layout(parents + extra.parents)
    out = {}
    for kind in ("reference", "ort"):
        backend = make_backend(kind, config, weights)
        backend.forward(PROMPT)
        out[kind] = backend.forward(tokens, positions=len(PROMPT) + depths, tree_mask=mask,
                                    extra_embeds=extra.embeds)
        assert out[kind].shape == (4 + 4 * 2, config.vocab_size) and backend.cache_len == len(PROMPT) + 12
    np.testing.assert_allclose(out["ort"], out["reference"], atol=2e-4)
    # the tree rows are those of the pass without prompt rows
    plain = make_backend("reference", config, weights)
    plain.forward(PROMPT)
    np.testing.assert_allclose(plain.forward(tokens, positions=len(PROMPT) + depths[:4], tree_mask=mask[:4, :4]),
                               out["reference"][:4], atol=1e-5)
    # a prompt row equals a real token at its place: row (root, 0) fed the embedding of token x == x after root
    plain.rollback(4)
    real = plain.forward([4, 7])[1]
    with_x = make_backend("reference", config, weights)
    with_x.forward(PROMPT)
    got = with_x.forward([4], extra_embeds=weights["embed"][[7]])[1]
    np.testing.assert_allclose(got, real, atol=1e-5)


def run(backend, drafter=None, n=40, exact=False, stats=None, sampling=SamplingParams()):
    return [e.token for e in decode(backend, PROMPT, Sampler(sampling), n, drafter, 8, stats, exact=exact)]


@pytest.mark.parametrize("kind", ["reference", "ort"])
@pytest.mark.parametrize("exact", [False, True])
def test_ppd_reproduces_plain_greedy(kind, exact):
    config = TINY_CONFIGS["llama"]
    weights = random_weights(config)
    backend = make_backend(kind, config, weights)
    plain = run(backend, exact=exact)
    # a free verify pass (c(T) = 1): the deepest tree; and the device's real curve shape
    for cost in (None, CostModel([1, 4, 16], [1.0, 1.0, 1.0]), CostModel([1, 4, 16], [1.0, 1.6, 4.0])):
        for siblings in (1, 3):
            stats = SpecStats()
            drafter = PPDDrafter(prompt_embeds(weights), cost=cost, siblings=siblings)
            assert run(backend, drafter, exact=exact, stats=stats) == plain
            assert backend.cache_len == len(PROMPT) + len(plain) - 1  # prompt rows' KV never stays
            assert stats.drafted > 0
    # beside n-gram under the controller (--spec auto), on a device where verification is free
    cost = CostModel([1, 4, 16], [1.0, 1.0, 1.0])
    ppd = PPDDrafter(prompt_embeds(weights), cost=cost)
    auto = ControlledDrafter({"ppd": ppd, "ngram": NgramDrafter()},  # ppd first: it wins ties
                             Controller(cost, free={"ngram", "ppd"}, pass_rows={"ppd": ppd.pass_rows}))
    stats = SpecStats()
    assert run(backend, auto, exact=exact, stats=stats) == plain
    assert backend.cache_len == len(PROMPT) + len(plain) - 1
    assert auto.controller.acceptance["ppd"].trials, "the controller never chose PPD"


def test_ppd_drafts_get_accepted_when_the_prompt_rows_know_the_answer():
    """Prompt row j fed the embedding of the token it should predict's predecessor is not what PPD
    trains, but on a model that repeats itself (the tiny model loops) it makes drafts that verify."""
    config = TINY_CONFIGS["llama"]
    weights = random_weights(config)
    backend = make_backend("ort", config, weights)
    plain = run(backend, n=60)
    best = 0
    for seed in range(8):
        stats = SpecStats()
        assert run(backend, PPDDrafter(prompt_embeds(weights, seed=seed)), n=60, stats=stats) == plain
        best = max(best, stats.accepted)
    assert best > 0


def test_a_ppd_guess_goes_stale_when_another_drafter_ran_the_passes():
    """Under --spec auto the controller may run n-gram or plain passes between PPD's: the guess PPD read
    on its last pass is for a root the context has moved past, and drafting it would waste the pass (the
    suite bench kept 1 of 18 such drafts, and the controller learned to avoid PPD)."""
    vocab, d = 50, 4
    ppd = PPDDrafter(np.zeros((2, d), np.float32))
    logits = np.zeros((8, vocab), np.float32)
    logits[:, 7] = 1.0  # every prompt row's top token: 7

    def ppd_pass(context):  # a PPD pass: it proposes, its rows ride on the pass, it reads them
        tree = ppd.propose(context, 4)
        extra = ppd.verify_rows(tree)
        ppd.read_rows(logits[:len(extra.parents)], 0)  # acceptance stopped at the root
        ppd.observe([3])  # the pass added only the bonus token
        return tree

    context = list(range(10))
    assert len(ppd_pass(context)) == 0  # first pass: nothing read yet
    context.append(3)
    assert ppd.propose(context, 4).tokens[:1] == [7]  # the next pass: the guess is fresh
    ppd.reset()
    ppd_pass(context)
    context += [3, 11, 12]  # PPD's pass added 3, then another drafter's pass added 11, 12
    assert len(ppd.propose(context, 4)) == 0  # stale: no draft from it


def second_token_counts(backend, vocab_size: int, make_drafter, stats: SpecStats | None = None, n: int = 1200):
    """How often each token is the second one sampled after a fixed prompt, over n seeds (hot sampling, so every
    verification branch is taken): the sample a two-sample chi-square compares with plain sampling's."""
    counts = np.zeros(vocab_size, int)
    for seed in range(n):
        sampler = Sampler(SamplingParams(temperature=6.0, top_p=0.95, seed=seed))
        tokens = [e.token for e in decode(backend, [3, 14, 15, 92, 65], sampler, 3, make_drafter(), 3, stats)]
        counts[tokens[2]] += 1
    return counts


def test_ppd_keeps_the_sampling_distribution():
    config = TINY_CONFIGS["llama"]
    weights = random_weights(config)
    backend = make_backend("reference", config, weights)
    # the drafter's own row predictions drafted as if certain: any bias of the verifier would show
    plain = second_token_counts(backend, config.vocab_size, lambda: None)
    drafted = second_token_counts(backend, config.vocab_size, lambda: PPDDrafter(prompt_embeds(weights), siblings=2))
    assert two_sample_p_value(plain, drafted) > 1e-3


def test_s3d_keeps_the_sampling_distribution():
    """S3D's drafts (the layer-skip root and its mask rows, greedy) verified by rejection sampling: the emitted
    tokens follow the target's distribution, as plain sampling's do (two-sample chi-square)."""
    from edgespec.speculative.drafters.s3d import S3DDrafter

    config = TINY_CONFIGS["llama"]
    weights = random_weights(config)
    backend = make_backend("ort", config, weights)  # layer plans and extra rows: the ONNX graph
    stats = SpecStats()
    plain = second_token_counts(backend, config.vocab_size, lambda: None)
    drafted = second_token_counts(backend, config.vocab_size,
                                  lambda: S3DDrafter(backend, config.num_layers, [1], prompt_embeds(weights, k=2)),
                                  stats)
    assert 0 < stats.accepted < stats.drafted, stats.as_dict()  # both verification branches were taken
    assert two_sample_p_value(plain, drafted) > 1e-3


class OraclePPD(PPDDrafter):
    """PPD whose prompt rows are fed the embeddings of the tokens plain decoding will emit there (so a
    prompt row computes what the real token would: high acceptance), wrong now and then: every
    verification branch on a real model without a trained drafter."""

    def __init__(self, truth, prompt_len, embed_rows, k=3, seed=0):
        super().__init__(np.zeros((k, 1), np.float32))
        self.truth, self.prompt_len, self.embed_rows = truth, prompt_len, embed_rows
        self.rng = np.random.default_rng(seed)

    def propose(self, context, budget):
        self._done = len(context) - self.prompt_len  # tokens emitted, the root included
        return super().propose(context, budget)

    def verify_rows(self, tree):
        extra = super().verify_rows(tree)
        depths, _ = tree_layout(tree.flatten_parents(0)[1])
        tokens = []
        for r in self._attached:
            for j in range(self._m):
                i = self._done + int(depths[r]) + j
                right = self.truth[i] if i < len(self.truth) else 0
                tokens.append(right if self.rng.random() < 0.85 else (right + 1) % 1000)
        extra.embeds = self.embed_rows(tokens)
        return extra


@pytest.mark.realmodel
@pytest.mark.parametrize("exact", [True, False])
def test_ppd_on_smollm2_equals_plain(smollm2_gguf, exact):
    from edgespec.api import load
    from edgespec.formats import open_weights

    from .test_spec_real import CHAT, CODE, check_near_tie

    model = load("smollm2-135m", threads=2)
    source = open_weights(smollm2_gguf)

    def embed_rows(tokens):
        return np.asarray(source.rows("embed", np.asarray(tokens)), np.float32)

    for prompt in (CHAT[0],) if exact else (CODE[1],):
        ids = model.chat_prompt([{"role": "user", "content": prompt}])
        greedy = Sampler(SamplingParams())
        plain = [e.token for e in decode(model.backend, ids, greedy, 64, exact=exact)]
        stats = SpecStats()
        drafter = OraclePPD(plain, len(ids), embed_rows)
        spec = [e.token for e in decode(model.backend, ids, greedy, 64, drafter, 8, stats, exact=exact)]
        assert stats.accepted > 15 and stats.accepted < stats.drafted, stats.as_dict()
        if exact:
            assert spec == plain
        else:
            check_near_tie(model, ids, plain, spec, f"ppd {prompt[:30]!r}")


def _fake_export(directory, graph_bytes: bytes, hidden: int = 8):
    from edgespec.export.manifest import write_manifest

    directory.mkdir()
    (directory / "model.onnx").write_bytes(graph_bytes)
    write_manifest(directory, {"graph": {"file": "model.onnx"}, "config": {"hidden_size": hidden}, "drafters": []})
    return directory


def test_a_drafter_trained_for_another_export_is_refused_naming_both_hashes(tmp_path):
    from edgespec.errors import ModelFormatError
    from edgespec.export.manifest import read_manifest
    from edgespec.export.trained import export_hash, load_drafter, register_in_export, save_drafter

    a, b = _fake_export(tmp_path / "a", b"graph a"), _fake_export(tmp_path / "b", b"graph b")
    hash_a, hash_b = export_hash(read_manifest(a)), export_hash(read_manifest(b))
    rows = np.arange(24, dtype=np.float32).reshape(3, 8)
    record = {"kind": "ppd", "export_hash": hash_a, "steps": 5, "acceptance_per_depth": [0.3, 0.1, 0.02]}
    save_drafter(a / "ppd.npz", rows, record)
    register_in_export(a, a / "ppd.npz", record)
    got, got_record = load_drafter(a, "ppd")
    np.testing.assert_array_equal(got, rows)
    assert got_record["steps"] == 5 and read_manifest(a)["drafters"][0]["file"] == "ppd.npz"
    with pytest.raises(ModelFormatError, match=f"trained for export {hash_a}, but this export is {hash_b}"):
        load_drafter(b, "ppd", a / "ppd.npz")
    with pytest.raises(ModelFormatError, match="has no trained ppd drafter"):
        load_drafter(b, "ppd")
    save_drafter(a / "ppd.npz", rows + 1, record)  # changed after it was listed
    with pytest.raises(ModelFormatError, match="does not match the manifest"):
        load_drafter(a, "ppd")


@pytest.mark.parametrize("exact", [False, True])
def test_s3d_reproduces_plain_greedy_and_refuses_backends_without_plans(exact):
    from edgespec.errors import EdgespecError
    from edgespec.speculative.drafters.s3d import S3DDrafter

    config = TINY_CONFIGS["llama"]
    weights = random_weights(config)
    backend = make_backend("ort", config, weights)
    plain = run(backend, exact=exact)
    for gamma in (2, 4):
        stats = SpecStats()
        drafter = S3DDrafter(backend, config.num_layers, [1], prompt_embeds(weights, k=gamma - 1))
        assert run(backend, drafter, exact=exact, stats=stats) == plain
        assert backend.cache_len == len(PROMPT) + len(plain) - 1 and stats.drafted > 0
    assert stats.accepted > 0  # the root row alone (a layer-skip draft) is often right on the tiny model
    with pytest.raises(EdgespecError, match="layer plans and extra input rows"):
        S3DDrafter(make_backend("reference", config, weights), config.num_layers, [1], prompt_embeds(weights))


@pytest.mark.realmodel
def test_s3d_on_smollm2_equals_plain_in_exact_mode(smollm2_gguf):
    """Untrained mask rows (token embeddings) on the real int4 export: the root row is a layer-skip draft
    that verifies often, so accepted and rejected drafts both occur."""
    from edgespec.api import load
    from edgespec.formats import open_weights
    from edgespec.speculative.drafters.s3d import S3DDrafter, middle_skip

    from .test_spec_real import CODE

    model = load("smollm2-135m", threads=2, layer_plans=True)  # S3D skips layers through the layer plans
    mask_rows = np.asarray(open_weights(smollm2_gguf).rows("embed", np.array([28, 29])), np.float32)
    ids = model.chat_prompt([{"role": "user", "content": CODE[1]}])
    greedy = Sampler(SamplingParams())
    plain = [e.token for e in decode(model.backend, ids, greedy, 64, exact=True)]
    stats = SpecStats()
    drafter = S3DDrafter(model.backend, model.config.num_layers, middle_skip(model.config.num_layers), mask_rows)
    assert [e.token for e in decode(model.backend, ids, greedy, 64, drafter, 8, stats, exact=True)] == plain
    assert 0 < stats.accepted < stats.drafted, stats.as_dict()
