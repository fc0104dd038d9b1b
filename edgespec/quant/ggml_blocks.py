"""GGUF block-quantized weights -> MatMulNBits without requantizing.

Each GGML format is x = scale * (q - zero) + offset per group (formats/quants.py).
MatMulNBits computes scale * (level - implied_zero) with implied_zero 8 (int4) or
128 (int8), so:
    4-bit levels (Q4_0, Q4_1, Q4_K): int4, level = q,
        x = s*(q - 8) + [offset + s*(8 - zero)]
    5..8-bit levels (Q5_*, Q6_K, Q8_0): int8, level = q - zero + 128,
        x = s*(level - 128) + offset
The bracketed per-group constant, when there is one, is applied as
(group sums of the input) @ constant^T: a [T, K/group] x [K/group, N] product.
Q4_0, Q5_0, Q6_K and Q8_0 have none and convert bit-exactly; the others add one
float rounding (or, in the planned recipes, one int8 rounding of the offset term: linear.offset_int8).
"""

from __future__ import annotations

import numpy as np

from ..formats.quants import decompose
from .int4 import PackedInt4, pack_nibbles


def to_matmulnbits(raw: np.ndarray, qtype, shape: tuple[int, int], tensor: str = "?"):
    """-> (PackedInt4 with bits 4 or 8, per-group constant [N, K/group] float32 or None)."""
    N, K = shape
    d = decompose(raw, qtype, shape, tensor)
    groups = K // d.group
    q = d.q.reshape(N, groups, d.group)
    scale = d.scale.reshape(N, groups).astype(np.float32)
    offset = None if d.offset is None else d.offset.reshape(N, groups).astype(np.float32)
    if d.bits <= 4:
        packed = PackedInt4(N, K, d.group, pack_nibbles(q), scale.reshape(-1), bits=4)
        shift = 8 - d.zero
        if shift:
            offset = (0 if offset is None else offset) + scale * np.float32(shift)
        return packed, offset
    levels = (q.astype(np.int16) - d.zero + 128).astype(np.uint8)
    return PackedInt4(N, K, d.group, levels, scale.reshape(-1), bits=8), offset
