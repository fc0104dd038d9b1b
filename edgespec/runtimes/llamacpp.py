"""The llama.cpp Backend: a GGUF on llama-cpp-python's low-level API (the `[llamacpp]` extra).

Token trees without an attention-mask input: llama.cpp masks by sequence id and
position. Every leaf of a tree gets its own sequence id, every node belongs to the
sequences of the leaves below it, and its position is its depth; a node's query
attends to cells that share its (first) sequence and have a position <= its own,
which are exactly its ancestors and itself. Committed tokens belong to all
`max_branches` sequences (the unified KV cache stores one cell with a set of seq
ids, so this costs no memory), so every branch sees the whole prefix.

Compaction after verification (a root-to-node path of k tokens stays, L = the
sequences of the deepest kept node):
    seq_rm(s, P, end)      for s not in L   frees the rejected branches
    seq_rm(s, P + k, end)  for s in L       frees the kept node's descendants
    seq_cp(L[0], s, P, P + k)  for s not in L   the kept path joins every sequence again
Each call is O(cells) in C; no KV data moves.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from pathlib import Path

import numpy as np
import psutil

from ..errors import ContextOverflowError, EdgespecError, MissingDependencyError

log = logging.getLogger(__name__)
_initialised = False


AMX_OVERRIDE = "EDGESPEC_LLAMACPP_AMX"  # set to 1 to use an AMX build anyway (a fixed ggml, say)
NO_AMX_FLAGS = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"


def llama_cpp_module():
    """llama_cpp, initialised once, after checking that this build can run here."""
    global _initialised
    try:
        import llama_cpp
    except ImportError:
        raise MissingDependencyError("the llama.cpp backend needs llama-cpp-python: "
                                     "pip install 'edgespec[llamacpp]'") from None
    if not _initialised:
        check_build(llama_cpp.llama_print_system_info().decode(errors="replace"), os.environ.get(AMX_OVERRIDE))
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # its stderr chatter
        llama_cpp.llama_backend_init()
        _initialised = True
    return llama_cpp


def check_build(system_info: str, override: str | None = None) -> None:
    """Refuse a build whose ggml uses AMX: in llama-cpp-python 0.3.36 its AMX matmul loads a tile
    config the compiler has dropped and the process dies with SIGSEGV on the first pass (llama.cpp
    issues #20824, PR #26954; seen on a 2-core Xeon VM with AMX-INT8). A source build with
    -march=native turns AMX on wherever the CPU has it, so refuse with the fix rather than crash."""
    if "AMX_INT8 = 1" in system_info and override != "1":
        raise EdgespecError(
            "this llama-cpp-python build uses ggml's AMX kernels (system info: AMX_INT8 = 1), which crash with "
            "a segmentation fault in ggml_backend_amx_mul_mat (llama.cpp issue #20824); expected a build "
            f"without AMX: CFLAGS='{NO_AMX_FLAGS}' CXXFLAGS='{NO_AMX_FLAGS}' pip install --force-reinstall "
            f"--no-cache-dir --no-deps llama-cpp-python==0.3.36 (or set {AMX_OVERRIDE}=1 to try it anyway)")


def kv_bytes_per_token(config) -> int:
    """llama.cpp's KV cache per token: f16 K and V in every layer."""
    return 2 * config.num_layers * config.num_kv_heads * config.head_dim * 2


def tree_structure(tree_mask: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """(depth of each node, leaves) of a tree given as an ancestor mask; refuses non-trees."""
    mask = np.asarray(tree_mask, dtype=bool)
    T = len(mask)
    if mask.shape != (T, T) or not mask.diagonal().all() or np.triu(mask, 1).any():
        raise EdgespecError("tree_mask must be [T, T], lower-triangular with a true diagonal (parents first)")
    depth = mask.sum(axis=1) - 1
    for i in range(T):  # a node's ancestors are its parent (the nearest one) and the parent's ancestors
        ancestors = np.flatnonzero(mask[i, :i])
        if len(ancestors) and not np.array_equal(mask[i, :i], mask[ancestors[-1], :i]):
            raise EdgespecError(f"tree_mask row {i} is not a tree path (its ancestors are not a chain)")
    leaves = [j for j in range(T) if mask[:, j].sum() == 1]
    return depth, leaves


class LlamaCppBackend:
    name = "llamacpp"

    MIN_BATCH = 16  # llama.cpp reserves outputs for n_seq_max (max_branches) rows: a smaller batch asserts

    def __init__(self, gguf_path, config, max_len: int, threads: int = 0, max_branches: int = 16,
                 n_batch: int = 512, flash_attn: bool = False):
        lc = self.lc = llama_cpp_module()
        self.config, self.max_len, self.branches, self.n_batch = config, max_len, max_branches, n_batch
        self.path = Path(gguf_path)
        params = lc.llama_model_default_params()
        self.model = lc.llama_model_load_from_file(str(self.path).encode(), params)
        if not self.model:
            raise EdgespecError(f"llama.cpp could not load '{self.path}'")
        self.recurrent = bool(lc.llama_model_is_recurrent(self.model) or lc.llama_model_is_hybrid(self.model))
        threads = threads or _physical_cores()
        cparams = lc.llama_context_default_params()
        cparams.n_ctx, cparams.n_batch, cparams.n_ubatch = max_len, n_batch, n_batch
        cparams.n_seq_max, cparams.kv_unified = max_branches, True
        cparams.n_threads = cparams.n_threads_batch = threads
        cparams.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else lc.LLAMA_FLASH_ATTN_TYPE_DISABLED
        cparams.no_perf = True
        self.ctx = lc.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            lc.llama_model_free(self.model)
            raise EdgespecError(f"llama.cpp could not create a context of {max_len} tokens for '{self.path}'")
        self.memory_handle = lc.llama_get_memory(self.ctx)
        self.n_vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(self.model))
        self.threads = threads
        self.batch = lc.llama_batch_init(n_batch, 0, max_branches)
        self._token = np.ctypeslib.as_array(self.batch.token, shape=(n_batch,))
        self._pos = np.ctypeslib.as_array(self.batch.pos, shape=(n_batch,))
        self._n_seq = np.ctypeslib.as_array(self.batch.n_seq_id, shape=(n_batch,))
        self._want = np.ctypeslib.as_array(self.batch.logits, shape=(n_batch,))
        self._seq = [np.ctypeslib.as_array(self.batch.seq_id[i], shape=(max_branches,)) for i in range(n_batch)]
        self._all_seqs = np.arange(max_branches, dtype=np.int32)
        for row in self._seq:
            row[:] = self._all_seqs
        self.cache_len = 0
        self.decode_seconds = 0.0  # time inside llama_decode: the rest of a step is our Python overhead
        self._last = None  # (start, count, seq sets per token or None for a chain) of the last forward

    def supports_plan(self) -> bool:
        return False

    def _check_rollback(self, what: str) -> None:
        if self.recurrent:
            raise EdgespecError(f"{what} needs a KV cache that can be rolled back, but '{self.path.name}' has a "
                                "recurrent/hybrid memory in llama.cpp; run it with --spec off")

    def forward(self, tokens, positions=None, tree_mask=None, logits_for=None, plan=None) -> np.ndarray:
        if plan is not None:
            raise EdgespecError("layer plans (layer-skip drafting) are not available on the llama.cpp backend")
        tokens = np.asarray(tokens, dtype=np.int32).reshape(-1)
        T, P = len(tokens), self.cache_len
        if P + T > self.max_len:
            raise ContextOverflowError(f"{P} cached + {T} new tokens exceed the context of {self.max_len} tokens")
        rows = np.arange(T) if logits_for is None else np.asarray(logits_for, dtype=np.int64).reshape(-1)
        seq_sets = None
        if tree_mask is None:
            depth = np.arange(T)
        else:
            self._check_rollback("a token tree")
            if T > self.n_batch:
                raise EdgespecError(f"a tree of {T} tokens exceeds the batch of {self.n_batch}")
            depth, leaves = tree_structure(tree_mask)
            if len(leaves) > self.branches:
                raise EdgespecError(f"a tree with {len(leaves)} leaves exceeds the {self.branches} branches "
                                    "this context was made for (max_branches)")
            if len(leaves) > 1:
                mask = np.asarray(tree_mask, dtype=bool)
                seq_sets = [np.array([s for s, leaf in enumerate(leaves) if mask[leaf, j]], np.int32)
                            for j in range(T)]
        if positions is not None and not np.array_equal(np.asarray(positions).reshape(-1), P + depth):
            raise EdgespecError("llama.cpp needs each token's position to be cache_len + its depth in the tree")
        want = np.zeros(T, dtype=np.int8)
        want[rows] = 1
        out = []
        for start in range(0, T, self.n_batch):
            n = min(self.n_batch, T - start)
            self._token[:n] = tokens[start:start + n]
            self._pos[:n] = P + depth[start:start + n]
            self._want[:n] = want[start:start + n]
            if seq_sets is None:
                self._n_seq[:n] = self.branches
            else:
                for i, seqs in enumerate(seq_sets):
                    self._n_seq[i] = len(seqs)
                    self._seq[i][:len(seqs)] = seqs
            self.batch.n_tokens = n
            started = time.perf_counter()
            rc = self.lc.llama_decode(self.ctx, self.batch)
            self.decode_seconds += time.perf_counter() - started
            if seq_sets is not None:
                for i in range(T):
                    self._seq[i][:] = self._all_seqs
            if rc != 0:
                self.lc.llama_memory_seq_rm(self.memory_handle, -1, P, -1)
                self.cache_len, self._last = P, None
                raise EdgespecError(f"llama_decode failed with code {rc} on {n} tokens at position {P + start}")
            n_out = int(self._want[:n].sum())
            if n_out:
                logits = self.lc.llama_get_logits(self.ctx)
                out.append(np.ctypeslib.as_array(logits, shape=(n_out, self.n_vocab)).copy())
        self.cache_len, self._last = P + T, (P, T, seq_sets)
        result = np.concatenate(out) if len(out) > 1 else out[0] if out else np.zeros((0, self.n_vocab), np.float32)
        order = np.argsort(np.argsort(rows))  # llama.cpp returns rows in batch order; honour the asked order
        return result[order] if logits_for is not None and not np.array_equal(order, np.arange(len(rows))) else result

    def rollback(self, n: int) -> None:
        if not 0 <= n <= self.cache_len:
            raise ValueError(f"cannot roll back {n} of {self.cache_len} cached tokens")
        if n == 0:
            return
        self._check_rollback("rollback")
        if self._last is not None and self._last[2] is not None:
            start, count, _ = self._last
            if n < count:
                raise ValueError(f"roll back a whole token tree ({count} tokens) or keep() a path of it, not {n}")
            self._positions_rm(-1, start, -1)
            self.cache_len, n = start, n - count
        self._positions_rm(-1, self.cache_len - n, -1)
        self.cache_len -= n
        self._last = None

    def keep(self, indices) -> None:
        if self._last is None:
            raise ValueError("keep() needs a forward to select from")
        start, count, seq_sets = self._last
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        k = len(indices)
        if indices.size and (indices.min() < 0 or indices.max() >= count):
            raise ValueError(f"keep({indices.tolist()}) outside the last forward's {count} tokens")
        if seq_sets is None:  # a chain: only a prefix has consecutive positions
            if not np.array_equal(indices, np.arange(k)):
                raise ValueError(f"on a chain forward keep() takes a prefix 0..k-1, got {indices.tolist()}")
            self.rollback(count - k)
            return
        self._check_rollback("keep")
        kept_seqs = set(seq_sets[indices[-1]].tolist()) if k else set()
        for d, i in enumerate(indices):
            if not kept_seqs <= set(seq_sets[i].tolist()):
                raise ValueError(f"keep({indices.tolist()}) is not a root-to-node path of the tree")
        for s in range(self.branches):
            self._positions_rm(s, start + (k if s in kept_seqs else 0), -1)
        if k:
            source = min(kept_seqs)
            for s in range(self.branches):
                if s not in kept_seqs:
                    self.lc.llama_memory_seq_cp(self.memory_handle, source, s, start, start + k)
        self.cache_len, self._last = start + k, None

    def _positions_rm(self, seq: int, p0: int, p1: int) -> None:
        if not self.lc.llama_memory_seq_rm(self.memory_handle, seq, p0, p1):
            raise EdgespecError(f"llama.cpp refused to remove positions [{p0}, {p1}) of sequence {seq}")

    def reset(self) -> None:
        self.lc.llama_memory_clear(self.memory_handle, True)
        self.cache_len, self._last = 0, None

    def memory(self) -> dict[str, int]:
        c = self.config
        kv_per_token = kv_bytes_per_token(c)
        return {"weights": int(self.lc.llama_model_size(self.model)), "kv_allocated": kv_per_token * self.max_len,
                "kv_resident": kv_per_token * self.max_len,  # allocated and cleared when the context is created
                "kv_per_token": kv_per_token, "rss": psutil.Process().memory_info().rss}

    def close(self) -> None:
        if getattr(self, "ctx", None):
            self.lc.llama_batch_free(self.batch)
            self.lc.llama_free(self.ctx)
            self.lc.llama_model_free(self.model)
            self.ctx = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


def _physical_cores() -> int:
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1
