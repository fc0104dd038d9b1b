"""Golden traces of an export: what every runtime of it (onnxruntime-Python, the JS engine, the
static NPU graphs) must reproduce. The file format is described in tests/golden/README.md.

`trace(backend, prompt_ids, tokens)` is the reference protocol: the whole prompt in one pass
(logits of its last row), then one token per pass; greedy (argmax, lowest id on an exact tie).
"""

from __future__ import annotations

import numpy as np

FORMAT = "edgespec-golden-trace"
FORMAT_VERSION = 1
TOP = 5
REGENERATE = "EDGESPEC_CACHE=... python -m tests.golden.make"


def digest(row: np.ndarray) -> dict:
    """Top-5 ids by logit (descending; ties: lower id first) and their logits."""
    order = np.lexsort((np.arange(len(row)), -row))[:TOP]
    return {"top_ids": [int(i) for i in order], "top_logits": [round(float(row[i]), 4) for i in order]}


def trace(backend, prompt_ids: list[int], tokens: int) -> tuple[list[int], list[np.ndarray]]:
    """Greedy tokens and the full logits row that chose each one."""
    backend.reset()
    row = backend.forward(prompt_ids, logits_for=[len(prompt_ids) - 1])[-1]
    out, rows = [], []
    for _ in range(tokens):
        token = int(np.argmax(row))
        out.append(token)
        rows.append(np.array(row))
        if len(out) == tokens:
            break
        row = backend.forward([token])[-1]
    backend.reset()
    return out, rows
