"""The CLI end to end: real subprocesses, a real pseudo-terminal for chat."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys

import pexpect
import pytest


def run_cli(*args, input_bytes: bytes | None = None, timeout: float = 300, cache=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **({"EDGESPEC_CACHE": str(cache)} if cache else {})}
    return subprocess.run([sys.executable, "-m", "edgespec.cli", *args], input=input_bytes,
                          capture_output=True, timeout=timeout, env=env)


def assert_clean_error(result, *fragments):
    err = result.stderr.decode()
    assert result.returncode != 0, err
    assert "Traceback" not in err, err
    assert "\nerror: " in "\n" + err, err  # one "error: ..." line, after any progress lines
    for fragment in fragments:
        assert fragment in err, err


def test_pull_list_names_models_and_licences():
    out = run_cli("pull", "--list").stdout.decode()
    for name in ("smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"):
        assert name in out
    assert "Apache-2.0" in out and "anonymous" in out


def test_unknown_model_lists_known_ones():
    assert_clean_error(run_cli("info", "no-such-model"), "no-such-model", "smollm2-135m", "qwen2.5-coder-0.5b")


def test_not_a_gguf(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"PK\x03\x04 this is a zip file, not a model" * 10)
    assert_clean_error(run_cli("info", str(bad)), str(bad), "GGUF")


def test_truncated_gguf(tmp_path, smollm2_gguf):
    cut = tmp_path / "cut.gguf"
    with open(smollm2_gguf, "rb") as src:
        cut.write_bytes(src.read(5_000_000))
    assert_clean_error(run_cli("info", str(cut)), str(cut), "truncated")


def test_info_on_real_model(smollm2_gguf):
    result = run_cli("info", str(smollm2_gguf))
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    assert "llama" in out and "num_layers:" in out and "30" in out


@pytest.mark.parametrize("backend", ["ort", "reference"])
def test_generate_json_is_greedy_and_deterministic(smollm2_gguf, backend):
    args = ("generate", str(smollm2_gguf), "-p", "What is the capital of France?", "--max-tokens", "12", "--json",
            "--backend", backend, "--temperature", "0", "--spec", "off")
    first, second = run_cli(*args), run_cli(*args)
    assert first.returncode == 0, first.stderr.decode()
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert a["token_ids"] == b["token_ids"] and len(a["token_ids"]) > 0
    assert a["stats"]["decode_tok_s"] > 0 and a["stats"]["peak_rss_mb"] > 0
    if backend == "reference":  # fp32: SmolLM2's own answer. (int4 flips a 0.08-logit near-tie at token 1,
        assert "Paris" in a["text"]  # exactly as llama.cpp does on this GGUF, and answers differently)


def test_negative_temperature_is_refused():
    assert_clean_error(run_cli("generate", "smollm2-135m", "-p", "hi", "--temperature", "-1"), "temperature", "-1")


def test_chat_non_utf8_stdin(smollm2_gguf):
    result = run_cli("chat", str(smollm2_gguf), "--max-tokens", "4", input_bytes=b"caf\xe9\n", timeout=120)
    assert_clean_error(result, "UTF-8")


@pytest.fixture
def empty_cache(tmp_path, smollm2_gguf):
    """A fresh EDGESPEC_CACHE that has the pulled smollm2 GGUF (linked, so nothing downloads) and nothing else."""
    cache = tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    (cache / "models" / smollm2_gguf.name).symlink_to(smollm2_gguf)
    return cache


def test_chat_from_an_empty_cache_in_a_pty(empty_cache):
    screen = io.StringIO()
    chat = pexpect.spawn(sys.executable, ["-m", "edgespec.cli", "chat", "smollm2-135m", "--seed", "1"],
                         timeout=900, encoding="utf-8", dimensions=(40, 200), logfile=None,
                         env={**os.environ, "PYTHONUNBUFFERED": "1", "EDGESPEC_CACHE": str(empty_cache)})
    chat.logfile_read = screen
    try:
        chat.expect(r"exporting smollm2-135m for onnxruntime \(once\): +0\.0% .*ETA +\d+s")  # first run: progress, estimate
        # --spec auto measures this machine's cost curve once (no layer-skip search: the default export has no plans)
        chat.expect("measuring this device's verify cost curve for smollm2-135m on ort")
        chat.expect("edgespec chat — smollm2-135m on onnxruntime int4, speculation auto. /help")
        chat.expect("> ")
        chat.sendline("Say hello in one short sentence.")
        chat.expect(r"\[\d+ tokens, [\d.]+ tok/s")  # an answer arrived
        chat.expect("> ")
        chat.sendline("/help")
        chat.expect(r"/stats +this conversation's numbers")
        chat.sendline("/stats")
        chat.expect(r"context: +(\d+) of 4096 tokens")
        assert int(chat.match.group(1)) > 10
        chat.expect(r"answers: +1, \d+ tokens, [\d.]+ tok/s decoding")
        chat.sendline("Write a very long story about a dragon, at least a thousand words.")
        chat.expect("thousand words.")  # the terminal's echo of our line
        chat.expect(r"\w+ \w+ \w+")  # it is streaming...
        chat.sendintr()  # Ctrl-C mid-answer stops the answer, not the chat
        chat.expect(r"\[stopped; not kept in the conversation\]")
        chat.expect("> ")
        chat.sendline("/stats")  # the cut answer's tokens count as decoded, not as context
        chat.expect(r"answers: +2")
        chat.sendline("/reset")
        chat.expect(r"\(new conversation\)")
        chat.sendline("/stats")
        chat.expect(r"context: +0 of 4096 tokens")
        chat.sendline("/exit")
        chat.expect(pexpect.EOF)
    finally:
        chat.close()
    assert chat.exitstatus == 0, screen.getvalue()[-2000:]
    text = screen.getvalue()
    assert text.count("edgespec chat —") == 1  # the header, once
    assert "validation" not in text and "perplexity" not in text  # the report is in the manifest, not the chat


@pytest.fixture(scope="session")
def smollm2_export(smollm2_gguf):
    from edgespec import hub
    from edgespec.loader import cached_export

    return cached_export(hub.ModelRef("gguf", smollm2_gguf, "smollm2-135m"), progress=False)


def generate_json(*args, **kwargs):
    result = run_cli("generate", *args, "--json", "--temperature", "0", "--spec", "off", **kwargs)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


@pytest.mark.parametrize("backend", ["ort", "reference"])
def test_context_sizes_the_cache_and_n_minus_1_fills_it(smollm2_gguf, smollm2_export, backend):
    context = 48  # the prompt takes ~30: -n -1 must stop at EOS or when the 48 are full
    out = generate_json(str(smollm2_gguf), "-p", "Count from one to one hundred.", "--backend", backend,
                        "--context", str(context), "-n", "-1")
    stats = out["stats"]
    assert stats["context"] == context
    assert stats["prompt_tokens"] + stats["tokens"] <= context
    assert stats["stop_reason"] == "eos" or stats["prompt_tokens"] + stats["tokens"] == context  # until EOS or full
    if backend == "ort":  # KV buffers for the context asked for, not the export's whole context
        assert stats["kv_allocated_mb"] == round(context * 2 * 30 * 3 * 64 * 4 / 2**20, 1)
    assert_clean_error(run_cli("generate", str(smollm2_gguf), "-p", "hi", "--backend", backend, "--context", "9000"),
                       "--context 9000", "8192")


def test_max_tokens_below_1_is_refused():
    for bad in ("0", "-2"):
        result = run_cli("generate", "smollm2-135m", "-p", "hi", "-n", bad)
        assert result.returncode == 2 and "-1 for no limit" in result.stderr.decode()


@pytest.mark.parametrize("args, message", [
    (("bench", "smollm2-135m", "--reps", "0"), "--reps: 0: expected a positive count"),  # was an IndexError
    (("bench", "smollm2-135m", "--tokens", "0"), "--tokens: 0: expected a positive number of tokens"),
    (("serve", "smollm2-135m", "--port", "99999"), "--port: 99999: expected a TCP port, 0-65535"),  # OverflowError
    (("serve", "smollm2-135m", "--context", "0"), "--context: 0: expected a positive number of tokens"),
    (("train", "ppd", "smollm2-135m", "--k", "0"), "--k: 0: expected a positive count"),
    (("train", "s3d", "smollm2-135m", "--minutes", "-5"), "--minutes: -5.0: expected a positive number of minutes"),
    (("train", "ppd", "smollm2-135m", "--samples", "-1"), "--samples: -1: expected a number of sampled answers"),
    (("tune", "smollm2-135m", "--threads", "-2"), "--threads: -2: expected a number of threads"),
    (("generate", "smollm2-135m", "-p", "hi", "--draft-budget", "-1"), "--draft-budget: -1: expected a number"),
    (("generate", "smollm2-135m", "-p", "hi", "--seed", "-2"), "--seed: -2: expected a seed >= 0, or -1"),
])
def test_out_of_range_numbers_are_refused_by_name(args, message, tmp_path):
    result = run_cli(*args, cache=tmp_path)  # refused before anything is resolved or downloaded
    err = result.stderr.decode()
    assert result.returncode == 2 and message in err and "Traceback" not in err, err


def test_serve_refuses_an_address_it_cannot_bind_before_loading(tmp_path):
    import socket

    # a host that does not resolve (uvicorn's bind failure came mid-load and aborted the process)
    assert_clean_error(run_cli("serve", "smollm2-135m", "--host", "999.1.1.1", cache=tmp_path), "--host 999.1.1.1")
    with socket.socket() as taken:  # a port in use
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_clean_error(run_cli("serve", "smollm2-135m", "--port", str(port), cache=tmp_path),
                           f"cannot serve on 127.0.0.1:{port}")


def test_prompt_from_stdin_and_file(smollm2_gguf, smollm2_export, tmp_path):
    question = "What is the capital of France?"
    expected = generate_json(str(smollm2_gguf), "-p", question, "-n", "8")["token_ids"]
    prompt_file = tmp_path / "prompt.txt"
    prompt_file.write_text(question, encoding="utf-8")
    assert generate_json(str(smollm2_gguf), "-n", "8", input_bytes=question.encode())["token_ids"] == expected
    assert generate_json(str(smollm2_gguf), "-p", "-", "-n", "8", input_bytes=question.encode())["token_ids"] == expected
    assert generate_json(str(smollm2_gguf), "-f", str(prompt_file), "-n", "8")["token_ids"] == expected
    assert_clean_error(run_cli("generate", "smollm2-135m", "-f", str(tmp_path / "missing.txt")), "missing.txt")


def test_info_never_downloads(tmp_path):
    result = run_cli("info", "qwen2.5-coder-0.5b", cache=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert "not pulled; run `edgespec pull qwen2.5-coder-0.5b`" in result.stdout.decode()
    assert not (tmp_path / "models").exists()


def test_list_and_rm(empty_cache, smollm2_export, smollm2_gguf):
    (empty_cache / "exports").mkdir()
    (empty_cache / "exports" / smollm2_export.name).symlink_to(smollm2_export)  # the real export, linked
    listed = run_cli("list", cache=empty_cache).stdout.decode()
    assert "smollm2-135m " in listed and "98 MB" in listed and "pulled from PyPI" in listed
    assert smollm2_export.name in listed and "export (onnxruntime int4) of smollm2-135m" in listed
    assert "STALE" not in listed
    # a current variant's name (the new-row outputs, with layer plans) is not stale either: its key is this version's
    from edgespec import hub
    from edgespec.loader import export_key
    variant = export_key(hub.ModelRef("gguf", smollm2_gguf, "smollm2-135m"), layer_plans=True, new_rows=True)[0]
    assert "-int4-plans-rows-" in variant
    (empty_cache / "exports" / variant).symlink_to(smollm2_export)  # the key is read from the name and manifest
    assert "STALE" not in run_cli("list", cache=empty_cache).stdout.decode()
    (empty_cache / "exports" / variant).unlink()
    # a first-use export made by another version (its key is not this version's): marked, and `rm --stale` takes it
    old = empty_cache / "exports" / "smollm2-135m-int4-000000000000"
    old.symlink_to(smollm2_export)
    listed = run_cli("list", cache=empty_cache).stdout.decode().splitlines()
    assert [line.split()[0] for line in listed if "STALE" in line] == [old.name]
    assert listed[-1].startswith("(1 stale export, ") and "`edgespec rm --stale` deletes it" in listed[-1]
    assert_clean_error(run_cli("rm", cache=empty_cache), "--stale")
    removed = run_cli("rm", "--stale", cache=empty_cache)
    assert removed.returncode == 0 and removed.stdout.decode().split() == ["removed", str(old)]
    assert not old.is_symlink() and (empty_cache / "exports" / smollm2_export.name).exists()
    assert "no stale exports" in run_cli("rm", "--stale", cache=empty_cache).stdout.decode()
    assert_clean_error(run_cli("rm", "nothing-here", cache=empty_cache), "nothing-here", smollm2_export.name)
    assert run_cli("rm", smollm2_export.name, cache=empty_cache).returncode == 0
    assert not (empty_cache / "exports" / smollm2_export.name).exists() and smollm2_export.is_dir()
    assert run_cli("rm", "smollm2-135m", cache=empty_cache).returncode == 0
    assert not list((empty_cache / "models").iterdir())
    assert "nothing cached yet" in run_cli("list", cache=empty_cache).stdout.decode()


def test_a_known_model_given_by_its_path_reuses_its_export(empty_cache, smollm2_export, smollm2_gguf, tmp_path):
    (empty_cache / "exports").mkdir()
    (empty_cache / "exports" / smollm2_export.name).symlink_to(smollm2_export)
    copy = tmp_path / "renamed-copy.gguf"
    shutil.copyfile(smollm2_gguf, copy)  # same bytes, another name and path: the export is keyed by content
    for source in (str(empty_cache / "models" / smollm2_gguf.name), str(copy)):
        result = run_cli("generate", source, "-p", "hi", "-n", "2", "--spec", "off", cache=empty_cache)
        assert result.returncode == 0, result.stderr.decode()
        assert "exporting" not in result.stderr.decode()
    assert [p.name for p in (empty_cache / "exports").iterdir()] == [smollm2_export.name]


@pytest.fixture
def without_llama_cpp(tmp_path):
    """An environment where `import llama_cpp` fails, as on a machine without the [llamacpp] extra."""
    shadow = tmp_path / "shadow" / "llama_cpp"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('llama_cpp is hidden for this test')\n")
    return {**os.environ, "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join([str(shadow.parent), os.environ.get("PYTHONPATH", "")])}


def test_a_missing_optional_package_is_reported_before_loading(without_llama_cpp, smollm2_gguf):
    result = subprocess.run([sys.executable, "-m", "edgespec.cli", "generate", str(smollm2_gguf), "-p", "hi",
                             "--backend", "llamacpp"], capture_output=True, timeout=120, env=without_llama_cpp)
    assert_clean_error(result, "pip install 'edgespec[llamacpp]'")
    assert result.stderr.decode().count("\n") == 1  # that line alone: nothing was loaded or exported first


def test_export_without_llama_cpp_says_the_comparison_was_skipped(without_llama_cpp, tmp_path):
    out = tmp_path / "export"
    result = subprocess.run([sys.executable, "-m", "edgespec.cli", "export", "smollm2-135m", "-o", str(out),
                             "--validate-tokens", "16"], capture_output=True, timeout=900, env=without_llama_cpp)
    assert result.returncode == 0, result.stderr.decode()
    assert "llama.cpp comparison skipped: the llama.cpp backend needs llama-cpp-python" in result.stdout.decode()
    assert "running llama.cpp" not in result.stderr.decode()
