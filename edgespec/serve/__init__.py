"""`edgespec serve MODEL`: an OpenAI-compatible local server (the `[serve]` extra: Starlette + uvicorn).

    edgespec serve smollm2-135m --port 8080
    curl localhost:8080/v1/chat/completions -d '{"model": "smollm2-135m", "messages": [...]}'

The HTTP server starts at once; the model loads (and, on first use, exports and calibrates
`--spec auto`) in the background, and GET /health answers 503 "loading" until it is ready.
protocol.py is the wire format, app.py the routes, worker.py the decoding thread and its queue.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading

from .. import hub
from ..arg_types import draft_budget, port, positive_tokens, threads
from ..errors import EdgespecError, MissingDependencyError
from ..speculative.drafters.select import check_spec
from .worker import ModelOptions, Worker, open_model

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    """`edgespec serve`'s flags (the model flags mean what they mean for generate and chat)."""
    p.add_argument("model", help="known model name, .gguf file, HF directory or export directory")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=port, default=8080, help="TCP port (default 8080)")
    p.add_argument("--api-key", default=os.environ.get("EDGESPEC_API_KEY"),
                   help="require 'Authorization: Bearer KEY' on /v1 (default: $EDGESPEC_API_KEY, else none)")
    p.add_argument("--model-id", help="the name clients use in 'model' (default: MODEL as given)")
    p.add_argument("--max-waiting", type=int, default=8,
                   help="requests that may wait while one decodes; more get 429 with Retry-After")
    p.add_argument("--max-body", type=int, default=1 << 20, help="largest request body in bytes")
    p.add_argument("--backend", default="ort", choices=["ort", "llamacpp", "auto", "reference"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=threads, default=0, help="compute threads (0 = all physical cores)")
    p.add_argument("--context", type=positive_tokens, default=None,
                   help="tokens (default 4096, or the model's maximum if smaller)")
    p.add_argument("--spec", default="auto", help="speculative decoding (default auto): off, ngram, layerskip, "
                                                  "ppd, s3d, draft:MODEL, auto")
    p.add_argument("--layer-plans", action="store_true", default=None,
                   help="serve the model's export variant with layer plans (as chat/generate --layer-plans)")
    p.add_argument("--draft-budget", type=draft_budget, default=8)
    p.add_argument("--exact", action="store_true", help="bit-identical output with and without speculation")
    p.add_argument("--memory-budget")


def run(args) -> int:
    try:  # the [serve] extra: imported only when serving
        import uvicorn

        from .app import State, build_app
    except ImportError as exc:
        raise MissingDependencyError(f"edgespec serve needs the [serve] extra ({exc.name} is missing): "
                                     "pip install 'edgespec[serve]'") from None
    check_spec(args.spec)
    _check_address(args.host, args.port)
    hub.resolve_model(args.model, pull_missing=False)  # an unknown name fails now, not after the server started
    if args.max_waiting < 0 or args.max_body < 1:
        raise EdgespecError(f"--max-waiting {args.max_waiting} / --max-body {args.max_body}: expected >= 0 / >= 1")
    if not args.api_key and not _is_loopback(args.host):
        log.warning("serving on %s without --api-key: anyone who can reach this address can use the model",
                    args.host)
    options = ModelOptions(args.model, args.backend, args.spec, args.draft_budget, args.exact, args.context,
                           args.threads, args.device, args.memory_budget, args.layer_plans)
    state = State(args.model_id or args.model, args.api_key, args.max_body)
    config = uvicorn.Config(build_app(state), host=args.host, port=args.port, log_level="warning",
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)

    def load() -> None:
        try:
            log.info("loading %s (%s backend, --spec %s); GET /health says ok when ready", args.model,
                     args.backend, args.spec)
            state.worker = Worker(open_model(options), args.max_waiting)
            info = state.worker.describe()
            log.info("ready: %s on %s, speculation %s, context %d, serving http://%s:%d/v1", state.model_id,
                     info["backend"], info["spec"], info["context"], args.host, args.port)
        except Exception as exc:  # noqa: BLE001  (reported, then the server stops)
            state.load_error = str(exc)
            if not isinstance(exc, EdgespecError):
                log.exception("loading %s failed", args.model)
            server.should_exit = True

    loader = threading.Thread(target=load, name="edgespec-load", daemon=True)
    loader.start()
    server.run()
    if state.worker is not None:
        state.worker.close()
    if state.load_error:
        raise EdgespecError(f"could not load {args.model}: {state.load_error}")
    return 0


def _check_address(host: str, port: int) -> None:
    """Bind once before anything loads: a host this machine cannot serve on, or a port in use, is an error that
    names them (uvicorn's own bind failure came while the model loaded beside it, and aborted the process)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise EdgespecError(f"--host {host}: not an address to serve on ({exc.strerror})") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            raise EdgespecError(f"cannot serve on {host}:{port}: {exc.strerror}") from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
