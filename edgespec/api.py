"""The public Python API and the ONE composition of a model: `load()` -> `Model`, `Model.generate()`.

    import edgespec
    model = edgespec.load("smollm2-135m", spec="auto")
    generation = model.generate("Hello", max_tokens=32)
    for event in generation:
        print(event.text, end="")
    print(generation.stats.decode_tok_s)      # this call's stats, final once the iteration ended

`load` = the loader (resolve -> export on first use -> open the backend, --backend auto) + the
memory budget + the drafter for `spec`, with whatever calibration it needs (the layer-skip search,
the cost curve) or the draft model it names, measured or loaded here and handed down: the CLI, chat,
the bench worker (and a server) call only this. A Model serves one generation at a time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from . import hub, loader
from .errors import ContextOverflowError, EdgespecError, ModelFormatError
from .export.trained import load_drafter
from .loader import cached_export  # noqa: F401  (public: the bench and tests find the default export with it)
from .memory import MemoryPlan, plan_memory, row_bytes
from .sampling import Sampler, SamplingParams
from .speculative.calibration.costs import CALIBRATION_TEXT, cached_cost_model
from .speculative.calibration.layerskip import CALIBRATION_PROMPTS, tuned_layerskip
from .speculative.drafters.draft_model import check_same_vocabulary
from .speculative.drafters.select import DrafterInputs, check_spec
from .speculative.engine import SpecStats, common_prefix, decode
from .sysinfo import peak_rss
from .tokenizer import chat_ids

log = logging.getLogger(__name__)
BACKENDS = loader.BACKENDS


class GenerationInProgressError(EdgespecError):
    """A Model was asked for a second generation while one is still open."""


@dataclass
class TokenEvent:
    token: int  # -1 for the last event when it only flushes held-back text
    text: str  # complete UTF-8 text this token finished (may be "")


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    generated_tokens: int = 0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    stop_reason: str = ""  # eos | stop | length, or the reason given to Generation.close (e.g. interrupted)
    reused_tokens: int = 0  # prompt tokens whose KV the cache still held (earlier chat turns)
    token_ids: list[int] = field(default_factory=list)
    spec: SpecStats = field(default_factory=SpecStats)

    @property
    def prefill_tok_s(self) -> float:
        computed = self.prompt_tokens - self.reused_tokens
        return computed / self.prefill_seconds if self.prefill_seconds else 0.0

    @property
    def decode_tok_s(self) -> float:
        return self.generated_tokens / self.decode_seconds if self.decode_seconds else 0.0


class Generation:
    """One call of Model.generate: iterate it for TokenEvents. `stats` belongs to this call alone and is
    final once the iteration has ended or `close()` was called (also a context manager). Until then the
    Model refuses another generation."""

    def __init__(self, model: "Model", events: Iterator[TokenEvent], stats: GenerationStats):
        self.model, self._events, self.stats = model, events, stats
        self.finished = False

    def __iter__(self) -> "Generation":
        return self

    def __next__(self) -> TokenEvent:
        try:
            return next(self._events)
        except StopIteration:
            self.close()
            raise
        except KeyboardInterrupt:
            self.close("interrupted")
            raise
        except BaseException:
            self.close("error")
            raise

    def close(self, reason: str = "closed") -> None:
        """End this generation now (the engine trims the cache to what was taken); `reason` becomes the
        stop reason unless it already had one (eos, stop, length)."""
        if self.finished:
            return
        self.finished = True
        self._events.close()
        if not self.stats.stop_reason:
            self.stats.stop_reason = reason
        if self.model._active is self:
            self.model._active = None

    def __enter__(self) -> "Generation":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        self.close()


class Model:
    """A loaded model: tokenizer + one Backend (onnxruntime, llama.cpp or the numpy reference) + a drafter.
    Made by `load()`."""

    def __init__(self, ref: hub.ModelRef, opened: loader.Opened, threads: int = 0):
        self.ref, self.backend, self.tokenizer, self.config = ref, opened.backend, opened.tokenizer, opened.config
        self.source, self.threads = opened.source, threads  # the export dir / weights file the backend runs
        self.context, self.backend_name = opened.context, opened.description
        self.drafter, self.spec_name, self.budget, self.exact = None, "off", 0, False
        self.memory_plan: MemoryPlan | None = None
        self._draft_model: Model | None = None  # draft:MODEL keeps its Model alive here
        self._cached: list[int] = []  # the tokens the backend's KV cache holds
        self._active: Generation | None = None

    @property
    def context_length(self) -> int:
        return self.context

    def set_spec(self, spec: str = "off", budget: int = 8, exact: bool = False) -> None:
        """Choose the drafter (what load(spec=...) does): see drafters/select.py's SPEC_CHOICES.

        exact: every pass has >= 2 rows, so the output is bit-identical with or without speculation
        (see edgespec.speculative.engine); otherwise the two may differ at numerical near-ties."""
        self._check_idle()
        entry, argument = check_spec(spec)
        self._cached = []  # calibration runs on the backend: forget what it held
        inputs = DrafterInputs(self.backend, self.config, budget, argument)
        # the cost curve first: it bounds what layer skip could gain before the quick search (its
        # seconds-long first use; calibration/layerskip.py) tries any skip set
        if "cost" in entry.needs or ("layerskip" in entry.needs and self.backend.supports_plan()):
            weights = self.source if self.source and Path(self.source).exists() else self.ref.path
            inputs.cost = cached_cost_model(self.backend, self.tokenizer.encode(CALIBRATION_TEXT), weights,
                                            self.ref.name, self.threads)
        if "layerskip" in entry.needs and self.backend.supports_plan():
            inputs.layerskip = self._layerskip_record(cost=inputs.cost)
        if "draft_backend" in entry.needs:
            inputs.draft_backend = self._load_draft_model(argument).backend
        for kind in ("ppd", "s3d"):  # trained drafters: required by name, or whatever the export has (auto)
            if kind in entry.needs or "trained" in entry.needs:
                found = self._trained_drafter(kind, argument if kind in entry.needs else "",
                                              required=kind in entry.needs)
                if found is not None:
                    inputs.trained[kind] = found
        self.drafter, self.spec_name, self.exact = entry.factory(inputs), spec, exact
        self.budget = budget if self.drafter is not None else 0

    def tune(self, tokens: int = 48) -> dict:
        """Search this device's fastest layer-skip drafter now and store it in the export's manifest."""
        self._check_idle()
        self._cached = []
        return self._layerskip_record(retune=True, tokens=tokens)

    def _layerskip_record(self, retune: bool = False, tokens: int = 48, cost=None) -> dict:
        prompts = [self.chat_prompt([{"role": "user", "content": p}]) for p in CALIBRATION_PROMPTS]
        return tuned_layerskip(self.backend, self.config.num_layers, prompts, self.threads, self.source,
                               self.ref.name, retune=retune, tokens=tokens, cost=cost)

    def _trained_drafter(self, kind: str, path: str, required: bool):
        """(rows, record) of the export's trained `kind` drafter (or of the file `path`), checked to be
        trained for this export; None when not required and there is none."""
        if self.source is None or not (Path(self.source) / "edgespec.json").is_file():
            if required:
                raise EdgespecError(f"--spec {kind} needs an ONNX export with a trained {kind} drafter; "
                                    f"{self.ref.name} runs on {self.backend_name}")
            return None
        try:
            return load_drafter(self.source, kind, path or None)
        except ModelFormatError:
            if required:
                raise
            return None

    def _load_draft_model(self, name: str) -> "Model":
        """The draft model on the target's backend kind, checked to speak the same vocabulary."""
        kind = "llamacpp" if self.backend.name == "llamacpp" else "ort"
        draft = load(name, backend=kind, threads=self.threads, context=self.context_length)
        check_same_vocabulary(self.tokenizer, draft.tokenizer, self.ref.name, draft.ref.name)
        self._draft_model = draft
        return draft

    def apply_memory_budget(self, budget: int, want_rows: int = 65) -> MemoryPlan:
        """Fit the context and the tokens per pass (prefill chunk, draft tree) into `budget` bytes of
        resident memory, from what loading really took (see edgespec.memory)."""
        # a backend with a fixed batch (llama.cpp, sized to the budget when it was created) caps the rows
        want_rows = min(want_rows, getattr(self.backend, "n_batch", want_rows))
        memory = self.backend.memory()
        kv_per_token = memory.get("kv_per_token") or (
            2 * self.config.num_layers * self.config.num_kv_heads * self.config.head_dim * 4)
        # the high-water mark, not the current size: loading peaks above what stays resident; minus a KV
        # cache the backend already allocated and cleared for its whole context (llama.cpp), counted below
        loaded = peak_rss() - memory.get("kv_resident", 0)
        self.memory_plan = plan_memory(budget, loaded, kv_per_token, row_bytes(self.config), self.context, want_rows)
        self.context = min(self.context, self.memory_plan.context)
        return self.memory_plan

    def chat_prompt(self, messages: list[dict]) -> list[int]:
        return chat_ids(self.tokenizer, messages)

    def _check_idle(self) -> None:
        if self._active is not None:
            raise GenerationInProgressError(
                "this Model is already generating: a Model serves one generation at a time — finish iterating "
                "the open one or call its close() first (load another Model to run two at once)")

    def generate(self, prompt: str | list[int], max_tokens: int | None = 128,
                 sampling: SamplingParams = SamplingParams(), stop_on_eos: bool = True,
                 stop: tuple[str, ...] = ()) -> Generation:
        """A Generation: iterate it for TokenEvents; its `stats` are this call's.

        max_tokens: at most this many new tokens; None = until EOS (or a stop string) or a full context.

        stop: strings that end generation; the text of the token that completes one is cut
        just before it (like llama.cpp / OpenAI `stop`)."""
        self._check_idle()
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        if not ids:
            raise ContextOverflowError("the prompt is empty: nothing to continue from")
        if len(ids) + 1 > self.context_length:
            raise ContextOverflowError(
                f"prompt of {len(ids)} tokens does not fit the context of {self.context_length} tokens")
        whole = isinstance(max_tokens, int) and not isinstance(max_tokens, bool)
        if max_tokens is not None and not (whole and max_tokens >= 1):
            raise EdgespecError(f"max_tokens {max_tokens!r}: expected a positive integer, or None for no limit")
        room = self.context_length - len(ids)
        stats = GenerationStats(prompt_tokens=len(ids))
        events = self._events(ids, room if max_tokens is None else min(max_tokens, room), sampling, stop_on_eos,
                              stop, stats)
        self._active = Generation(self, events, stats)
        return self._active

    def _events(self, ids: list[int], max_tokens: int, sampling: SamplingParams, stop_on_eos: bool,
                stop: tuple[str, ...], stats: GenerationStats) -> Iterator[TokenEvent]:
        detok = self.tokenizer.stream_decoder()
        # keep what the cache already holds of this prompt (the earlier turns of a chat)
        # At least 2 prompt tokens are always fed: a 1-token pass rounds differently (speculative/engine.py), and
        # the same prompt must give the same logits whether or not its prefix was cached.
        reuse = 0 if self.backend.cache_len != len(self._cached) else common_prefix(self._cached, ids[:-2])
        stats.reused_tokens = reuse
        self._cached = []  # unknown until the engine has trimmed the cache
        max_rows = self.memory_plan.max_rows if self.memory_plan else None
        events = decode(self.backend, ids, Sampler(sampling), max_tokens, self.drafter, self.budget, stats.spec,
                        reuse_prefix=reuse, exact=self.exact, max_rows=max_rows)
        emitted = []
        start = time.perf_counter()
        pending = ""  # text held back while it could begin a stop string
        try:
            for event in events:
                if stats.generated_tokens == 0:
                    stats.prefill_seconds, start = time.perf_counter() - start, time.perf_counter()
                token = event.token
                emitted.append(token)
                if stop_on_eos and token in self.tokenizer.stop_ids:
                    stats.stop_reason = "eos"
                    break
                stats.token_ids.append(token)
                stats.generated_tokens += 1
                pending += detok.push(token)
                hits = [i for s in stop if s and (i := pending.find(s)) >= 0]
                if hits:
                    stats.stop_reason = "stop"
                    yield TokenEvent(token, pending[:min(hits)])
                    break
                hold = _stop_prefix_length(pending, stop)
                yield TokenEvent(token, pending[:len(pending) - hold])
                pending = pending[len(pending) - hold:]
            else:
                stats.stop_reason = "length"
        finally:
            events.close()  # the engine trims the cache to what was taken
            self._cached = (ids + emitted)[:self.backend.cache_len]
            stats.decode_seconds = time.perf_counter() - start
        tail = pending + detok.flush()
        if tail and stats.stop_reason != "stop":
            yield TokenEvent(-1, tail)

    def settle(self, timeout: float | None = None) -> None:
        """Wait for the backend's background work on its weights (onnxruntime: moving them into huge pages,
        runtimes/huge_pages.py) to end: benchmarks time the steady state, not the first seconds."""
        for model in (self, self._draft_model):
            if model is not None and hasattr(model.backend, "settle"):
                model.backend.settle(timeout)

    def close(self) -> None:
        """Release the backend (memory included) now, not at garbage collection."""
        if self._active is not None:
            self._active.close()
        for model in (self, self._draft_model):
            if model is not None and hasattr(model.backend, "close"):
                model.backend.close()


