"""Run the decoder graph in onnxruntime with the KV cache in preallocated buffers.

The K/V buffers [1, n_kv, max_len, head_dim] per layer are bound as both
past_* inputs and present_* outputs (IOBinding), so GroupQueryAttention writes
new rows in place; `cache_len` says how many rows are valid. Rolling back is
only `cache_len -= n`: rows past cache_len are masked out and overwritten by
the next forward.
"""

from __future__ import annotations

import logging

import numpy as np
import onnxruntime as ort

from ..config import ModelConfig
from ..errors import ContextOverflowError

log = logging.getLogger(__name__)


class OrtDecoder:
    def __init__(self, model_path_or_bytes, config: ModelConfig, max_len: int, threads: int = 0,
                 providers: list[str] | None = None):
        self.config, self.max_len = config, max_len
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(model_path_or_bytes, options,
                                            providers=providers or ["CPUExecutionProvider"])
        shape = (1, config.num_kv_heads, max_len, config.head_dim)
        self.kv = [ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, np.float32))
                   for _ in range(2 * config.num_layers)]
        self.cache_len = 0
        self.all_layers = np.ones(config.num_layers, dtype=bool)
        self.binding = self.session.io_binding()
        self.binding.bind_output("logits")  # first, so get_outputs()[0] is the logits; ORT sizes it per run
        for i in range(config.num_layers):
            for j, kind in enumerate(("key", "value")):
                value = self.kv[2 * i + j]
                self.binding.bind_ortvalue_input(f"past_{kind}.{i}", value)
                self.binding.bind_ortvalue_output(f"present_{kind}.{i}", value)

    def forward(self, tokens, positions=None, tree_mask=None, logits_for=None, layer_mask=None) -> np.ndarray:
        """Logits [N, vocab] for the rows `logits_for` (default: all T) of T new tokens.

        tree_mask: [T, T] bool over the new tokens (True = may attend); the past is always visible.
        positions: [T] (default cache_len + arange(T)). layer_mask: [L] bool (default: all layers).
        """
        tokens = np.asarray(tokens, dtype=np.int64).reshape(1, -1)
        T, P = tokens.shape[1], self.cache_len
        if P + T > self.max_len:
            raise ContextOverflowError(f"{P} cached + {T} new tokens exceed the KV buffer of {self.max_len}")
        positions = P + np.arange(T) if positions is None else np.asarray(positions)
        new_mask = np.tri(T, dtype=bool) if tree_mask is None else np.asarray(tree_mask, dtype=bool)
        bias = np.zeros((1, 1, T, P + T), np.float32)
        bias[0, 0, :, P:][~new_mask] = -np.inf
        rows = np.arange(T) if logits_for is None else np.asarray(logits_for)
        feeds = {
            "input_ids": tokens,
            "position_ids": positions.astype(np.int64).reshape(1, -1),
            "attention_bias": bias,
            "seqlens_k": np.array([P + T - 1], np.int32),
            "total_sequence_length": np.array(P + T, np.int32),
            "logits_index": rows.astype(np.int64),
            "layer_mask": self.all_layers if layer_mask is None else np.asarray(layer_mask, dtype=bool),
        }
        for name, value in feeds.items():
            self.binding.bind_cpu_input(name, value)
        self.binding.bind_output("logits")  # re-bound each run: its row count changes
        self.session.run_with_iobinding(self.binding)
        self.cache_len = P + T
        return self.binding.get_outputs()[0].numpy()

    def rollback(self, n: int) -> None:
        """Forget the last n cached tokens (a length change: no copy)."""
        if not 0 <= n <= self.cache_len:
            raise ValueError(f"cannot roll back {n} of {self.cache_len} cached tokens")
        self.cache_len -= n

    def reset(self) -> None:
        self.cache_len = 0
