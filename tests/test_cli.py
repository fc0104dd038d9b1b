"""The CLI end to end: real subprocesses, a real pseudo-terminal for chat."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pexpect
import pytest


def run_cli(*args, input_bytes: bytes | None = None, timeout: float = 300):
    return subprocess.run([sys.executable, "-m", "edgespec.cli", *args], input=input_bytes,
                          capture_output=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


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
            "--backend", backend)
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


def test_chat_in_a_pty(smollm2_gguf):
    # long answers: at ~150 tok/s a 400-token answer could end before the Ctrl-C below arrives
    chat = pexpect.spawn(sys.executable, ["-m", "edgespec.cli", "chat", str(smollm2_gguf), "--max-tokens", "2000"],
                         timeout=120, encoding="utf-8", env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        chat.expect("> ")
        chat.sendline("Say hello in one short sentence.")
        chat.expect(r"\[\d+ tokens, prefill [\d.]+ tok/s, decode [\d.]+ tok/s")
        chat.expect("> ")
        chat.sendline("/stats")
        chat.expect(r"decode [\d.]+ tok/s")
        chat.sendline("Write a very long story about a dragon, at least a thousand words.")
        chat.expect("thousand words.")  # the terminal's echo of our line
        chat.expect(r"\w+ \w+ \w+")  # it is streaming...
        chat.sendintr()  # Ctrl-C mid-answer stops the answer, not the chat
        chat.expect(r"\[stopped\]")
        chat.expect("> ")
        chat.sendline("/reset")
        chat.expect("conversation cleared")
        chat.sendline("/exit")
        chat.expect(pexpect.EOF)
    finally:
        chat.close()
    assert chat.exitstatus == 0
