"""GGML block formats, vectorised over all blocks of a tensor.

Every format supported here is, per group of values, an affine map of small
integer levels:  x = scale * (q - zero) + offset. `decompose` returns that
form (q, scale, offset per group; zero is a per-format constant); `dequantize`
evaluates it in the same float order as ggml, so results are bit-exact with
the gguf package. The int4/int8 exporter reuses the same decomposition to
convert GGUF weights to MatMulNBits without requantizing (quant/ggml_blocks.py).

    format  group  q bits  zero  scale            offset       bytes/block (values)
    Q8_0    32     8       128   d                -            34 (32): f16 d, int8 q
    Q4_0    32     4       8     d                -            18 (32): f16 d, nibbles (j lo, j+16 hi)
    Q4_1    32     4       0     d                m            20 (32): f16 d, f16 m, nibbles
    Q5_0    32     5       16    d                -            22 (32): f16 d, u32 fifth bits, nibbles
    Q5_1    32     5       0     d                m            24 (32): f16 d, f16 m, u32, nibbles
    Q4_K    32     4       0     d*sc[s]          -dmin*mn[s]  144 (256): f16 d, f16 dmin, 12 B 6-bit sc/mn, 128 B
    Q5_K    32     5       0     d*sc[s]          -dmin*mn[s]  176 (256): as Q4_K + 32 B fifth bits
    Q6_K    16     6       32    d*sc[s]          -            210 (256): 128 B lo nibbles, 64 B hi 2 bits, 16 int8 sc, f16 d
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gguf import GGMLQuantizationType as Q

from ..errors import UnsupportedQuantError


@dataclass
class Decomposed:
    """x = scale * (q - zero) + offset, per group of `group` values."""

    q: np.ndarray  # uint8 levels [groups_total, group]
    scale: np.ndarray  # float32 [groups_total]
    offset: np.ndarray | None  # float32 [groups_total] or None
    zero: int
    bits: int
    group: int


def _f16(raw: np.ndarray) -> np.ndarray:
    """[blocks, 2] uint8 -> [blocks] float32."""
    return raw.copy().view(np.float16)[:, 0].astype(np.float32)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """[blocks, 16] bytes -> [blocks, 32]: low nibbles first, then high nibbles."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1)


def _fifth_bits(qh: np.ndarray) -> np.ndarray:
    """[blocks, 4] bytes (a little-endian u32) -> [blocks, 32] bit j, as 0/16."""
    return np.unpackbits(qh, axis=-1, bitorder="little") << 4


def _q8_0(b):
    return Decomposed((b[:, 2:].view(np.int8).astype(np.int16) + 128).astype(np.uint8), _f16(b[:, :2]), None,
                      128, 8, 32)


def _q4_0(b):
    return Decomposed(_nibbles(b[:, 2:]), _f16(b[:, :2]), None, 8, 4, 32)


def _q4_1(b):
    return Decomposed(_nibbles(b[:, 4:]), _f16(b[:, :2]), _f16(b[:, 2:4]), 0, 4, 32)


def _q5_0(b):
    return Decomposed(_nibbles(b[:, 6:]) | _fifth_bits(b[:, 2:6]), _f16(b[:, :2]), None, 16, 5, 32)


def _q5_1(b):
    return Decomposed(_nibbles(b[:, 8:]) | _fifth_bits(b[:, 4:8]), _f16(b[:, :2]), _f16(b[:, 2:4]), 0, 5, 32)


def _k_scales(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """12 bytes -> 8 six-bit scales and 8 six-bit mins (ggml get_scale_min_k4)."""
    s = scales
    sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 0x0F) | ((s[:, 0:4] >> 6) << 4)], axis=-1)
    mn = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=-1)
    return sc.astype(np.float32), mn.astype(np.float32)


def _k_quant(b, q, bits):
    """Q4_K/Q5_K: q [blocks, 8 sub-blocks, 32] levels; scale d*sc, offset -dmin*mn per sub-block."""
    d, dmin = _f16(b[:, 0:2])[:, None], _f16(b[:, 2:4])[:, None]
    sc, mn = _k_scales(b[:, 4:16])
    return Decomposed(q.reshape(-1, 32), (d * sc).reshape(-1), (-(dmin * mn)).reshape(-1), 0, bits, 32)


