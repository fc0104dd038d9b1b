"""Validation of every export (optimum-style), saved in the manifest and printed.

fp32 exports: max |logit difference| against the numpy reference.
int4 exports: teacher-forced top-1 agreement with the fp32 reference and
perplexity on Python stdlib source and on pydoc's English prose, beside the
reference's perplexity and llama.cpp's on the source GGUF (when
llama-cpp-python is installed).
"""

from __future__ import annotations

import ctypes
import inspect
import json.decoder
import logging
import textwrap

import numpy as np
from pydoc_data import topics

from ..errors import EdgespecError
from ..runtimes.llamacpp import llama_cpp_module

log = logging.getLogger(__name__)


def stdlib_text(chars: int = 8000) -> str:
    return (inspect.getsource(textwrap) + inspect.getsource(json.decoder))[:chars]


def prose_text(chars: int = 8000) -> str:
    return "\n\n".join(topics.topics[k] for k in sorted(topics.topics))[:chars]


TEXT_SETS = {"stdlib": stdlib_text, "prose": prose_text}
# An export whose perplexity is this many times its source's is broken, not lossy: the lossiest recipe
# measured (all-int4 round-to-nearest on smollm2-135m) is 1.32x, a graph that drops a term is 10^6x.
MAX_PERPLEXITY_RATIO = 2.0


def perplexity(logits: np.ndarray, tokens: list[int]) -> float:
    """exp(mean negative log-likelihood of token t+1 given the logits at t), row by row in float32."""
    nll = 0.0
    for row, target in zip(logits[:-1], tokens[1:]):
        z = row - row.max()
        nll += float(np.log(np.exp(z).sum()) - z[target])
    return float(np.exp(nll / (len(tokens) - 1)))


def _release_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them otherwise), so one engine's
    memory does not add to the next one's peak."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


class LlamaCppLogits:
    """llama.cpp as a teacher-forcing engine: forward(tokens) -> logits of every position."""

    def __init__(self, gguf_path, n_ctx: int, threads: int = 2):
        self.llm = llama_cpp_module().Llama(model_path=str(gguf_path), n_ctx=n_ctx, n_threads=threads,
                                            logits_all=True, verbose=False)

    def reset(self) -> None:
        self.llm.reset()

    def forward(self, tokens: list[int]) -> np.ndarray:
        self.llm.reset()
        self.llm.eval(tokens)
        return np.array(self.llm.scores[: len(tokens)], dtype=np.float32)


def llamacpp_logits(gguf_path, tokens: list[int], threads: int = 2) -> np.ndarray:
    """Teacher-forced logits of llama.cpp on `gguf_path`."""
    return LlamaCppLogits(gguf_path, len(tokens) + 8, threads).forward(tokens)


def _llamacpp_unusable() -> str | None:
    """Why llama.cpp cannot run here (not installed, or a build that would crash), or None."""
    try:
        llama_cpp_module()
    except EdgespecError as exc:
        return str(exc)
    return None


def validate(make_decoder, make_reference, tokenizer, precision: str, n_tokens: int, gguf_source=None) -> dict:
    """make_decoder() -> an OrtBackend of the export; make_reference() -> the numpy model of the source.

    One engine at a time is alive (export, then reference, then llama.cpp) to keep peak memory
    near the largest of them rather than their sum.
    """
    texts = {name: tokenizer.encode(make_text(), add_bos=False)[:n_tokens] for name, make_text in TEXT_SETS.items()}
    log.info("validation: running the export on %d tokens per text", n_tokens)
    decoder = make_decoder()
    ours = {}
    for name, tokens in texts.items():
        decoder.reset()
        ours[name] = decoder.forward(tokens)
    del decoder
    _release_freed_memory()
    report: dict = {"tokens_per_text": n_tokens}
    log.info("validation: running the fp32 reference")
    reference = make_reference()
    reference_top1 = {}
    for name, tokens in texts.items():
        ref = reference.forward(np.asarray(tokens))
        reference_top1[name] = ref.argmax(-1)
        report[name] = {"max_abs_logit_diff": float(np.abs(ours[name] - ref).max()),
                        "top1_agreement": float(np.mean(ours[name].argmax(-1) == ref.argmax(-1))),
                        "perplexity": perplexity(ours[name], tokens), "reference_perplexity": perplexity(ref, tokens)}
        del ref
    del reference, ours
    _refuse_broken(report, texts)
    _release_freed_memory()
    compare = precision != "fp32" and gguf_source is not None
    if compare:
        skipped = _llamacpp_unusable()
        if skipped:
            report["llamacpp_skipped"] = skipped
            log.info("validation: the llama.cpp comparison was skipped: %s", skipped)
            compare = False
        else:
            log.info("validation: running llama.cpp on the source GGUF")
    for name, tokens in texts.items():
        if compare:
            theirs = llamacpp_logits(gguf_source, tokens)
            report[name]["llamacpp_perplexity"] = perplexity(theirs, tokens)
            # The same yardstick for llama.cpp: how often its own kernels pick the reference's top token.
            report[name]["llamacpp_top1_agreement"] = float(np.mean(theirs.argmax(-1) == reference_top1[name]))
        log.info("validation on %s (%d tokens): %s", name, len(tokens),
                 ", ".join(f"{k} {v:.4g}" for k, v in report[name].items() if isinstance(v, float)))
    return report


def _refuse_broken(report: dict, texts: dict) -> None:
    for name in texts:
        ours, ref = report[name]["perplexity"], report[name]["reference_perplexity"]
        if not ours <= MAX_PERPLEXITY_RATIO * ref:  # also catches NaN
            raise EdgespecError(
                f"the export failed validation: its perplexity on the {name} text is {ours:.4g} where its source's "
                f"is {ref:.4g} ({ours / ref:.3g}x; at most {MAX_PERPLEXITY_RATIO}x is accepted); nothing was written")
