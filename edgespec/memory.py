"""`--memory-budget`: weights, KV cache, pass activations and logits, drafter state — inside one number.

Checked twice. Before loading: the weights file plus this process must fit, or a clear error
(nothing is loaded). After loading, with the real resident size known, the rest of the budget
is split: first the KV cache for the context (plain decoding needs it), then the rows a pass
may have (prefill chunk and draft tree size: speculation is optional and shrinks first):

    free          = budget - rss_after_load - margin
    context       = min(asked, (free - 2 rows) / kv_bytes_per_token)      refuse if < MIN_CONTEXT
    rows per pass = min(asked, (free - context x kv_bytes_per_token) / row_bytes)  at least 2

KV buffers are allocated zeroed and untouched pages take no memory, so the KV part of the
resident size grows with the tokens actually cached, which the context bound caps.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import psutil

from .errors import EdgespecError

log = logging.getLogger(__name__)
MIN_CONTEXT = 256
# Allocator slack, Python objects and onnxruntime's intermediates of a pass, over the RSS after loading.
# Measured (smollm2-135m default export, `generate --spec ngram`, 2-row passes under a budget): 17 MiB with an
# If on every layer, 29-35 MiB since the outer layers are inlined (06dcce4: their intermediates live in the
# main graph's frame for the whole pass, not in one If's frame at a time). 24 MiB let CI's peak exceed a budget.
MARGIN = 48 << 20
# Peak RSS while onnxruntime creates a session and runs a first pass, over the export's data size
# (prepacked MatMulNBits weights replace the mapped file pages; the embedding table is mapped, only the rows read
# become resident). Measured with benchmarks/scripts/load_rss.py (recipes.md, stop 37), the embedding as int8
# levels (the default since stop 37): qwen2.5-coder-0.5b 1.12, 1.5b 1.19, smollm2-135m 1.35 (its ~20 MB of session
# state on a 125 MB file; MARGIN, added to every check, covers it). With the fp16 table (stop 36) 1.13 / 0.91 /
# 1.05 at the same peaks: the table's bytes were mostly never resident.
ORT_LOAD_FACTOR = 1.2


class MemoryBudgetError(EdgespecError):
    pass


def parse_size(text: str | int, base: int = 1024) -> int:
    """'1.5G', '800M', '2GiB', '512k' or a number of bytes. base 1000: M means 10^6 (but MiB 2^20)."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", str(text), re.IGNORECASE)
    if not match:
        raise EdgespecError(f"memory size '{text}' is not understood; expected e.g. 1.5G, 800M or a byte count")
    unit = 1024 if (match.group(3) or "").lower() == "ib" else base
    scale = unit ** "kmgt".find(match.group(2).lower()) * unit if match.group(2) else 1
    return int(float(match.group(1)) * scale)


def human(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.0f} MiB"


def rss() -> int:
    return psutil.Process().memory_info().rss


def default_budget() -> int:
    """This process plus 90% of the memory the system has available now."""
    return rss() + int(0.9 * psutil.virtual_memory().available)


def check_before_load(budget: int, weights_bytes: int, what: str) -> None:
    now = rss()
    if now + weights_bytes + MARGIN > budget:
        raise MemoryBudgetError(
            f"memory budget {human(budget)} cannot hold {what}: its weights take {human(weights_bytes)} and this "
            f"process already uses {human(now)}; even plain decoding needs more than "
            f"{human(now + weights_bytes + MARGIN)}")


def row_bytes(config) -> int:
    """Memory one token row of a pass costs: logits (output, copy, sampling temporaries) + activations."""
    return config.vocab_size * 4 * 3 + (16 * config.hidden_size + 4 * config.intermediate_size) * 4


@dataclass(frozen=True)
class MemoryPlan:
    budget: int
    loaded: int  # resident bytes after loading
    kv_per_token: int
    row_bytes: int
    context: int
    max_rows: int  # tokens per forward pass: prefill chunk and 1 + draft tree

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("budget", "loaded", "kv_per_token", "row_bytes", "context", "max_rows")}


def plan_memory(budget: int, loaded: int, kv_per_token: int, per_row: int, want_context: int,
                want_rows: int) -> MemoryPlan:
    free = budget - loaded - MARGIN
    context = min(want_context, (free - 2 * per_row) // kv_per_token)
    floor = min(want_context, MIN_CONTEXT)  # a --context below MIN_CONTEXT is the user's choice, not a squeeze
    if context < floor:
        need = loaded + MARGIN + floor * kv_per_token + 2 * per_row
        raise MemoryBudgetError(
            f"memory budget {human(budget)} is too small: the loaded model takes {human(loaded)}, a context of "
            f"{floor} tokens {human(floor * kv_per_token)} and a 2-token pass {human(2 * per_row)}; "
            f"plain decoding needs at least {human(need)}")
    rows = int(max(2, min(want_rows, (free - context * kv_per_token) // per_row)))
    plan = MemoryPlan(budget, loaded, kv_per_token, per_row, int(context), rows)
    if context < want_context or rows < want_rows:
        log.info("memory budget %s: context %d tokens (asked %d), at most %d tokens per pass (asked %d)",
                 human(budget), context, want_context, rows, want_rows)
    return plan
