"""The onnxruntime Backend: the exported graph with the KV cache in preallocated buffers.

The K/V buffers [1, n_kv, kv_len, head_dim] per layer are numpy arrays whose
memory the OrtValues share; each is bound as both the past_* input and the
present_* output (IOBinding), so GroupQueryAttention writes new rows in place.
`cache_len` says how many rows are valid:
  rollback(n)   cache_len -= n                       (no copy: stale rows are masked, then overwritten)
  keep(idx)     rows start+idx -> start..start+len(idx) of the last forward, O(kept) copies
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import psutil

from ..config import ModelConfig
from ..errors import ContextOverflowError, EdgespecError
from ..models.contract import check_skip, skippable_layers
from .base import BufferCache
from .huge_pages import SettlesPages, create_session

log = logging.getLogger(__name__)

LOGITS_BUFFER_ROWS = 64  # rows of logits a pass may write into the backend's own buffer (a draft tree's verify fits)

# --device name -> onnxruntime execution provider
DEVICES = {
    "cpu": "CPUExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "nnapi": "NnapiExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "webgpu": "WebGpuExecutionProvider",
    "dml": "DmlExecutionProvider",
    "cuda": "CUDAExecutionProvider",
}


def providers_for(device: str) -> list[str]:
    """The provider list for --device, or a clear error naming what this onnxruntime build has."""
    available = ort.get_available_providers()
    provider = DEVICES.get(device)
    if provider is None:
        raise EdgespecError(f"unknown device '{device}'; known devices: {', '.join(DEVICES)}")
    if provider not in available:
        have = [d for d, p in DEVICES.items() if p in available]
        raise EdgespecError(f"device '{device}' needs {provider}, which this onnxruntime {ort.__version__} build "
                            f"does not have; it has: {', '.join(available)} (devices: {', '.join(have)})")
    return [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]


class OrtBackend(SettlesPages, BufferCache):
    name = "ort"

    def __init__(self, model_path_or_bytes, config: ModelConfig, max_len: int, threads: int = 0,
                 device: str = "cpu"):
        self.config, self.max_len = config, max_len
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # the weights file's pages leave the resident set as onnxruntime reads them; what it prepacked moves
        # to huge pages in the background (before the KV buffers below exist: they are not the session's)
        export_dir = Path(model_path_or_bytes).parent if isinstance(model_path_or_bytes, (str, Path)) else None
        self.session, self.huge_pages = create_session(
            lambda: ort.InferenceSession(model_path_or_bytes, options, providers=providers_for(device)), export_dir)
        self.weights_bytes = _weights_bytes(model_path_or_bytes)
        shape = (1, config.num_kv_heads, max_len, config.head_dim)
        # The numpy arrays own the memory; the OrtValues view it (and do not keep it alive).
        self.kv = [np.zeros(shape, np.float32) for _ in range(2 * config.num_layers)]
        self.cache_len = 0
        self._last_start = 0
        self.all_layers = np.ones(config.num_layers, dtype=bool)
        self._always_run = np.ones(config.num_layers, dtype=bool)  # layers no plan may skip (no If in the graph)
        self._always_run[skippable_layers(config.num_layers)] = False
        names = {i.name for i in self.session.get_inputs()}
        self.has_layer_mask = "layer_mask" in names
        # Exports with extra input rows (PPD prompt tokens) take [1, 0, d] when there are none.
        self.has_extra_embeds = "extra_embeds" in names
        self._no_extra = np.zeros((1, 0, config.hidden_size), np.float32)
        self.binding = self.session.io_binding()
        # decode and verify passes write their logits into this buffer: reading them through get_outputs() wraps
        # every bound output (the KV buffers too) in an OrtValue, ~0.2 ms per step on smollm2 (2.5% of a step)
        self._logits = np.empty((LOGITS_BUFFER_ROWS, config.vocab_size), np.float32)
        self.binding.bind_output("logits")  # bound first: get_outputs()[0] is the logits when onnxruntime allocates
        for i in range(config.num_layers):
            for j, kind in enumerate(("key", "value")):
                value = ort.OrtValue.ortvalue_from_numpy(self.kv[2 * i + j])
                self.binding.bind_ortvalue_input(f"past_{kind}.{i}", value)
                self.binding.bind_ortvalue_output(f"present_{kind}.{i}", value)
        # A one-token pass (every plain decoding step) keeps its inputs bound and writes only their values:
        # building and binding six feeds took ~0.1 ms of a 6.5 ms step on smollm2. Its attention bias is a
        # prefix of a zero row (nothing is masked), bound by address.
        self._one = {"input_ids": np.zeros((1, 1), np.int64), "position_ids": np.zeros((1, 1), np.int64),
                     "seqlens_k": np.zeros(1, np.int32), "total_sequence_length": np.zeros((), np.int32),
                     "logits_index": np.zeros(1, np.int64)}
        if self.has_layer_mask:
            self._one["layer_mask"] = self.all_layers
        if self.has_extra_embeds:
            self._one["extra_embeds"] = self._no_extra
        self._one_values = {name: ort.OrtValue.ortvalue_from_numpy(a) for name, a in self._one.items()}
        self._one_logits = ort.OrtValue.ortvalue_from_numpy(self._logits[:1])
        self._zero_bias = np.zeros(max_len, np.float32)
        self._one_bound = False  # whether the binding holds the values above (a wider pass rebinds them)

    def supports_plan(self) -> bool:
        """Exports built with layer plans (an If per skippable layer) take a layer mask; inlined ones do not."""
        return self.has_layer_mask

    def supports_extra_rows(self) -> bool:
        return self.has_extra_embeds

    def forward(self, tokens, positions=None, tree_mask=None, logits_for=None, plan=None,
                extra_embeds=None) -> np.ndarray:
        """Logits [N, vocab] for the rows `logits_for` (default: all T) of T new tokens.

        tree_mask: [T, T] bool over the new tokens (True = may attend); the past is always visible.
        positions: [T] (default cache_len + arange(T)). plan: a layer mask [L] bool (default all layers).
        extra_embeds: [E, d] rows after the tokens (T counts them); needs an export with that input.
        """
        tokens = np.asarray(tokens, dtype=np.int64).reshape(1, -1)
        E = 0 if extra_embeds is None else len(extra_embeds)
        T, P = tokens.shape[1] + E, self.cache_len
        if P + T > self.max_len:
            raise ContextOverflowError(f"{P} cached + {T} new tokens exceed the context of {self.max_len} tokens")
        if (T == 1 and not E and plan is None and tree_mask is None
                and (logits_for is None or list(logits_for) == [0])):
            return self._forward_one(int(tokens[0, 0]), P if positions is None else int(positions[0]))
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
        }
        if self.has_layer_mask:
            feeds["layer_mask"] = self.all_layers if plan is None else np.asarray(plan, dtype=bool)
            if plan is not None and not np.all(feeds["layer_mask"] | self._always_run):
                check_skip(len(self.all_layers), np.flatnonzero(~feeds["layer_mask"]).tolist(), "this layer plan")
        elif plan is not None and not np.all(plan):
            raise EdgespecError("this export has no layer plans (made without --layer-plans): "
                                "layer-skip drafting needs an export with them")
        if self.has_extra_embeds:
            feeds["extra_embeds"] = self._no_extra if not E else \
                np.ascontiguousarray(extra_embeds, np.float32).reshape(1, E, -1)
        elif E:
            raise EdgespecError("this export has no extra_embeds input (exported before PPD drafters existed): "
                                "export it again")
        for name, value in feeds.items():
            self.binding.bind_cpu_input(name, value)
        self._one_bound = False
        out = self._logits[:len(rows)] if len(rows) <= LOGITS_BUFFER_ROWS else None  # else onnxruntime allocates
        if out is None:
            self.binding.bind_output("logits")
        else:  # re-bound each run: its row count changes
            self.binding.bind_ortvalue_output("logits", ort.OrtValue.ortvalue_from_numpy(out))
        self.session.run_with_iobinding(self.binding)
        self._last_start, self.cache_len = P, P + T
        return self.binding.get_outputs()[0].numpy() if out is None else out.copy()  # the buffer is reused

    def _forward_one(self, token: int, position: int) -> np.ndarray:
        """forward([token]) with the bound one-token inputs (forward has checked the context): logits [1, vocab]."""
        P = self.cache_len
        one = self._one
        one["input_ids"][0, 0], one["position_ids"][0, 0] = token, position
        one["seqlens_k"][0], one["total_sequence_length"][()] = P, P + 1
        if not self._one_bound:
            for name, value in self._one_values.items():
                self.binding.bind_ortvalue_input(name, value)
            self.binding.bind_ortvalue_output("logits", self._one_logits)
            self._one_bound = True
        self.binding.bind_input("attention_bias", "cpu", 0, np.float32, [1, 1, 1, P + 1], self._zero_bias.ctypes.data)
        self.session.run_with_iobinding(self.binding)
        self._last_start, self.cache_len = P, P + 1
        return self._logits[:1].copy()  # the buffer is reused

    def _move_rows(self, start: int, indices: np.ndarray) -> None:
        for buffer in self.kv:  # fancy indexing copies first, so overlapping moves are safe
            buffer[:, :, start:start + len(indices)] = buffer[:, :, start + indices]

    def memory(self) -> dict[str, int]:
        """Bytes: weights on disk/mapped, KV buffers allocated, KV per token, this process's RSS."""
        kv_per_token = 2 * self.config.num_layers * self.config.num_kv_heads * self.config.head_dim * 4
        return {"weights": self.weights_bytes, "kv_allocated": kv_per_token * self.max_len,
                "kv_per_token": kv_per_token, "rss": psutil.Process().memory_info().rss}


def _weights_bytes(model) -> int:
    if isinstance(model, (str, Path)):
        path = Path(model)
        data = path.with_name(path.name + ".data")
        return path.stat().st_size + (data.stat().st_size if data.exists() else 0)
    return len(model)
