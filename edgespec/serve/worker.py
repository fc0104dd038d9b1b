"""The decoding side of the server: one model, one decoding thread, a bounded queue in front of it.

This is the only module of the server that touches the Python API (`edgespec.load`,
`Model.chat_prompt`, `Model.generate` and each Generation's stats). One thread decodes
one request at a time on the model's single KV cache, so requests can never corrupt each
other's cache; the others wait in a FIFO of at most `max_waiting` entries, and a request
arriving when it is full is refused (the web layer answers 429 with Retry-After). A request
whose client went away is dropped from the queue, or, if it is decoding, stopped before
the next verify pass: closing its Generation trims the cache to what was emitted.
Prefix reuse comes from the Model: a chat that resends its history after its own last
answer only prefills the new turn.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import threading
import time
from dataclasses import dataclass, field

from ..api import load
from ..errors import EdgespecError
from ..memory import default_budget
from ..sampling import SamplingParams

log = logging.getLogger(__name__)


@dataclass
class ModelOptions:
    """What `edgespec serve` passes to edgespec.load (mirrors the CLI's flags)."""

    model: str
    backend: str = "ort"
    spec: str = "auto"
    draft_budget: int = 8
    exact: bool = False
    context: int | None = None
    threads: int = 0
    device: str = "cpu"
    memory_budget: str | None = None
    layer_plans: bool | None = None  # None: as --spec needs (edgespec.load)


def open_model(options: ModelOptions):
    """Load and prepare the model (export on first use, --spec auto's calibration): may take minutes."""
    return load(options.model, backend=options.backend, spec=options.spec, draft_budget=options.draft_budget,
                exact=options.exact, memory_budget=options.memory_budget or default_budget(),
                context=options.context, threads=options.threads, device=options.device,
                layer_plans=options.layer_plans)


class QueueFull(Exception):
    def __init__(self, retry_after: int, active: int, waiting: int):
        super().__init__(f"the server is busy: {active} request(s) decoding and {waiting} waiting, the most it "
                         f"queues; retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass
class Job:
    """One request on its way through the worker. The thread posts ("text", str), then ("done", info)
    or ("error", exception) to `events` on the event loop that submitted it."""

    prompt: list[int]
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    loop: asyncio.AbstractEventLoop | None = None
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.monotonic)

    def post(self, kind: str, value) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))


class Worker:
    def __init__(self, model, max_waiting: int = 8):
        self.model, self.max_waiting = model, max_waiting
        self._waiting: collections.deque[Job] = collections.deque()
        self._active: Job | None = None
        self._lock = threading.Condition()
        self._closed = False
        self.counts = collections.Counter()  # completed, cancelled, rejected, failed
        self._busy_seconds, self._jobs_timed = 0.0, 0
        self._thread = threading.Thread(target=self._run, name="edgespec-decode", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- the API, in one place
    def describe(self) -> dict:
        m = self.model
        return {"backend": m.backend_name, "spec": m.spec_name, "context": m.context_length}

    @property
    def context(self) -> int:
        return self.model.context_length

    def chat_ids(self, messages: list[dict]) -> list[int]:
        return self.model.chat_prompt(messages)

    def text_ids(self, prompt: str | list[int]) -> list[int]:
        return list(prompt) if isinstance(prompt, list) else self.model.tokenizer.encode(prompt)

    def _generate(self, job: Job) -> dict:
        m = self.model
        sampling = SamplingParams(temperature=job.temperature, top_p=job.top_p, seed=job.seed)
        with m.generate(job.prompt, max_tokens=job.max_tokens, sampling=sampling, stop=job.stop) as generation:
            for event in generation:
                if job.cancelled.is_set():
                    generation.close("cancelled")  # now: the cache is trimmed to what was emitted
                    break
                if event.text:
                    job.post("text", event.text)
        s = generation.stats
        spec = s.spec
        return {"prompt_tokens": s.prompt_tokens, "completion_tokens": s.generated_tokens,
                "reused_tokens": s.reused_tokens, "stop_reason": s.stop_reason,
                "edgespec": {"backend": m.backend_name, "spec": m.spec_name, "drafter": _drafter(m),
                             "tokens_per_step": round(spec.tokens_per_step, 3), "steps": spec.steps,
                             "drafted": spec.drafted, "accepted": spec.accepted, "reused_tokens": s.reused_tokens,
                             "prefill_tok_s": round(s.prefill_tok_s, 1), "decode_tok_s": round(s.decode_tok_s, 1)}}

    # ---------------------------------------------------------------- queue
    def submit(self, job: Job) -> None:
        job.loop = job.loop or asyncio.get_running_loop()
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker is closed")
            active = int(self._active is not None)
            # full = one decoding + max_waiting waiting; a job that ends frees its slot before the next is
            # taken off the queue, and that moment must not count as full
            if active + len(self._waiting) >= 1 + self.max_waiting:
                self.counts["rejected"] += 1
                raise QueueFull(self._retry_after(), active, len(self._waiting))
            self._waiting.append(job)
            self._lock.notify()

    def cancel(self, job: Job) -> None:
        """The client went away: forget the job if it waits, stop it before its next pass if it runs."""
        job.cancelled.set()
        with self._lock:
            if job in self._waiting:
                self._waiting.remove(job)
                self.counts["cancelled"] += 1

    def status(self) -> dict:
        with self._lock:
            return {"active": int(self._active is not None), "waiting": len(self._waiting),
                    "max_waiting": self.max_waiting, **{k: self.counts[k] for k in
                                                        ("completed", "cancelled", "rejected", "failed")}}

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for job in [*self._waiting, self._active]:
                if job is not None:
                    job.cancelled.set()
            self._waiting.clear()
            self._lock.notify_all()
        self._thread.join(timeout=30)

    def _retry_after(self) -> int:
        """Seconds until a queue slot is likely free: the mean time a request has taken so far."""
        mean = self._busy_seconds / self._jobs_timed if self._jobs_timed else 1.0
        return max(1, math.ceil(mean))

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                job = self._active = self._waiting.popleft()
            start = time.monotonic()
            try:
                result = ("done", self._generate(job))
                outcome = "cancelled" if job.cancelled.is_set() else "completed"
            except Exception as exc:  # noqa: BLE001  (reported to that client; the server goes on)
                if not isinstance(exc, EdgespecError):
                    log.exception("generation failed")
                result, outcome = ("error", exc), "failed"
            with self._lock:  # the slot is free before the client hears that its request is done
                self._active = None
                self.counts[outcome] += 1
                self._busy_seconds += time.monotonic() - start
                self._jobs_timed += 1
            job.post(*result)
            if outcome == "cancelled":
                log.info("request cancelled by its client; its decoding stopped and the cache was trimmed")


def _drafter(model) -> str:
    """Which drafters the speculative engine has (auto: the controller's candidates)."""
    drafter = model.drafter
    if drafter is None:
        return "none"
    inner = getattr(drafter, "drafters", None)
    return "+".join(inner) if isinstance(inner, dict) else type(drafter).__name__
