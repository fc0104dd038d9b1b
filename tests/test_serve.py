"""`edgespec serve` end to end: a real server process on loopback, the real `openai` client.

One server (smollm2-135m, onnxruntime, --spec auto, --exact so that speculative output is
bit-identical to plain decoding) serves every test of this module; tests that need the queue
empty wait for it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx2 as httpx  # the HTTP client the openai package brings
import openai
import pytest

from .serve_util import health, running_server

pytestmark = pytest.mark.realmodel

MODEL = "smollm2-135m"
KEY = "test-key-22"
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8,"  # greedy smollm2 keeps counting: a long generation on demand
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def server(smollm2_gguf, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "server.log"
    with running_server("--api-key", KEY, "--exact", "--max-waiting", "2", "--max-body", str(MAX_BODY),
                        model=MODEL, log_path=log) as (base, proc):
        yield base
    assert "Traceback" not in log.read_text(), log.read_text()[-4000:]


@pytest.fixture
def client(server):
    wait_idle(server)
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0, timeout=300)


def wait_idle(base: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        queue = health(base)[1]["queue"]
        if queue["active"] == 0 and queue["waiting"] == 0:
            return queue
        assert time.monotonic() < deadline, f"server still busy: {queue}"
        time.sleep(0.1)


def chat(client, content: str, **kw):
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}],
                                          temperature=0, **kw)


def stream_text(stream, field=lambda c: c.choices[0].delta.content) -> tuple[str, list]:
    chunks = list(stream)
    return "".join(field(c) or "" for c in chunks if c.choices), chunks


def test_models_and_health(server, client):
    assert [m.id for m in client.models.list().data] == [MODEL]
    status, body = health(server)
    assert status == 200 and body["status"] == "ok" and body["spec"] == "auto"


def test_chat_non_streaming_usage_and_spec_stats(client):
    r = chat(client, "Name three colours.", max_tokens=24)
    assert r.object == "chat.completion" and r.model == MODEL
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content.strip()
    assert r.choices[0].finish_reason in ("stop", "length")
    assert 0 < r.usage.completion_tokens <= 24 and r.usage.prompt_tokens > 5
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    ext = r.model_extra["edgespec"]
    assert ext["spec"] == "auto" and ext["drafter"] != "none" and ext["tokens_per_step"] >= 1.0
    assert ext["steps"] >= 1 and ext["accepted"] <= ext["drafted"]


def test_chat_streaming_equals_non_streaming_with_usage(client):
    whole = chat(client, "Write one sentence about rivers.", max_tokens=32)
    text, chunks = stream_text(chat(client, "Write one sentence about rivers.", max_tokens=32, stream=True,
                                    stream_options={"include_usage": True}))
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    last = chunks[-1]
    assert last.choices == [] and last.usage.completion_tokens == whole.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_completions_streaming_and_not(client):
    r = client.completions.create(model=MODEL, prompt=COUNTING, max_tokens=12, temperature=0)
    assert r.object == "text_completion" and r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 12 and "9" in r.choices[0].text
    text, chunks = stream_text(client.completions.create(model=MODEL, prompt=COUNTING, max_tokens=12,
                                                         temperature=0, stream=True),
                               field=lambda c: c.choices[0].text)
    assert text == r.choices[0].text


@pytest.mark.parametrize("stream", [False, True])
def test_stop_strings_cut_before_the_stop(client, stream):
    full = client.completions.create(model=MODEL, prompt=COUNTING, max_tokens=16, temperature=0).choices[0].text
    assert "11" in full
    r = client.completions.create(model=MODEL, prompt=COUNTING, max_tokens=16, temperature=0, stop=["11", "zzz"],
                                  stream=stream)
    if stream:
        text, chunks = stream_text(r, field=lambda c: c.choices[0].text)
        finish = chunks[-1].choices[0].finish_reason
    else:
        text, finish = r.choices[0].text, r.choices[0].finish_reason
    assert text == full[:full.index("11")] and finish == "stop"


def test_greedy_through_the_server_equals_edgespec_generate(client):
    prompt = "Explain in two sentences what a compiler does."
    served = chat(client, prompt, max_tokens=40).choices[0].message.content
    # plain decoding (no speculation) in another process; --exact on both sides makes them bit-identical.
    # The CLI's sampling defaults are ollama's (repeat penalty 1.1 even at temperature 0); the OpenAI API has none
    result = subprocess.run([sys.executable, "-m", "edgespec.cli", "generate", MODEL, "-p", prompt,
                             "--max-tokens", "40", "--exact", "--temperature", "0", "--repetition-penalty", "1",
                             "--spec", "off", "--json"],
                            capture_output=True, timeout=600)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert served == json.loads(result.stdout)["text"]


def test_chat_resending_its_history_reuses_the_cached_prefix(client):
    messages = [{"role": "user", "content": "Give me a word that rhymes with cat."}]
    first = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=16, temperature=0)
    messages += [{"role": "assistant", "content": first.choices[0].message.content},
                 {"role": "user", "content": "And one that rhymes with dog?"}]
    second = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=16, temperature=0)
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= first.usage.prompt_tokens - 2 and cached == second.model_extra["edgespec"]["reused_tokens"]


def test_sampling_with_seed_and_top_p(client):
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Tell me a fact."}],
                                       max_tokens=16, temperature=0.9, top_p=0.9, seed=7)
    assert r.usage.completion_tokens > 0


def _error(server, path="/v1/chat/completions", body=None, raw=None, key=KEY, headers=None):
    headers = {**({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
    r = httpx.post(server + path, content=raw if raw is not None else json.dumps(body), headers=headers, timeout=60)
    return r.status_code, r.json()["error"], r


GOOD = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.mark.parametrize("body, raw, status, fragment, param", [
    (None, b"{not json", 400, "not valid JSON", None),
    (None, b"[1, 2]", 400, "JSON list", None),
    ({**GOOD, "model": "gpt-4o"}, None, 404, "gpt-4o", "model"),
    ({"model": MODEL}, None, 400, "'messages' is required", "messages"),
    ({**GOOD, "messages": [{"role": "wizard", "content": "x"}]}, None, 400, "wizard", "messages[0].role"),
    ({**GOOD, "max_tokens": -5}, None, 400, "-5", "max_tokens"),
    ({**GOOD, "max_tokens": 10**9}, None, 400, "exceeds the model's context", "max_tokens"),
    ({**GOOD, "temperature": "hot"}, None, 400, "'hot'", "temperature"),
    ({**GOOD, "n": 3}, None, 400, "'n' = 3", "n"),
    ({**GOOD, "messages": [{"role": "user", "content": "word " * 5000}]}, None, 400, "context", "messages"),
])
def test_bad_input_gets_openai_error_and_server_keeps_serving(server, client, body, raw, status, fragment, param):
    code, error, _ = _error(server, body=body, raw=raw)
    assert code == status and fragment in error["message"] and error["param"] == param
    assert set(error) == {"message", "type", "param", "code"}
    assert chat(client, "hi", max_tokens=2).usage.completion_tokens > 0  # still serving


def test_openai_client_raises_typed_errors(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=MODEL, prompt="", max_tokens=2)


def test_oversized_body_is_refused(server, client):
    code, error, _ = _error(server, body={**GOOD, "messages": [{"role": "user", "content": "x" * MAX_BODY}]})
    assert code == 413 and str(MAX_BODY) in error["message"]
    # without a Content-Length (chunked upload) the limit holds too
    chunks = iter([b'{"model": "' + MODEL.encode() + b'", "pad": "', b"x" * MAX_BODY, b'"}'])
    r = httpx.post(server + "/v1/chat/completions", content=chunks, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 413
    assert chat(client, "hi", max_tokens=2).usage.completion_tokens > 0


def test_wrong_or_missing_api_key_is_401(server):
    for key in ("wrong", None):
        code, error, _ = _error(server, body=GOOD, key=key)
        assert code == 401 and error["code"] == "invalid_api_key"
    bad = openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    assert health(server)[0] == 200  # /health needs no key


def test_unknown_route_and_method_are_json(server):
    r = httpx.get(server + "/v1/nothing")
    assert r.status_code == 404 and "error" in r.json()
    r = httpx.get(server + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 405 and "error" in r.json()


def _open_stream(server, max_tokens=3000):
    """A long streamed completion; returns (client, response) once it is queued (its headers came)."""
    http = httpx.Client(timeout=120)
    body = {"model": MODEL, "prompt": COUNTING, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    response = http.send(http.build_request("POST", server + "/v1/completions", json=body,
                                            headers={"Authorization": f"Bearer {KEY}"}), stream=True)
    assert response.status_code == 200
    return http, response


def test_disconnect_mid_stream_stops_generation(server, client):
    before = wait_idle(server)
    http, response = _open_stream(server)
    lines = response.iter_lines()
    texts = []
    while len(texts) < 3:  # a few real tokens, then hang up
        line = next(lines)
        if line.startswith("data: ") and json.loads(line[6:])["choices"][0]["text"]:
            texts.append(line)
    response.close()
    http.close()
    after = wait_idle(server, timeout=60)
    assert after["cancelled"] == before["cancelled"] + 1 and after["completed"] == before["completed"]
    assert chat(client, "hi", max_tokens=2).usage.completion_tokens > 0


def test_full_queue_gets_429_with_retry_after(server, client):
    before = wait_idle(server)
    opened = [_open_stream(server)]  # decoding
    while health(server)[1]["queue"]["active"] == 0:  # the worker has taken it off the queue
        time.sleep(0.05)
    for _ in range(2):  # --max-waiting 2
        opened.append(_open_stream(server))
    queue = health(server)[1]["queue"]
    assert queue["active"] == 1 and queue["waiting"] == 2
    code, error, r = _error(server, body=GOOD)
    assert code == 429 and error["code"] == "queue_full" and int(r.headers["Retry-After"]) >= 1
    with pytest.raises(openai.RateLimitError):
        chat(client, "hi", max_tokens=2)
    for http, response in opened:  # hanging up frees the decoding slot and the queue
        response.close()
        http.close()
    after = wait_idle(server, timeout=60)
    assert after["rejected"] == before["rejected"] + 2 and after["cancelled"] == before["cancelled"] + 3


@pytest.mark.parametrize("spec, layer_plans, expected", [("auto", None, False), ("auto", True, True),
                                                         ("layerskip", None, True)])
def test_serve_opens_the_export_variant_the_spec_or_flag_asks_for(smollm2_gguf, spec, layer_plans, expected):
    """The default export has no layer plans; --layer-plans, or a drafter that skips layers, serves the variant with them."""
    from edgespec.serve.worker import ModelOptions, open_model

    model = open_model(ModelOptions("smollm2-135m", spec=spec, threads=2, layer_plans=layer_plans))
    assert model.backend.supports_plan() is expected and ("-plans-" in model.source.name) is expected
