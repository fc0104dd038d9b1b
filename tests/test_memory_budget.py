"""--memory-budget: refused before loading when the weights cannot fit; otherwise context and pass
size shrink to fit, and the process's peak RSS stays under the budget."""

from __future__ import annotations

import json

import pytest

from edgespec.errors import EdgespecError
from edgespec.memory import MARGIN, MIN_CONTEXT, MemoryBudgetError, parse_size, plan_memory

from .test_cli import run_cli

MiB = 1 << 20


def test_sizes_parse_and_bad_ones_are_named():
    assert parse_size("1.5G") == int(1.5 * (1 << 30)) and parse_size("800M") == 800 * MiB
    assert parse_size("2GiB") == 2 << 30 and parse_size("512k") == 512 << 10 and parse_size("1000") == 1000
    with pytest.raises(EdgespecError, match="'lots' is not understood"):
        parse_size("lots")


def test_plan_shrinks_the_pass_before_the_context_and_refuses_below_plain():
    kv, row = 50_000, 600_000
    roomy = plan_memory(4 << 30, 500 * MiB, kv, row, 4096, 65)
    assert (roomy.context, roomy.max_rows) == (4096, 65)
    tight = plan_memory(500 * MiB + MARGIN + 4096 * kv + 10 * row, 500 * MiB, kv, row, 4096, 65)
    assert tight.context == 4096 and 2 <= tight.max_rows < 65  # the draft tree shrank, the context did not
    tighter = plan_memory(500 * MiB + MARGIN + 1000 * kv + 2 * row, 500 * MiB, kv, row, 4096, 65)
    assert MIN_CONTEXT <= tighter.context < 4096 and tighter.max_rows == 2
    with pytest.raises(MemoryBudgetError, match="plain decoding needs at least"):
        plan_memory(500 * MiB + MARGIN + 100 * kv, 500 * MiB, kv, row, 4096, 65)


def test_budget_below_the_weights_is_refused_before_loading(smollm2_gguf):
    result = run_cli("generate", str(smollm2_gguf), "-p", "hi", "--memory-budget", "60M")
    assert result.returncode != 0
    err = result.stderr.decode()
    assert "memory budget 60 MiB cannot hold" in err and "its weights take" in err and "Traceback" not in err


def _generate(gguf, *extra):
    result = run_cli("generate", str(gguf), "-p", "Repeat twice: red, green, blue, cyan, magenta, yellow.",
                     "--spec", "ngram", "--max-tokens", "64", "--json", *extra)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


def test_a_budget_just_above_plain_decoding_completes_with_a_smaller_tree(smollm2_gguf):
    roomy = _generate(smollm2_gguf)["stats"]["memory_plan"]
    plain_need = roomy["loaded"] + MARGIN + MIN_CONTEXT * roomy["kv_per_token"] + 2 * roomy["row_bytes"]
    budget = plain_need + 3 * roomy["row_bytes"] + 4 * MiB  # room for a pass of ~5 tokens, not 65
    out = _generate(smollm2_gguf, "--memory-budget", str(budget))
    plan, stats = out["stats"]["memory_plan"], out["stats"]
    print(f"budget {budget / MiB:.1f} MiB: plan {plan}, peak RSS {stats['peak_rss_mb']} MiB")
    assert 2 <= plan["max_rows"] < roomy["max_rows"] and plan["context"] >= MIN_CONTEXT
    assert out["token_ids"] and stats["stop_reason"] in ("eos", "length")
    assert stats["peak_rss_mb"] * MiB <= budget


def test_llamacpp_context_is_sized_to_the_budget_before_its_kv_cache_is_allocated(smollm2_gguf):
    """llama.cpp allocates the KV cache for the whole context when the context is created, so the
    budget must choose the context first (in a fresh process: the peak RSS is per process)."""
    roomy = _generate(smollm2_gguf, "--backend", "llamacpp")["stats"]
    kv_per_token = roomy["memory_plan"]["kv_per_token"]
    assert roomy["kv_allocated_mb"] * MiB == 4096 * kv_per_token  # f16 K and V for the whole context
    # what loading took without the KV cache, plus ~1500 tokens of KV and a few rows: not 4096 tokens
    budget = roomy["memory_plan"]["loaded"] + MARGIN + 1500 * kv_per_token + 8 * roomy["memory_plan"]["row_bytes"]
    out = _generate(smollm2_gguf, "--backend", "llamacpp", "--memory-budget", str(budget))["stats"]
    print(f"budget {budget / MiB:.0f} MiB: KV {out['kv_allocated_mb']} MiB (roomy {roomy['kv_allocated_mb']}), "
          f"context {out['context']}, peak RSS {out['peak_rss_mb']} MiB")
    assert out["kv_allocated_mb"] < 0.6 * roomy["kv_allocated_mb"] and MIN_CONTEXT <= out["context"] < 4096
    assert out["peak_rss_mb"] * MiB <= budget


def test_a_budget_between_the_gguf_and_the_exports_need_is_refused_before_loading(smollm2_gguf, monkeypatch):
    """onnxruntime holds the export's weights (times a measured load factor), not the GGUF's bytes: a budget
    that the GGUF fits but the export does not is refused before a session exists, naming both sizes."""
    from edgespec import api, hub, loader
    from edgespec.memory import MARGIN, ORT_LOAD_FACTOR, human, rss
    from edgespec.runtimes import ort as ort_runtime

    export_dir = loader.cached_export(hub.resolve_model(str(smollm2_gguf)))  # exporting is not loading
    need = int(hub.weights_bytes(hub.ModelRef("export", export_dir, "smollm2")) * ORT_LOAD_FACTOR)
    gguf = smollm2_gguf.stat().st_size
    assert gguf < need

    def never(*args, **kwargs):
        raise AssertionError("an onnxruntime session was created before the budget was checked")

    monkeypatch.setattr(ort_runtime.OrtBackend, "__init__", never)
    with pytest.raises(MemoryBudgetError) as refused:
        api.load(str(smollm2_gguf), memory_budget=rss() + MARGIN + (gguf + need) // 2)
    message = str(refused.value)
    assert human(need) in message and human(gguf) in message, message
