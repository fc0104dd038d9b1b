"""The public Python API: `load()` a model, `Model.generate()` tokens.

    import edgespec
    model = edgespec.load("smollm2-135m")
    for event in model.generate("Hello", max_tokens=32):
        print(event.text, end="")

A known name or a .gguf / HF source is exported to int4 ONNX on first use
(cached under EDGESPEC_CACHE/exports) and runs on onnxruntime; an export
directory runs directly (its manifest and hashes are checked first);
backend="reference" runs the numpy fp32 oracle instead (slow, exact).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Iterator

from . import hub
from .export.cached import cached_export  # noqa: F401  (public: bench and tests use it)
from .errors import ContextOverflowError, EdgespecError
from .sampling import Sampler, SamplingParams
from .speculative.engine import SpecStats, common_prefix, decode
from .tokenizer import chat_ids

log = logging.getLogger(__name__)


@dataclass
class TokenEvent:
    token: int
    text: str  # complete UTF-8 text this token finished (may be "")


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    generated_tokens: int = 0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    stop_reason: str = ""
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


BACKENDS = ("ort", "llamacpp", "reference", "auto", "static")
STATIC_DEVICES = ("qnn", "openvino")  # NPUs run static-shape graphs only (`export --target npu`)


class Model:
    """A loaded model: tokenizer + one Backend (onnxruntime, llama.cpp or the numpy reference) + a drafter."""

    def __init__(self, ref: hub.ModelRef, backend, tokenizer, config, context: int, backend_name: str,
                 source=None, threads: int = 0):
        self.ref, self.backend, self.tokenizer, self.config = ref, backend, tokenizer, config
        self.source, self.threads = source, threads  # the export dir / weights file the backend runs
        self.context, self.backend_name = context, backend_name
        self.drafter, self.spec_name, self.budget, self.exact = None, "off", 0, False
        self.memory_plan = None  # set by apply_memory_budget
        self._cached: list[int] = []  # the tokens the backend's KV cache holds
        self.last_stats = GenerationStats()

    @property
    def context_length(self) -> int:
        return self.context

    def set_spec(self, spec: str = "off", budget: int = 8, exact: bool = False) -> None:
        """Choose the drafter: off | ngram | layerskip | auto | draft:MODEL (see edgespec.speculative.drafters).

        exact: every pass has >= 2 rows, so the output is bit-identical with or without speculation
        (see edgespec.speculative.engine); otherwise the two may differ at numerical near-ties."""
        from .speculative.drafters.select import make_drafter

        self._cached = []  # tuning and calibration run on the backend: forget what it held
        self.drafter, self.spec_name, self.exact = make_drafter(spec, self, budget), spec, exact
        self.budget = budget if self.drafter is not None else 0

    def apply_memory_budget(self, budget: int, want_rows: int = 65) -> "MemoryPlan":
        """Fit the context and the tokens per pass (prefill chunk, draft tree) into `budget` bytes of
        resident memory, from what loading really took (see edgespec.memory)."""
        from .memory import plan_memory, row_bytes
        from .sysinfo import peak_rss

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

    def generate(self, prompt: str | list[int], max_tokens: int = 128, sampling: SamplingParams = SamplingParams(),
                 stop_on_eos: bool = True, stop: tuple[str, ...] = ()) -> Iterator[TokenEvent]:
        """Yield tokens one by one; `self.last_stats` holds the stats when the iterator ends.

        stop: strings that end generation; the text of the token that completes one is cut
        just before it (like llama.cpp / OpenAI `stop`)."""
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        if not ids:
            raise ContextOverflowError("the prompt is empty: nothing to continue from")
        if len(ids) + 1 > self.context_length:
            raise ContextOverflowError(
                f"prompt of {len(ids)} tokens does not fit the context of {self.context_length} tokens")
        max_tokens = min(max_tokens, self.context_length - len(ids))
        stats = self.last_stats = GenerationStats(prompt_tokens=len(ids))
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
        stats.stop_reason = "length"
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
        finally:
            events.close()  # the engine trims the cache to what was taken
            self._cached = (ids + emitted)[:self.backend.cache_len]
            stats.decode_seconds = time.perf_counter() - start
        tail = pending + detok.flush()
        if tail and stats.stop_reason != "stop":
            yield TokenEvent(-1, tail)


def _stop_prefix_length(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest end of `text` that is the start of some stop string."""
    return max((k for s in stops for k in range(min(len(s) - 1, len(text)), 0, -1) if text.endswith(s[:k])),
               default=0)


def load(spec: str = hub.DEFAULT_MODEL, backend: str = "ort", threads: int = 0, device: str = "cpu",
         context: int = 4096, memory_budget: int | str | None = None) -> Model:
    """spec: a known model name, a .gguf file, an HF directory or an export directory.

    backend "ort": sources are exported to int4 ONNX once, cached, and run on onnxruntime.
    backend "llamacpp": a GGUF (a known model's, a file, or an `export --format gguf`) on llama.cpp.
    backend "auto": whichever of the two decodes faster here (measured once, cached).
    backend "reference": the numpy fp32 reference model (exact, slow; exports are refused).
    backend "static": static-shape graphs (`export --target npu`, made once from a source) on `device`
    cpu, qnn (QNN HTP) or openvino; --device qnn/openvino choose it, and refuse a dynamic export.
    """
    from .runtimes import open_backend

    if backend not in BACKENDS:
        raise EdgespecError(f"backend '{backend}' is not available; choose one of {', '.join(BACKENDS)}")
    if device != "cpu":
        if backend not in ("ort", "auto", "static"):
            raise EdgespecError(f"--device {device} needs the onnxruntime backend, not '{backend}'")
        if device in STATIC_DEVICES:
            backend = "static"
        else:
            from .runtimes.ort import providers_for

            providers_for(device)  # fail before any export work
            backend = "ort"
    ref = hub.resolve_model(spec)
    budget = None
    if memory_budget is not None:
        from .memory import check_before_load, parse_size

        budget = parse_size(memory_budget)
        check_before_load(budget, hub.weights_bytes(ref), ref.name)  # before anything is loaded
    opened = open_backend(ref, backend, threads=threads, device=device, context=context, memory_budget=budget)
    model = Model(ref, opened.backend, opened.tokenizer, opened.config, opened.context, opened.description,
                  opened.source, threads)
    if budget is not None:
        model.apply_memory_budget(budget)
    return model
