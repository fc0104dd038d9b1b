"""The static (NPU) graphs' contract: what the host feeds each bucket graph and reads back.

Written into the manifest (`static.contract`) by `export --target npu`; the static backend
(runtimes/static.py) builds its feeds from the helpers here. A family's static builder
(e.g. models/llama/static_graph.py) implements it.
"""

from __future__ import annotations

import numpy as np

from ..config import ModelConfig
from .llama.reference import rope_inv_freq

STATIC_CONTRACT_VERSION = 2  # 2: new rows placed into the window (placement), attention over W slots
# Finite "minus infinity": exp underflows to exactly 0 in fp16 and fp32, and it stays finite when
# an NPU adds it to fp16 scores (-inf - -inf is NaN in a max-subtracting softmax).
MASK_VALUE = -1.0e4

CONTRACT = {
    "version": STATIC_CONTRACT_VERSION,
    "inputs": {"input_ids": "[1,T] int32",
               "rope_cos": "[1,1,T,hd] float32: [cos, cos] of the rows' positions",
               "rope_sin": "[1,1,T,hd] float32: [-sin, sin] (rotate-half folded into the sign)",
               "attention_bias": f"[1,1,T,W] float32: 0 visible, {MASK_VALUE} not, over the window slots "
                                 "(slot s = position s; the pass's own rows are in their slots)",
               "placement": "[1,1,W,T] float32 one-hot: 1 at (slot, row) where new row goes (none for padding)",
               "past_key.i / past_value.i": "[1,kv,W,hd] float32: the host's KV window; the pass's slots zero, "
                                            "stale slots masked"},
    "outputs": {"logits": "[1,T,vocab] float32, every row",
                "new_key.i / new_value.i": "[1,kv,T,hd] float32: the new rows only (K after RoPE)"},
    "padding": "rows past the pass are placed nowhere and see one slot (finite softmax); outputs dropped",
}


def rope_tables(config: ModelConfig, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The host's RoPE inputs for `positions` [T]: cos, signed sin, each [1, 1, T, head_dim] float32."""
    inv_freq = rope_inv_freq(config.head_dim, config.rope_theta, config.rope_scaling)
    angles = np.asarray(positions, np.float64)[:, None] * inv_freq[None, :]
    cos, sin = np.cos(angles), np.sin(angles)
    return (np.concatenate([cos, cos], -1).astype(np.float32)[None, None],
            np.concatenate([-sin, sin], -1).astype(np.float32)[None, None])
