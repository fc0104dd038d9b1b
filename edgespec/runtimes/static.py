"""The static-shape Backend: an `export --target npu` on onnxruntime's CPU EP, the QNN HTP EP, or OpenVINO.

The export holds one graph per row bucket (models/static_contract.py) over a fixed KV window of W
slots. This backend owns the cache: K/V [L, 2, kv, W, hd] on the host, slot s = position s.
  forward(T rows)  split into passes of at most the largest bucket; each runs the smallest bucket
                   that holds it, padded; the graph places the new rows' K/V into their (zeroed)
                   slots itself (one-hot placement), so every row attends over the same W slots
                   whatever the pass shape: rows are bit-identical across buckets (exact mode);
                   the host then copies the new rows into its window, the padding's dropped
  rollback(n)      cache_len -= n (slots past cache_len are masked, then overwritten)
  keep(idx)        the kept rows of the last forward moved to its first slots, O(kept) copies
Rows of one forward in a later pass see the earlier passes' rows through the tree mask (a tree
wider than the largest bucket is verified in several passes, exactly).
Sessions open lazily, one per bucket actually used (QNN compiles each graph on first use); settle() opens
them all (benchmarks call it before timing).
"""

from __future__ import annotations

import logging
import platform
from pathlib import Path

import numpy as np

from ..config import ModelConfig
from ..errors import ContextOverflowError, EdgespecError
from ..models.static_contract import MASK_VALUE, rope_tables
from .base import BufferCache
from .devices import open_runner

log = logging.getLogger(__name__)


class StaticBackend(BufferCache):
    name = "static"

    def __init__(self, graphs: dict[int, str | Path], config: ModelConfig, window: int, device: str = "cpu",
                 threads: int = 0):
        """graphs: rows -> ONNX file of that bucket; window: the graphs' KV window W (= max_len)."""
        self.config, self.max_len, self.device, self.threads = config, window, device, threads
        self.graphs = {int(rows): Path(path) for rows, path in graphs.items()}
        self.buckets = sorted(self.graphs)
        self.runners: dict[int, object] = {}
        c = config
        self.kv = np.zeros((c.num_layers, 2, 1, c.num_kv_heads, window, c.head_dim), np.float32)
        self.cache_len = 0
        self._last_start = 0
        self.weights_bytes = _files_bytes(self.graphs.values())
        # QNN HTP on a non-ARM host is the simulator: correct (checked against the CPU EP), its times meaningless
        self.simulated = device == "qnn" and platform.machine() in ("x86_64", "AMD64")

    def runner(self, rows: int):
        """The compiled graph of bucket `rows` (opened on first use)."""
        if rows not in self.runners:
            log.info("opening the %d-row graph on %s", rows, self.device)
            self.runners[rows] = open_runner(self.graphs[rows], self.device, self.threads)
        return self.runners[rows]

    def settle(self, timeout: float | None = None) -> None:
        """Open every bucket's graph and wait until each one's weights are in huge pages: a benchmark then
        times the steady state, not sessions opening lazily (QNN compiling a graph) inside its first passes."""
        for rows in self.buckets:
            self.runner(rows).settle(timeout)

    def close(self) -> None:
        """Stop moving pages (the sessions themselves go with this object)."""
        for runner in self.runners.values():
            runner.close()

    def bucket_for(self, n: int) -> int:
        return next(b for b in self.buckets if b >= n)

    def supports_plan(self) -> bool:
        return False  # no If on an NPU: a layer plan would need its own graphs

    def forward(self, tokens, positions=None, tree_mask=None, logits_for=None, plan=None) -> np.ndarray:
        if plan is not None and not np.all(plan):
            raise EdgespecError("a static (NPU) export has no layer plans: layer-skip drafting needs the "
                                "dynamic export (`edgespec export MODEL`)")
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        T, P = len(tokens), self.cache_len
        if P + T > self.max_len:
            raise ContextOverflowError(f"{P} cached + {T} new tokens exceed the static export's window of "
                                       f"{self.max_len} tokens")
        positions = P + np.arange(T) if positions is None else np.asarray(positions).reshape(-1)
        mask = np.tri(T, dtype=bool) if tree_mask is None else np.asarray(tree_mask, dtype=bool)
        logits = []
        for start in range(0, T, self.buckets[-1]):
            n = min(T - start, self.buckets[-1])
            logits.append(self._pass(tokens[start:start + n], positions[start:start + n],
                                     mask[start:start + n, :start + n], P, start))
        self._last_start, self.cache_len = P, P + T
        out = np.concatenate(logits)
        return out if logits_for is None else out[np.asarray(logits_for)]

    def _pass(self, tokens, positions, mask, P: int, start: int) -> np.ndarray:
        """Rows start..start+n of a forward: the window holds the cache [0, P) and this forward's
        earlier rows [P, P+start); mask [n, start+n] says which of this forward's rows each may see."""
        n, W = len(tokens), self.max_len
        b = self.bucket_for(n)
        slots = P + start + np.arange(n)  # where this pass's rows go; zero there, so placement adds exactly
        visible = np.zeros((b, W), dtype=bool)
        visible[:n, :P] = True
        visible[:n, P:P + start + n] = mask
        visible[n:, 0] = True  # padding rows: one finite column; their outputs are dropped
        placement = np.zeros((W, b), np.float32)
        placement[slots, np.arange(n)] = 1.0
        self.kv[..., slots, :] = 0.0
        ids = np.zeros(b, np.int32)
        ids[:n] = tokens
        pos = np.zeros(b, np.int64)
        pos[:n] = positions
        cos, sin = rope_tables(self.config, pos)
        feeds = {"input_ids": ids[None], "rope_cos": cos, "rope_sin": sin, "placement": placement[None, None],
                 "attention_bias": np.where(visible, 0.0, MASK_VALUE).astype(np.float32)[None, None]}
        for i in range(self.config.num_layers):
            feeds[f"past_key.{i}"], feeds[f"past_value.{i}"] = self.kv[i, 0], self.kv[i, 1]
        outputs = self.runner(b)(feeds)
        for i in range(self.config.num_layers):
            self.kv[i, 0, :, :, P + start:P + start + n] = outputs[f"new_key.{i}"][:, :, :n]
            self.kv[i, 1, :, :, P + start:P + start + n] = outputs[f"new_value.{i}"][:, :, :n]
        return outputs["logits"][0, :n]

    def _move_rows(self, start: int, indices: np.ndarray) -> None:
        self.kv[..., start:start + len(indices), :] = self.kv[..., start + indices, :]

    def memory(self) -> dict[str, int]:
        import psutil

        per_token = self.kv.nbytes // self.max_len
        return {"weights": self.weights_bytes, "kv_allocated": self.kv.nbytes, "kv_per_token": per_token,
                "rss": psutil.Process().memory_info().rss}

    def assignment(self, rows: int) -> dict[str, list[str]]:
        """Execution provider -> op types of the nodes it runs, for bucket `rows` (onnxruntime devices)."""
        return self.runner(rows).assignment()


def _files_bytes(paths) -> int:
    """The graphs' bytes and their directories' external data files (shared by the buckets: counted once)."""
    files = {Path(p) for p in paths} | {data for p in paths for data in Path(p).parent.glob("*.data")}
    return sum(f.stat().st_size for f in files)
