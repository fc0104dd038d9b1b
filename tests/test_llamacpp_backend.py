"""The llama.cpp Backend against llama-cpp-python itself: greedy, rollback, token trees."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from edgespec.api import load
from edgespec.errors import EdgespecError, MissingDependencyError
from edgespec.speculative.tree import tree_layout

from .llamacpp_util import greedy, llama

PROMPTS = ["What is the capital of France?", "Write a haiku about autumn.", "Explain recursion in one sentence.",
           "def fibonacci(n):", "Write a Python function that reverses a linked list."]


@pytest.fixture(scope="module", params=["smollm2", "qwen05"])
def gguf(request, smollm2_gguf, qwen05_gguf):
    return smollm2_gguf if request.param == "smollm2" else qwen05_gguf


@pytest.fixture(scope="module")
def model(gguf):
    return load(str(gguf), backend="llamacpp", threads=2, context=1024)


def test_plain_greedy_equals_llama_cpp_python(model, gguf):
    """Our engine on this backend == llama-cpp-python's own greedy generate, token for token."""
    theirs = llama(gguf, n_ctx=1024)
    for prompt in PROMPTS:
        ids = model.chat_prompt([{"role": "user", "content": prompt}])
        ours = [e.token for e in model.generate(ids, max_tokens=128, stop_on_eos=False)]
        assert ours == greedy(theirs, ids, 128), prompt


def test_rollback_is_bit_identical(model):
    backend = model.backend
    ids = model.tokenizer.encode("import numpy as np\n\ndef softmax(x):\n")
    backend.reset()
    backend.forward(ids)
    never_ran = backend.forward([ids[-1]])
    backend.rollback(1)
    backend.forward(list(range(100, 116)))  # a 16-token speculative batch, then forgotten
    backend.rollback(16)
    assert np.array_equal(backend.forward([ids[-1]]), never_ran)


def _batch_rounding(backend, text_ids) -> float:
    """llama.cpp's own rounding: logits after `text_ids` evaluated as one batch vs token by token."""
    backend.reset()
    batch = backend.forward(text_ids)[-1]
    backend.reset()
    for t in text_ids:
        single = backend.forward([t])[-1]
    return float(np.abs(batch - single).max())


def test_tree_batch_matches_each_root_to_node_path(model):
    backend = model.backend
    prefix = model.tokenizer.encode("def add(a, b):\n    return a + b\n\ndef sub(a, b):\n")
    parents = [-1, 0, 0, 1, 1, 2, -1, 6, 7, 3]
    tokens = [755, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    depth, mask = tree_layout(parents)
    backend.reset()
    backend.forward(prefix)
    tree = backend.forward(tokens, positions=len(prefix) + depth, tree_mask=mask)
    worst = 0.0
    for node in range(len(tokens)):
        path = [node]
        while parents[path[-1]] >= 0:
            path.append(parents[path[-1]])
        backend.rollback(backend.cache_len - len(prefix))
        alone = backend.forward([tokens[i] for i in reversed(path)] + [tokens[node]])[-2]  # >= 2 rows
        worst = max(worst, float(np.abs(alone - tree[node]).max()))
    rounding = _batch_rounding(backend, prefix)
    print(f"tree node vs its path alone: max |dlogit| {worst:.4f}; llama.cpp batch vs single: {rounding:.4f}")
    assert worst <= max(rounding, 1e-6) * 1.5


def test_keep_compacts_the_accepted_path(model):
    backend = model.backend
    prefix = model.tokenizer.encode("x = [1, 2, 3]\nprint(")
    parents = [-1, 0, 0, 1, -1]
    tokens = [87, 11, 12, 13, 14]
    depth, mask = tree_layout(parents)
    backend.reset()
    backend.forward(prefix)
    backend.forward(tokens, positions=len(prefix) + depth, tree_mask=mask)
    backend.keep([0, 1, 3])  # the path 87 -> 11 -> 13
    assert backend.cache_len == len(prefix) + 3
    after_keep = backend.forward([5, 6])
    backend.reset()
    backend.forward(prefix)
    backend.forward([87, 11, 13])
    as_chain = backend.forward([5, 6])
    # the tree computed the kept KV with other cache rows in its attention sums: rounding only
    rounding = _batch_rounding(backend, prefix + [87, 11, 13])
    print(f"kept path vs chain: {np.abs(as_chain - after_keep).max():.4f}; llama.cpp batch vs single: {rounding:.4f}")
    assert np.abs(as_chain - after_keep).max() <= rounding * 1.5
    assert np.array_equal(as_chain.argmax(-1), after_keep.argmax(-1))
    backend.forward([1, 2, 3])
    with pytest.raises(ValueError, match="prefix 0..k-1"):
        backend.keep([1])


def test_refusals_name_the_problem(model, monkeypatch):
    backend = model.backend
    with pytest.raises(EdgespecError, match="layer plans"):
        backend.forward([1], plan=np.ones(3, bool))
    with pytest.raises(EdgespecError, match="not a tree path"):
        backend.forward([1, 2, 3], tree_mask=np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1]], bool))
    backend.reset()
    monkeypatch.setattr(backend, "recurrent", True)  # a hybrid/recurrent model's memory cannot roll back
    backend.forward([1, 2])
    with pytest.raises(EdgespecError, match="recurrent/hybrid memory .* --spec off"):
        backend.rollback(1)


