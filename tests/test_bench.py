"""`edgespec bench`: real engines in their own processes, a complete report."""

from __future__ import annotations

import json

import pytest

from edgespec.bench.runner import load_prompts
from edgespec.errors import EdgespecError

from .test_cli import run_cli


def test_bench_smollm2(tmp_path, smollm2_gguf):
    out, png, prompts = tmp_path / "r.json", tmp_path / "r.png", tmp_path / "q.jsonl"
    rows = [{"question_id": 1, "category": "chat", "turns": ["Say hello in French."]},
            {"question_id": 2, "category": "chat", "turns": ["Name a prime number."]},
            {"question_id": 3, "category": "code_edit", "turns": ["Return this code unchanged:\nx = 1\ny = x + 1\n"]}]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_cli("bench", str(smollm2_gguf), "--tokens", "8", "--reps", "1", "--json", str(out),
                     "--spec", "off,ngram", "--prompts", str(prompts), "--plot", str(png), timeout=600)
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads(out.read_text())
    assert set(report["engines"]) == {"edgespec-ort", "edgespec-ort+ngram", "edgespec-llamacpp",
                                      "edgespec-llamacpp+ngram", "llama.cpp", "llama.cpp+lookup"}
    for engine in report["engines"].values():
        assert engine["decode_tok_s"] > 0 and engine["prefill_tok_s"] > 0 and engine["peak_rss_mb"] > 50
        assert len(engine["token_ids"]) == 3 and all(len(t) == 8 for t in engine["token_ids"])
    categories = report["categories"]
    assert list(categories) == ["chat", "code_edit"] and categories["chat"]["prompts"] == 2
    ngram = categories["code_edit"]["engines"]["edgespec-ort+ngram"]
    assert ngram["vs_plain"] > 0 and ngram["equal_to_plain"] in ("0/1", "1/1") and ngram["vs_fastest_plain_peer"] > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert report["memory_bandwidth_gb_s"] > 0 and report["machine"]["threads"] == 2
    assert "edgespec-ort / llama.cpp" in report["decode_ratio"] and "edgespec-ort vs llama.cpp" in report["identical_outputs"]
    assert "| edgespec-ort |" in result.stdout.decode()
    assert report["engines"]["edgespec-ort+ngram"]["tokens_per_step"] >= 1.0
    assert "edgespec-ort+ngram / edgespec-ort" in report["decode_ratio"]
    assert report["engines"]["edgespec-llamacpp"]["python_overhead_ms_per_step"] > 0


def test_cost_curve(tmp_path, smollm2_gguf):
    out = tmp_path / "c.json"
    result = run_cli("bench", str(smollm2_gguf), "--cost-curve", "--json", str(out), timeout=600)
    assert result.returncode == 0, result.stderr.decode()
    curves = json.loads(out.read_text())["cost_curves"]
    for kind in ("ort", "llamacpp"):
        c = {int(k): v for k, v in curves[kind]["c"].items()}
        assert c[1] == 1.0 and c[64] > c[2] > 0.5  # a 64-token pass costs more than a 2-token one
    assert "T=64" in result.stdout.decode()


def test_question_jsonl_prompts(tmp_path):
    good = tmp_path / "q.jsonl"
    good.write_text('{"question_id": 7, "category": "writing", "turns": ["Write a limerick.", "Now another."]}\n')
    assert load_prompts(str(good))[0]["category"] == "writing"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question_id": 8, "prompt": "no turns"}\n')
    with pytest.raises(EdgespecError, match="row 8 has no 'turns'"):
        load_prompts(str(bad))
    # errors that name the file and the line, not a FileNotFoundError / JSONDecodeError traceback
    with pytest.raises(EdgespecError, match="is neither a file nor a shipped set"):
        load_prompts(str(tmp_path / "missing.jsonl"))
    bad.write_text('{"question_id": 1, "turns": ["ok"]}\n{"question_id": 2, "turns\n')
    with pytest.raises(EdgespecError, match="line 2 is not JSON"):
        load_prompts(str(bad))
    for empty in ("\n", "[1, 2]\n"):
        bad.write_text(empty)
        with pytest.raises(EdgespecError, match="holds no prompts|has no 'turns'"):
            load_prompts(str(bad))
    assert len(load_prompts()) == 5  # the shipped default set
    suite = load_prompts("suite")
    assert {r["category"] for r in suite} == {"chat", "code", "code_edit", "summarisation", "long_context_qa"}