def _q4_k(b):
    qs = b[:, 16:144].reshape(-1, 4, 32)  # 4 chunks of 64 values: lo nibbles then hi nibbles
    return _k_quant(b, np.stack([qs & 0x0F, qs >> 4], axis=2), 4)


def _q5_k(b):
    qh = b[:, 16:48]
    qs = b[:, 48:176].reshape(-1, 4, 32)
    q = np.stack([qs & 0x0F, qs >> 4], axis=2).reshape(-1, 8, 32)
    high = (qh[:, None, :] >> np.arange(8, dtype=np.uint8)[None, :, None]) & 1  # bit s -> sub-block s
    return _k_quant(b, q | (high << 4), 5)


def _q6_k(b):
    n = len(b)
    ql = b[:, 0:128].reshape(n, 2, 2, 32)  # [half, first/second 32 bytes, l]
    qh = b[:, 128:192].reshape(n, 2, 1, 32)
    sc = b[:, 192:208].view(np.int8).astype(np.float32).reshape(n, 2, 4, 2)  # [half, quarter, 16-group]
    d = _f16(b[:, 208:210]).reshape(n, 1, 1, 1)
    low = np.stack([ql & 0x0F, ql >> 4], axis=2).reshape(n, 2, 4, 32)  # quarters: l, l+32, l+64, l+96
    high = (qh >> np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)) & 3
    q = (low | (high << 4)).reshape(n, 2, 4, 2, 16)
    return Decomposed(q.reshape(-1, 16), (d * sc).reshape(-1), None, 32, 6, 16)


# type -> (values per block, bytes per block, decomposition)
_BLOCK_FORMATS = {
    Q.Q8_0: (32, 34, _q8_0),
    Q.Q4_0: (32, 18, _q4_0),
    Q.Q4_1: (32, 20, _q4_1),
    Q.Q5_0: (32, 22, _q5_0),
    Q.Q5_1: (32, 24, _q5_1),
    Q.Q4_K: (256, 144, _q4_k),
    Q.Q5_K: (256, 176, _q5_k),
    Q.Q6_K: (256, 210, _q6_k),
}
_PLAIN = {Q.F32: np.float32, Q.F16: np.float16}
SUPPORTED_TYPES = tuple(t.name for t in (*_PLAIN, Q.BF16, *_BLOCK_FORMATS))


def check_supported(qtype: Q, tensor: str = "?") -> None:
    if qtype not in _PLAIN and qtype != Q.BF16 and qtype not in _BLOCK_FORMATS:
        raise UnsupportedQuantError(
            f"tensor '{tensor}' uses quantization type {Q(qtype).name}, which edgespec cannot read; "
            f"supported: {', '.join(SUPPORTED_TYPES)}")


def is_block_format(qtype: Q) -> bool:
    return qtype in _BLOCK_FORMATS


def decompose(raw: np.ndarray, qtype: Q, shape: tuple[int, ...], tensor: str = "?") -> Decomposed:
    """The affine-levels form of a block-quantized tensor (row-major groups)."""
    check_supported(qtype, tensor)
    per_block, block_bytes, fn = _BLOCK_FORMATS[qtype]
    data = np.ascontiguousarray(raw).view(np.uint8).reshape(-1)
    count = int(np.prod(shape))
    if count % per_block or data.size != count // per_block * block_bytes:
        raise UnsupportedQuantError(
            f"tensor '{tensor}' of type {Q(qtype).name}: {data.size} bytes do not hold {count} values "
            f"in blocks of {per_block} ({block_bytes} bytes each)")
    return fn(data.reshape(-1, block_bytes))


def dequantize(raw: np.ndarray, qtype: Q, shape: tuple[int, ...], tensor: str = "?") -> np.ndarray:
    """raw bytes (or an already-typed array for F32/F16) -> float32 array of `shape` (row-major)."""
    check_supported(qtype, tensor)
    if qtype in _PLAIN:
        return np.asarray(raw).view(_PLAIN[qtype]).reshape(shape).astype(np.float32)
    if qtype == Q.BF16:
        data = np.ascontiguousarray(raw).view(np.uint16).reshape(-1)
        return (data.astype(np.uint32) << 16).view(np.float32).reshape(shape)
    d = decompose(raw, qtype, shape, tensor)
    levels = d.q.astype(np.float32) - np.float32(d.zero)
    x = d.scale[:, None] * levels
    if d.offset is not None:
        x = x + d.offset[:, None]
    return x.reshape(shape)