def test_missing_llama_cpp_python_names_the_extra(monkeypatch, smollm2_gguf):
    import edgespec.runtimes.llamacpp as module

    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    monkeypatch.setattr(module, "_initialised", False)
    with pytest.raises(MissingDependencyError, match=r"edgespec\[llamacpp\]"):
        load(str(smollm2_gguf), backend="llamacpp")


def test_backend_auto_measures_once_and_says_what_it_picked(smollm2_gguf):
    from edgespec import hub
    from edgespec.loader import auto_record_file

    ref = hub.resolve_model(str(smollm2_gguf))
    record = auto_record_file(ref, 2)
    record.unlink(missing_ok=True)
    first = load(str(smollm2_gguf), backend="auto", threads=2)
    assert record.is_file()
    speeds = __import__("json").loads(record.read_text())["decode_tok_s"]
    picked = "ort" if speeds["ort"] >= speeds["llamacpp"] else "llamacpp"
    assert first.backend.name == picked and "auto:" in first.backend_name
    mtime = record.stat().st_mtime_ns
    second = load(str(smollm2_gguf), backend="auto", threads=2)  # cached: no new measurement
    assert second.backend.name == picked and record.stat().st_mtime_ns == mtime


def test_cli_speculation_on_llamacpp_with_exact_equals_plain(smollm2_gguf):
    import json

    from .test_cli import run_cli

    prompt = "Repeat this list twice: apples, pears, plums, figs, dates, limes, kiwis, grapes."
    out = {}
    for spec in ("off", "ngram"):
        result = run_cli("generate", str(smollm2_gguf), "-p", prompt, "--backend", "llamacpp", "--spec", spec,
                         "--exact", "--temperature", "0", "--max-tokens", "64", "--json")
        assert result.returncode == 0, result.stderr.decode()
        out[spec] = json.loads(result.stdout)
    assert out["ngram"]["token_ids"] == out["off"]["token_ids"]
    assert out["ngram"]["stats"]["spec"] == "ngram" and out["ngram"]["stats"]["tokens_per_step"] > 1.2


@pytest.mark.parametrize("spec", ["ngram", "auto", "draft:smollm2-135m"])
def test_every_drafter_on_llamacpp_equals_plain_in_exact_mode(smollm2_gguf, spec):
    """On llama.cpp too, speculation changes nothing in exact mode (the near-tie rule is for ORT int4
    in test_spec_real.py); the draft model here is the target itself, so its drafts get accepted."""
    model = load("smollm2-135m", backend="llamacpp", threads=2, context=1024)
    for prompt in ("List the planets of the solar system in order.", "def bubble_sort(items):"):
        ids = model.chat_prompt([{"role": "user", "content": prompt}])
        model.set_spec("off", exact=True)
        plain = [e.token for e in model.generate(ids, max_tokens=64, stop_on_eos=False)]
        model.set_spec(spec, exact=True)
        generation = model.generate(ids, max_tokens=64, stop_on_eos=False)
        assert [e.token for e in generation] == plain, (spec, prompt)
    if spec.startswith("draft:"):
        assert generation.stats.spec.accepted > 0


def test_an_amx_build_is_refused_with_the_rebuild_command():
    # ggml's AMX matmul in llama-cpp-python 0.3.36 segfaults (llama.cpp #20824): a clear error instead
    from edgespec.runtimes.llamacpp import check_build

    amx = "CPU : AVX2 = 1 | AVX512 = 1 | AVX512_VNNI = 1 | AMX_INT8 = 1 | OPENMP = 1 |"
    with pytest.raises(EdgespecError, match=r"AMX_INT8 = 1.*CFLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16'"):
        check_build(amx)
    check_build(amx, override="1")  # the user says their ggml is fixed
    check_build(amx.replace("AMX_INT8 = 1 | ", ""))
