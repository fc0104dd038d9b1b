"""The server's wire format on its own (no model, no server): what is accepted, refused, and how."""

from __future__ import annotations

import pytest

from edgespec.serve.protocol import ApiError, chunk, parse_completion, parse_json, response

SERVED = {"m"}


def parse(body: dict, chat: bool = True, context: int = 100):
    return parse_completion({"model": "m", **body}, chat, SERVED, context)


def refused(body: dict, chat: bool = True) -> ApiError:
    with pytest.raises(ApiError) as info:
        parse(body, chat)
    return info.value


CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def test_openai_defaults_and_limits():
    req = parse(CHAT)
    assert (req.temperature, req.top_p, req.max_tokens, req.stop, req.stream) == (1.0, 1.0, None, (), False)
    assert parse({**CHAT, "max_completion_tokens": 7, "max_tokens": 9}).max_tokens == 7
    assert parse({**CHAT, "top_p": 0}).temperature == 0.0  # top_p 0: only the top token
    assert parse({**CHAT, "stop": "END"}).stop == ("END",)
    assert parse({"prompt": ["one prompt"]}, chat=False).prompt == "one prompt"
    assert parse({"prompt": [1, 2, 3]}, chat=False).prompt == [1, 2, 3]


def test_message_content_parts_and_roles():
    req = parse({"messages": [{"role": "developer", "content": "be brief"},
                              {"role": "user", "content": [{"type": "text", "text": "a"},
                                                           {"type": "text", "text": "b"}]}]})
    assert req.messages == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "ab"}]
    error = refused({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]})
    assert error.status == 400 and error.param == "messages[0].content"


@pytest.mark.parametrize("body, param", [
    ({**CHAT, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({**CHAT, "stop": 3}, "stop"),
    ({**CHAT, "max_tokens": 0}, "max_tokens"),
    ({**CHAT, "max_tokens": True}, "max_tokens"),
    ({**CHAT, "max_tokens": 101}, "max_tokens"),
    ({**CHAT, "temperature": 2.5}, "temperature"),
    ({**CHAT, "seed": "x"}, "seed"),
    ({**CHAT, "seed": -3}, "seed"),  # numpy's generator takes no negative seed: was an error mid-request
    ({**CHAT, "stream": "yes"}, "stream"),
    ({**CHAT, "logprobs": True}, "logprobs"),
    ({**CHAT, "tools": [{"type": "function"}]}, "tools"),
    ({"messages": []}, "messages"),
])
def test_bad_parameters_name_themselves(body, param):
    error = refused(body)
    assert error.status == 400 and error.param == param and param.split("[")[0] in error.message


def test_unknown_model_is_404_and_bad_json_400():
    with pytest.raises(ApiError) as info:
        parse_completion({"model": "other", **CHAT}, True, SERVED, 100)
    assert info.value.status == 404 and info.value.code == "model_not_found" and "other" in info.value.message
    for raw in (b"{", b'"text"', b"\xff\xfe"):
        with pytest.raises(ApiError) as info:
            parse_json(raw)
        assert info.value.status == 400


def test_response_shapes():
    chat, text = parse(CHAT), parse({"prompt": "x"}, chat=False)
    assert response(chat, "hi", "stop", {}, {})["choices"][0]["message"] == {"role": "assistant", "content": "hi"}
    assert response(text, "hi", "length", {}, {})["choices"][0]["text"] == "hi"
    assert chunk(chat, role=True)["choices"][0]["delta"]["role"] == "assistant"
    assert chunk(chat, finish="stop")["choices"][0]["delta"] == {}
    assert "usage" not in chunk(chat, text="a")  # only with stream_options.include_usage


def test_loopback_detection_for_the_bind_warning():
    from edgespec.serve import _is_loopback

    assert _is_loopback("127.0.0.1") and _is_loopback("localhost") and _is_loopback("::1")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("192.168.1.5") and not _is_loopback("example.org")


def test_serve_refuses_an_unknown_model_in_one_line():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "edgespec.cli", "serve", "no-such-model", "--port", "1"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error: unknown model 'no-such-model'" in result.stderr
