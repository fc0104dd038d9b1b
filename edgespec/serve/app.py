"""The HTTP side: a Starlette app speaking OpenAI's API in front of the decoding Worker.

Every error is OpenAI's JSON ({"error": {message, type, param, code}}) with the matching
status, and no request can take the server down: bad bodies are refused before they reach
the worker, a failed generation answers that request only. A client that disconnects is
noticed while its request waits or streams, and its job is cancelled at once.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..errors import ContextOverflowError, EdgespecError
from . import protocol
from .protocol import ApiError
from .worker import Job, QueueFull

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25  # how often a waiting request checks that its client is still there


class State:
    """What the app serves: the worker once the model is loaded (None while loading), the settings."""

    def __init__(self, model_id: str, api_key: str | None = None, max_body: int = 1 << 20):
        self.model_id, self.api_key, self.max_body = model_id, api_key, max_body
        self.worker = None
        self.load_error: str | None = None
        self.started = time.time()


def build_app(state: State) -> Starlette:
    async def health(request: Request):
        if state.worker is None:
            status = "error" if state.load_error else "loading"
            return JSONResponse({"status": status, "model": state.model_id, "error": state.load_error}, 503)
        return JSONResponse({"status": "ok", "model": state.model_id, **state.worker.describe(),
                             "queue": state.worker.status()})

    async def models(request: Request):
        _authorize(state, request)
        return JSONResponse({"object": "list", "data": [_model_card(state)]})

    async def model(request: Request):
        _authorize(state, request)
        if request.path_params["model"] != state.model_id:
            raise ApiError(404, f"the model '{request.path_params['model']}' does not exist here; this server "
                                f"serves: {state.model_id}", "model", "model_not_found")
        return JSONResponse(_model_card(state))

    async def chat(request: Request):
        return await _complete(state, request, chat=True)

    async def completions(request: Request):
        return await _complete(state, request, chat=False)

    routes = [Route("/health", health), Route("/v1/models", models), Route("/v1/models/{model:path}", model),
              Route("/v1/chat/completions", chat, methods=["POST"]),
              Route("/v1/completions", completions, methods=["POST"])]
    handlers = {ApiError: _api_error, HTTPException: _http_error, Exception: _internal_error}
    return Starlette(routes=routes, exception_handlers=handlers)


def _model_card(state: State) -> dict:
    return {"id": state.model_id, "object": "model", "created": int(state.started), "owned_by": "edgespec"}


def _authorize(state: State, request: Request) -> None:
    if not state.api_key:
        return
    given = request.headers.get("authorization", "")
    scheme, _, key = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(), state.api_key.encode()):
        raise ApiError(401, "incorrect or missing API key: send 'Authorization: Bearer <key>' with the key given "
                            "to `edgespec serve --api-key`", code="invalid_api_key")


async def _read_body(state: State, request: Request) -> dict:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > state.max_body:
        raise ApiError(413, f"the request body of {declared} bytes exceeds the limit of {state.max_body} bytes",
                       code="request_too_large")
    raw = bytearray()
    async for piece in request.stream():  # a chunked body has no length: count as it arrives
        raw += piece
        if len(raw) > state.max_body:
            raise ApiError(413, f"the request body exceeds the limit of {state.max_body} bytes",
                           code="request_too_large")
    return protocol.parse_json(bytes(raw))


async def _complete(state: State, request: Request, chat: bool):
    _authorize(state, request)
    worker = state.worker
    if worker is None:
        raise ApiError(503, f"the model {state.model_id} is still loading; retry when GET /health says ok",
                       code="model_loading", headers={"Retry-After": "5"})
    body = await _read_body(state, request)
    req = protocol.parse_completion(body, chat, {state.model_id}, worker.context)
    # tokenizing (and the chat template) is cheap next to decoding: done here, off the decoding thread
    ids = await asyncio.to_thread(worker.chat_ids if chat else worker.text_ids, req.messages if chat else req.prompt)
    room = worker.context - len(ids)
    if not ids or room < 1:
        raise ApiError(400, f"the prompt is {len(ids)} tokens; this model's context is {worker.context} tokens "
                            "(prompt + completion must fit)", "messages" if chat else "prompt",
                       "context_length_exceeded")
    job = Job(ids, min(req.max_tokens or room, room), req.temperature, req.top_p, req.seed, req.stop)
    try:
        worker.submit(job)
    except QueueFull as exc:
        raise ApiError(429, str(exc), code="queue_full", headers={"Retry-After": str(exc.retry_after)}) from None
    if req.stream:
        return StreamingResponse(_stream(worker, job, req, request), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    pieces, info = [], None
    try:
        while info is None:
            kind, value = await _next_event(job, request)
            if kind == "text":
                pieces.append(value)
            elif kind == "error":
                raise _error_for(value)
            elif kind == "gone":
                return Response(status_code=499)  # nobody reads it: the client is gone
            else:
                info = value
    finally:
        if info is None:  # disconnected (or failed): stop the job now
            worker.cancel(job)
    return JSONResponse(protocol.response(req, "".join(pieces), _finish(info), _usage(info), info["edgespec"]))


async def _stream(worker, job: Job, req: protocol.Completion, request: Request):
    """SSE chunks as the worker decodes; `finally` cancels the job if the client left early."""
    done = False
    try:
        yield protocol.sse(protocol.chunk(req, role=True) if req.chat else protocol.chunk(req, text=""))
        while True:
            kind, value = await _next_event(job, request)
            if kind == "text":
                yield protocol.sse(protocol.chunk(req, text=value))
            elif kind == "gone":
                return
            elif kind == "error":
                done = True
                yield protocol.sse(_error_for(value).body())
                break
            else:
                done = True
                last = protocol.chunk(req, finish=_finish(value))
                last["edgespec"] = value["edgespec"]
                yield protocol.sse(last)
                if req.include_usage:
                    yield protocol.sse(protocol.usage_chunk(req, _usage(value), value["edgespec"]))
                break
        yield protocol.sse("[DONE]")
    finally:
        if not done:
            worker.cancel(job)


async def _next_event(job: Job, request: Request):
    """The worker's next event for this job, or ("gone", None) when the client has disconnected."""
    while True:
        try:
            return await asyncio.wait_for(job.events.get(), POLL_SECONDS)
        except asyncio.TimeoutError:
            if await request.is_disconnected():
                return "gone", None


def _finish(info: dict) -> str:
    return "length" if info["stop_reason"] == "length" else "stop"


def _usage(info: dict) -> dict:
    return protocol.usage(info["prompt_tokens"], info["completion_tokens"], info["reused_tokens"])


def _error_for(exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ContextOverflowError):
        return ApiError(400, str(exc), code="context_length_exceeded")
    if isinstance(exc, EdgespecError):
        return ApiError(400, str(exc))
    return ApiError(500, f"generation failed: {type(exc).__name__}: {exc}")


def _json_error(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), error.status, headers=error.headers)


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return _json_error(exc)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    message = {404: f"no route {request.url.path}", 405: f"method {request.method} is not allowed on "
                                                         f"{request.url.path}"}.get(exc.status_code, exc.detail)
    return _json_error(ApiError(exc.status_code, message, headers=exc.headers))


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    error = _error_for(exc)
    if error.status >= 500:
        log.error("request %s failed: %s", request.url.path, exc, exc_info=exc)
    return _json_error(error)
