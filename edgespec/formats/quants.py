"""Dequantizers for GGML block formats, vectorised over all blocks of a tensor.

Each takes the raw bytes of a tensor and returns float32 values in row-major
order. Block layouts (llama.cpp ggml-common.h):

    Q8_0  32 values: f16 d, 32 x int8 q                      x = d*q
    Q4_0  32 values: f16 d, 16 bytes (lo nibble j, hi j+16)  x = d*(q-8)
    Q4_1  32 values: f16 d, f16 m, 16 bytes                  x = d*q + m
    Q5_0  32 values: f16 d, u32 fifth bits, 16 bytes          x = d*(q-16)
    Q5_1  32 values: f16 d, f16 m, u32 fifth bits, 16 bytes   x = d*q + m
    Q4_K  256 values: f16 d, f16 dmin, 12 bytes of 6-bit (scale, min) x 8, 128 bytes nibbles
                      x = d*sc[s]*q - dmin*mn[s] for sub-block s of 32
    Q5_K  as Q4_K plus 32 bytes of fifth bits
    Q6_K  256 values: 128 bytes low nibbles, 64 bytes high 2-bits, 16 x int8 scales, f16 d
                      x = d*sc[s]*(q-32) for sub-block s of 16
"""

from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType as Q

from ..errors import UnsupportedQuantError


def _f16(raw: np.ndarray) -> np.ndarray:
    """[blocks, 2] uint8 -> [blocks, 1] float32."""
    return raw.copy().view(np.float16).astype(np.float32)


def _q8_0(b):
    return _f16(b[:, :2]) * b[:, 2:].view(np.int8).astype(np.float32)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """[blocks, 16] bytes -> [blocks, 32]: low nibbles first, then high nibbles."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float32)


def _q4_0(b):
    return _f16(b[:, :2]) * (_nibbles(b[:, 2:]) - 8)


def _q4_1(b):
    return _f16(b[:, :2]) * _nibbles(b[:, 4:]) + _f16(b[:, 2:4])


def _fifth_bits(qh: np.ndarray) -> np.ndarray:
    """[blocks, 4] bytes (a little-endian uint32) -> [blocks, 32] bit j of it, as 0/16."""
    bits = np.unpackbits(qh, axis=-1, bitorder="little")
    return 16 * bits.astype(np.float32)


def _q5_0(b):
    return _f16(b[:, :2]) * (_nibbles(b[:, 6:]) + _fifth_bits(b[:, 2:6]) - 16)


def _q5_1(b):
    return _f16(b[:, :2]) * (_nibbles(b[:, 8:]) + _fifth_bits(b[:, 4:8])) + _f16(b[:, 2:4])


def _k_scales(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """12 bytes -> 8 six-bit scales and 8 six-bit mins (ggml get_scale_min_k4)."""
    s = scales.astype(np.uint8)
    sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 0x0F) | ((s[:, 0:4] >> 6) << 4)], axis=-1)
    mn = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=-1)
    return sc.astype(np.float32), mn.astype(np.float32)


def _k_quant(b, q):
    """Shared tail of Q4_K/Q5_K: q [blocks, 8 sub-blocks, 32] integer levels."""
    d, dmin = _f16(b[:, 0:2]), _f16(b[:, 2:4])
    sc, mn = _k_scales(b[:, 4:16])
    return ((d * sc)[:, :, None] * q - (dmin * mn)[:, :, None]).reshape(len(b), 256)


def _q4_k(b):
    qs = b[:, 16:144].reshape(-1, 4, 32)  # 4 chunks of 64 values: lo nibbles then hi nibbles
    q = np.stack([qs & 0x0F, qs >> 4], axis=2).reshape(-1, 8, 32).astype(np.float32)
    return _k_quant(b, q)


def _q5_k(b):
    qh = b[:, 16:48]
    qs = b[:, 48:176].reshape(-1, 4, 32)
    q = np.stack([qs & 0x0F, qs >> 4], axis=2).reshape(-1, 8, 32).astype(np.float32)
    high = (qh[:, None, :] >> np.arange(8, dtype=np.uint8)[None, :, None]) & 1  # bit s of qh -> sub-block s
    return _k_quant(b, q + 16 * high.astype(np.float32))


def _q6_k(b):
    n = len(b)
    ql = b[:, 0:128].reshape(n, 2, 2, 32)  # [half, first/second 32 bytes, 32]
    qh = b[:, 128:192].reshape(n, 2, 1, 32)
    sc = b[:, 192:208].view(np.int8).astype(np.float32).reshape(n, 2, 4, 2)  # [half, quarter, 16-group]
    d = _f16(b[:, 208:210]).reshape(n, 1, 1, 1)
    low = np.stack([ql & 0x0F, ql >> 4], axis=2).reshape(n, 2, 4, 32)  # quarters: l, l+32, l+64, l+96
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)
    high = (qh >> shifts) & 3
    q = (low | (high << 4)).astype(np.float32) - 32  # [n, half, quarter, 32]
    q = q.reshape(n, 2, 4, 2, 16)
    return (d[..., None] * sc[..., None] * q).reshape(n, 256)


# type -> (values per block, bytes per block, function)
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


def dequantize(raw: np.ndarray, qtype: Q, shape: tuple[int, ...], tensor: str = "?") -> np.ndarray:
    """raw bytes (or an already-typed array for F32/F16) -> float32 array of `shape` (row-major)."""
    check_supported(qtype, tensor)
    count = int(np.prod(shape))
    if qtype in _PLAIN:
        return np.asarray(raw).view(_PLAIN[qtype]).reshape(shape).astype(np.float32)
    data = np.ascontiguousarray(raw).view(np.uint8).reshape(-1)
    if qtype == Q.BF16:
        return (data.view(np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(shape)
    per_block, block_bytes, fn = _BLOCK_FORMATS[qtype]
    if count % per_block or data.size != count // per_block * block_bytes:
        raise UnsupportedQuantError(
            f"tensor '{tensor}' of type {Q(qtype).name}: {data.size} bytes do not hold {count} values "
            f"in blocks of {per_block} ({block_bytes} bytes each)")
    return fn(data.reshape(-1, block_bytes)).reshape(shape).astype(np.float32, copy=False)
