"""The public Python API: `load()` a model, `Model.generate()` tokens.

    import edgespec
    model = edgespec.load("smollm2-135m")
    for event in model.generate("Hello", max_tokens=32):
        print(event.text, end="")

Until the ONNX runtime lands, generation runs on the numpy fp32 reference
model: correct and fine for the 135M default, but not fast.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from . import hub
from .errors import ContextOverflowError
from .formats import open_weights
from .models import reference_model_class
from .sampling import Sampler, SamplingParams
from .tokenizer import Tokenizer

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


class Model:
    """A loaded model: tokenizer + a forward backend (today: the numpy reference)."""

    def __init__(self, ref: hub.ModelRef):
        self.ref = ref
        source = open_weights(ref.path)
        self.config = source.config
        self.tokenizer = (Tokenizer.from_gguf(source.metadata) if ref.kind == "gguf"
                          else Tokenizer.from_hf_dir(ref.path))
        log.info("loading %s (%s, %d layers) on the numpy reference backend", ref.name, self.config.architecture,
                 self.config.num_layers)
        self.backend = reference_model_class(self.config.architecture).from_source(source)
        self.backend_name = "reference"
        self.last_stats = GenerationStats()

    @property
    def context_length(self) -> int:
        return self.config.max_position_embeddings

    def chat_prompt(self, messages: list[dict]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        return self.tokenizer.encode(text, add_bos=False)

    def generate(self, prompt: str | list[int], max_tokens: int = 128, sampling: SamplingParams = SamplingParams(),
                 stop_on_eos: bool = True) -> Iterator[TokenEvent]:
        """Yield tokens one by one; `self.last_stats` holds the stats when the iterator ends."""
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        if not ids:
            raise ContextOverflowError("the prompt is empty: nothing to continue from")
        if len(ids) + 1 > self.context_length:
            raise ContextOverflowError(
                f"prompt of {len(ids)} tokens does not fit the context of {self.context_length} tokens")
        max_tokens = min(max_tokens, self.context_length - len(ids))
        stats = self.last_stats = GenerationStats(prompt_tokens=len(ids))
        sampler, detok = Sampler(sampling), self.tokenizer.stream_decoder()
        cache = self.backend.new_cache()

        start = time.perf_counter()
        logits = self.backend.forward(np.asarray(ids), cache)[-1]
        stats.prefill_seconds = time.perf_counter() - start
        start = time.perf_counter()
        stats.stop_reason = "length"
        for _ in range(max_tokens):
            token = sampler(logits)
            if stop_on_eos and token in self.tokenizer.stop_ids:
                stats.stop_reason = "eos"
                break
            stats.token_ids.append(token)
            stats.generated_tokens += 1
            yield TokenEvent(token, detok.push(token))
            if stats.generated_tokens == max_tokens:
                break
            logits = self.backend.forward(np.asarray([token]), cache)[-1]
            stats.decode_seconds = time.perf_counter() - start
        stats.decode_seconds = time.perf_counter() - start
        tail = detok.flush()
        if tail:
            yield TokenEvent(-1, tail)


def load(spec: str = hub.DEFAULT_MODEL) -> Model:
    """spec: a known model name (pulled on first use), a .gguf file or an HF directory."""
    return Model(hub.resolve_model(spec))