def _stop_prefix_length(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest end of `text` that is the start of some stop string."""
    return max((k for s in stops for k in range(min(len(s) - 1, len(text)), 0, -1) if text.endswith(s[:k])),
               default=0)


def load(model: str = hub.DEFAULT_MODEL, *, backend: str = "ort", spec: str = "off", draft_budget: int = 8,
         exact: bool = False, memory_budget: int | str | None = None, context: int | None = None, threads: int = 0,
         device: str = "cpu", layer_plans: bool | None = None) -> Model:
    """model: a known model name, a .gguf file, an HF directory or an export directory.

    backend "ort": sources are exported to int4 ONNX once, cached, and run on onnxruntime.
    backend "llamacpp": a GGUF (a known model's, a file, or an `export --format gguf`) on llama.cpp.
    backend "auto": whichever of the two decodes faster here (measured once, cached).
    backend "reference": the numpy fp32 reference model (exact, slow; exports are refused).
    spec: off | ngram | layerskip | auto | draft:MODEL; draft_budget: max draft tokens per verify pass;
    exact: bit-identical output with and without spec (every pass has >= 2 rows).
    memory_budget: bytes or "1.5G": context and draft size shrink to fit; a budget plain decoding
    cannot fit is refused before anything is loaded. threads: 0 = all physical cores.
    backend "static": static-shape graphs (`export --target npu`, made once from a source) on device cpu,
    qnn (QNN HTP) or openvino.
    device: cpu; qnn / openvino run static exports (backend static; a dynamic export is refused with the
    command that makes a static one); other onnxruntime devices (xnnpack, ...) need backend ort or auto.
    layer_plans: open a source as its export variant with an If per middle layer (layer-skip drafting;
    every plain step pays for them); None: when `spec` drafts with layers skipped (layerskip, s3d).
    An export directory is opened as it is.
    """
    entry, _ = check_spec(spec)  # a bad --spec fails before any (slow) loading
    plans = entry.layer_plans if layer_plans is None else layer_plans
    ref, opened, budget = loader.load_backend(model, backend, threads=threads, device=device, context=context,
                                              memory_budget=memory_budget, layer_plans=plans)
    loaded = Model(ref, opened, threads)
    if budget is not None:
        loaded.apply_memory_budget(budget)
    loaded.set_spec(spec, draft_budget, exact)
    log.debug("%s on %s, speculation: %s", ref.name, loaded.backend_name, loaded.spec_name)
    return loaded
