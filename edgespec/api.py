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

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from . import hub
from .errors import ContextOverflowError, EdgespecError
from .formats import open_weights
from .models import reference_model_class
from .sampling import Sampler, SamplingParams
from .tokenizer import chat_ids, tokenizer_for

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
    token_ids: list[int] = field(default_factory=list)

    @property
    def prefill_tok_s(self) -> float:
        return self.prompt_tokens / self.prefill_seconds if self.prefill_seconds else 0.0

    @property
    def decode_tok_s(self) -> float:
        return self.generated_tokens / self.decode_seconds if self.decode_seconds else 0.0


class ReferenceSession:
    """The numpy reference behind the same forward/rollback/reset calls as the ORT decoder."""

    def __init__(self, model):
        self.model, self.cache = model, model.new_cache()

    @property
    def cache_len(self) -> int:
        return self.cache.length

    def forward(self, tokens, positions=None, tree_mask=None, logits_for=None):
        mask = None
        if tree_mask is not None:
            mask = np.concatenate([np.ones((len(tokens), self.cache.length), bool), tree_mask], axis=1)
        logits = self.model.forward(np.asarray(tokens), self.cache, positions, mask)
        return logits if logits_for is None else logits[np.asarray(logits_for)]

    def rollback(self, n: int) -> None:
        self.cache.rollback(n)

    def reset(self) -> None:
        self.cache = self.model.new_cache()


class Model:
    """A loaded model: tokenizer + a forward backend (onnxruntime export, or the numpy reference)."""

    def __init__(self, ref: hub.ModelRef, backend: str = "ort", threads: int = 0, device: str = "cpu"):
        self.ref = ref
        if ref.kind == "export":
            from .export.manifest import manifest_config, read_manifest
            from .runtimes.ort import OrtBackend

            manifest = read_manifest(ref.path)  # checks every file's sha256 first
            if manifest.get("format") == "gguf":
                raise EdgespecError(f"'{ref.path}' holds a GGUF for llama.cpp; the llama.cpp backend is not "
                                    "implemented yet (issue 6) — run its model.gguf with llama.cpp")
            self.config = manifest_config(manifest)
            self.tokenizer = tokenizer_for("export", ref.path, {}, self.config.vocab_size)
            self.context = manifest["max_len"]
            self.backend = OrtBackend(str(ref.path / manifest["graph"]["file"]), self.config, self.context, threads,
                                      device)
            self.backend_name = f"onnxruntime {manifest['quantization']['precision']}"
        else:
            source = open_weights(ref.path)
            self.config = source.config
            self.tokenizer = tokenizer_for(ref.kind, ref.path, source.metadata, self.config.vocab_size)
            self.context = self.config.max_position_embeddings
            log.info("loading %s (%s, %d layers) on the numpy reference backend", ref.name,
                     self.config.architecture, self.config.num_layers)
            self.backend = ReferenceSession(reference_model_class(self.config.architecture).from_source(source))
            self.backend_name = "numpy reference"
        self.last_stats = GenerationStats()

    @property
    def context_length(self) -> int:
        return self.context

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
        sampler, detok = Sampler(sampling), self.tokenizer.stream_decoder()
        self.backend.reset()

        start = time.perf_counter()
        logits = self.backend.forward(ids, logits_for=[len(ids) - 1])[-1]
        stats.prefill_seconds = time.perf_counter() - start
        start = time.perf_counter()
        stats.stop_reason = "length"
        pending, history = "", list(ids)  # pending: text held back while it could begin a stop string
        for _ in range(max_tokens):
            token = sampler(logits, history)
            if stop_on_eos and token in self.tokenizer.stop_ids:
                stats.stop_reason = "eos"
                break
            history.append(token)
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
            if stats.generated_tokens == max_tokens:
                break
            logits = self.backend.forward([token])[-1]
        stats.decode_seconds = time.perf_counter() - start
        tail = pending + detok.flush()
        if tail and stats.stop_reason != "stop":
            yield TokenEvent(-1, tail)


def _stop_prefix_length(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest end of `text` that is the start of some stop string."""
    return max((k for s in stops for k in range(min(len(s) - 1, len(text)), 0, -1) if text.endswith(s[:k])),
               default=0)


def load(spec: str = hub.DEFAULT_MODEL, backend: str = "ort", threads: int = 0, device: str = "cpu") -> Model:
    """spec: a known model name, a .gguf file, an HF directory or an export directory.

    backend "ort": sources are exported to int4 ONNX once, cached, and run on onnxruntime.
    backend "reference": the numpy fp32 reference model (exact, slow; exports are refused).
    """
    if backend == "llamacpp":
        raise EdgespecError("the llama.cpp backend is not implemented yet (issue 6); use --backend ort or reference")
    if backend not in ("ort", "reference"):
        raise EdgespecError(f"backend '{backend}' is not available; choose ort or reference")
    if device != "cpu":
        from .runtimes.ort import providers_for

        providers_for(device)  # fail before any export work
    ref = hub.resolve_model(spec)
    if backend == "reference":
        if ref.kind == "export":
            raise EdgespecError("the reference backend needs the source weights, not an export directory")
        return Model(ref, "reference")
    if ref.kind != "export":
        ref = hub.ModelRef("export", cached_export(ref), ref.name)
    return Model(ref, "ort", threads, device)


def cached_export(ref: hub.ModelRef) -> Path:
    """The default int4 export of a source, made on first use under EDGESPEC_CACHE/exports."""
    from .export.pipeline import export

    stat = Path(ref.path).stat()
    key = hashlib.sha256(f"{Path(ref.path).resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    out = hub.cache_dir() / "exports" / f"{ref.name}-int4-{key}"
    if not (out / "edgespec.json").is_file():
        log.info("first use of %s: exporting it to int4 ONNX in %s", ref.name, out)
        export(ref.name if ref.name in hub.KNOWN_MODELS else str(ref.path), out, force=True)
    return out