def test_each_mode_runs_on_the_export_its_spec_opens(smollm2_gguf):
    """PPD is trained into the default export and S3D into the one with layer plans: `--spec off,ppd,s3d` in one bench
    needs each mode on its own variant (one export for all made the ppd worker fail: no drafter there)."""
    from edgespec import hub
    from edgespec.bench.runner import exports_by_mode
    from edgespec.loader import cached_export

    ref = hub.resolve_model(str(smollm2_gguf))
    exports = exports_by_mode(ref, ["off", "ngram", "ppd", "auto", "s3d", "layerskip"])
    assert exports["off"] == exports["ngram"] == exports["ppd"] == exports["auto"] == cached_export(ref)
    assert exports["s3d"] == exports["layerskip"] == cached_export(ref, layer_plans=True) != exports["off"]


def test_speedup_over_plain_is_paired_by_repetition():
    """A slow repetition slows plain and speculative runs alike; the ratio is taken within each one."""
    from edgespec.bench.report import by_category

    def run(seconds):  # one prompt, 100 tokens
        return {"results": [{"steps": 100, "decode_s": seconds, "token_ids": [1, 2]}]}

    runs = {"edgespec-ort": [run(1.0), run(2.0), run(1.0)],
            "edgespec-ort+auto": [run(0.9), run(1.9), run(1.9)]}  # rep 3: auto alone had a slow minute
    entry = by_category(runs, [{"category": "chat"}])["chat"]["engines"]["edgespec-ort+auto"]
    # per repetition 1/0.9, 2/1.9, 1/1.9 -> median 2/1.9; unpaired medians would give 100/1.9 / 100/1.0 = 0.53
    assert entry["vs_plain"] == round(2.0 / 1.9, 3)
    assert entry["decode_tok_s"] == round(100 / 1.9, 2) and entry["equal_to_plain"] == "1/1"


def test_a_failing_worker_is_named_with_its_error(tmp_path):
    """Workers are real processes; one that cannot load its engine stops the bench with that engine's error."""
    import sys

    from edgespec.bench.runner import _run_interleaved
    from edgespec.progress import Progress

    spec = {"engine": "llama.cpp", "gguf": str(tmp_path / "missing.gguf"), "n_ctx": 64, "threads": 1,
            "tokens": 4, "prompts": [[1, 2, 3]]}
    with Progress(1, "bench", unit="runs") as bar, pytest.raises(EdgespecError, match="worker for llama.cpp failed"):
        _run_interleaved({"llama.cpp": spec}, {"llama.cpp": sys.executable}, 1, 0, bar)


def test_the_genai_peer_is_checked_before_any_run(tmp_path):
    from edgespec.bench.runner import run_bench

    with pytest.raises(EdgespecError, match="has no genai_config.json"):
        run_bench("no-such-model", ortgenai_model=str(tmp_path))  # checked before the model is even resolved
    (tmp_path / "genai_config.json").write_text("{}")
    with pytest.raises(EdgespecError, match="--peers-python '/no/such/python' cannot run"):
        run_bench("no-such-model", ortgenai_model=str(tmp_path), peers_python="/no/such/python")


def test_engines_take_turns_all_at_once_or_one_family_at_a_time():
    from edgespec.bench.runner import turn_groups

    engines = ("edgespec-ort", "edgespec-ort+auto", "edgespec-static", "llama.cpp", "llama.cpp+lookup",
               "onnxruntime-genai", "onnxruntime-genai+ngram")
    assert turn_groups(engines, "all") == [list(engines)]
    assert turn_groups(engines, "family") == [["edgespec-ort", "edgespec-ort+auto", "edgespec-static"],
                                              ["llama.cpp", "llama.cpp+lookup"],
                                              ["onnxruntime-genai", "onnxruntime-genai+ngram"]]
    with pytest.raises(EdgespecError, match="--turns 'pairs': expected one of all, family"):
        turn_groups(engines, "pairs")
