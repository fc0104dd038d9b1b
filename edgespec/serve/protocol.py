"""The OpenAI wire format: request bodies -> a validated `Completion` request, results -> response JSON.

Pure functions (no model, no web framework), so every rule here is testable on its own.
Parameters follow the OpenAI API's meaning and defaults (temperature 1, top_p 1; `max_tokens`
defaults to the rest of the context). Parameters edgespec cannot honour (`n` > 1, `logprobs`,
`echo`, tools...) are refused with a 400 naming them rather than silently ignored.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field

MAX_STOP_STRINGS = 4  # as OpenAI


class ApiError(Exception):
    """An error the client caused (or a state it must wait out), sent as OpenAI's error JSON."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.kind = kind or _KIND.get(status, "invalid_request_error")
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


_KIND = {401: "authentication_error", 404: "invalid_request_error", 413: "invalid_request_error",
         429: "rate_limit_error", 500: "server_error", 503: "server_error"}


@dataclass
class Completion:
    """One validated request: either chat `messages` or a raw `prompt`, plus decoding parameters."""

    chat: bool
    model: str
    messages: list[dict] | None = None
    prompt: str | list[int] | None = None
    max_tokens: int | None = None  # None: up to the end of the context
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:24])
    created: int = field(default_factory=lambda: int(time.time()))


def parse_json(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON ({exc}); expected a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body is a JSON {type(body).__name__}; expected a JSON object")
    return body


# parameters clients commonly send with their default (harmless) value; anything else is refused
_NEUTRAL = {"n": (1, None), "logprobs": (None, False, 0), "top_logprobs": (None, 0), "echo": (None, False),
            "best_of": (None, 1), "suffix": (None, ""), "tools": (None, []), "tool_choice": (None, "none", "auto"),
            "functions": (None, []), "logit_bias": (None, {}), "response_format": (None, {"type": "text"}),
            "presence_penalty": (None, 0, 0.0), "frequency_penalty": (None, 0, 0.0)}


def parse_completion(body: dict, chat: bool, served: set[str], context: int) -> Completion:
    """Validate an OpenAI (chat) completion body against the served model names and its context."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "'model' is required: a string naming the served model", "model")
    if model not in served:
        raise ApiError(404, f"the model '{model}' does not exist here; this server serves: {', '.join(sorted(served))}",
                       "model", "model_not_found")
    for name, allowed in _NEUTRAL.items():
        if name in body and body[name] not in allowed:
            raise ApiError(400, f"'{name}' = {body[name]!r} is not supported by edgespec serve", name,
                           "unsupported_parameter")
    req = Completion(chat=chat, model=model)
    if chat:
        req.messages = _messages(body.get("messages"))
    else:
        req.prompt = _prompt(body.get("prompt"))
    limit = body.get("max_completion_tokens", body.get("max_tokens")) if chat else body.get("max_tokens")
    if limit is not None:
        param = "max_completion_tokens" if chat and "max_completion_tokens" in body else "max_tokens"
        if not _is_int(limit) or limit < 1:
            raise ApiError(400, f"'{param}' = {limit!r} is invalid; expected an integer >= 1", param)
        if limit > context:
            raise ApiError(400, f"'{param}' = {limit} exceeds the model's context of {context} tokens", param,
                           "context_length_exceeded")
        req.max_tokens = limit
    req.temperature = _number(body, "temperature", 1.0, 0.0, 2.0)
    req.top_p = _number(body, "top_p", 1.0, 0.0, 1.0)
    if req.top_p == 0:  # OpenAI accepts 0: only the top token
        req.temperature = 0.0
        req.top_p = 1.0
    seed = body.get("seed")
    if seed is not None and not (_is_int(seed) and seed >= 0):
        raise ApiError(400, f"'seed' = {seed!r} is invalid; expected an integer >= 0", "seed")
    req.seed = seed
    req.stop = _stop(body.get("stop"))
    stream = body.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise ApiError(400, f"'stream' = {stream!r} is invalid; expected true or false", "stream")
    req.stream = bool(stream)
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise ApiError(400, "'stream_options' must be an object", "stream_options")
        req.include_usage = bool(options.get("include_usage", False))
    return req


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(body: dict, name: str, default: float, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ApiError(400, f"'{name}' = {value!r} is invalid; expected a number in [{low}, {high}]", name)
    return float(value)


def _stop(value) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops) or len(stops) > MAX_STOP_STRINGS:
        raise ApiError(400, f"'stop' = {value!r} is invalid; expected a string or a list of up to "
                            f"{MAX_STOP_STRINGS} strings", "stop")
    return tuple(s for s in stops if s)


_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def _messages(value) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise ApiError(400, "'messages' is required: a non-empty list of {role, content} objects", "messages")
    out = []
    for i, message in enumerate(value):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in _ROLES:
            raise ApiError(400, f"messages[{i}].role = {role!r} is invalid; expected one of "
                                f"{', '.join(_ROLES)}", f"messages[{i}].role")
        out.append({"role": _ROLES[role], "content": _content(message.get("content"), i)})
    return out


def _content(content, i: int) -> str:
    """A message's text: a string, or a list of text parts (images and audio are refused)."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                         and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    raise ApiError(400, f"messages[{i}].content is invalid; expected a string or a list of "
                        "{\"type\": \"text\", \"text\": ...} parts (this server reads text only)",
                   f"messages[{i}].content")


def _prompt(value) -> str | list[int]:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]  # a batch of one prompt
    if isinstance(value, str) and value:
        return value
    if isinstance(value, list) and value and all(_is_int(t) and t >= 0 for t in value):
        return value  # token ids
    raise ApiError(400, "'prompt' is required: a non-empty string, a list of one string, or a list of token ids "
                        "(one prompt per request)", "prompt")


# ---------------------------------------------------------------------------------------------- responses

def usage(prompt_tokens: int, completion_tokens: int, reused: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": reused}}


def response(req: Completion, text: str, finish: str, usage_: dict, extension: dict) -> dict:
    """The non-streaming body; `extension` (edgespec's speculative stats) rides under the key "edgespec"."""
    if req.chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                  "finish_reason": finish}
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
    return {**_head(req), "choices": [choice], "usage": usage_, "edgespec": extension}


def chunk(req: Completion, text: str | None = None, finish: str | None = None, role: bool = False) -> dict:
    """One streamed chunk: a piece of text, the opening role, or the closing finish_reason."""
    if req.chat:
        delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text is not None else {})
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    else:
        choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
    body = {**_head(req, stream=True), "choices": [choice]}
    if req.include_usage:
        body["usage"] = None  # as OpenAI: null on every chunk but the last
    return body


def usage_chunk(req: Completion, usage_: dict, extension: dict) -> dict:
    """The last chunk with stream_options.include_usage: no choices, the usage (and edgespec's stats)."""
    return {**_head(req, stream=True), "choices": [], "usage": usage_, "edgespec": extension}


def _head(req: Completion, stream: bool = False) -> dict:
    if req.chat:
        return {"id": f"chatcmpl-{req.id}", "object": "chat.completion.chunk" if stream else "chat.completion",
                "created": req.created, "model": req.model, "system_fingerprint": None}
    return {"id": f"cmpl-{req.id}", "object": "text_completion", "created": req.created, "model": req.model,
            "system_fingerprint": None}


def sse(data) -> bytes:
    """One server-sent event carrying `data` (a dict as JSON, or the literal [DONE])."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()
