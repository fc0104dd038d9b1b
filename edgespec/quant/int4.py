"""int4 (and int8) block quantization in onnxruntime's com.microsoft MatMulNBits layout.

MatMulNBits computes Y = A @ W^T for W [N, K] stored per row in blocks of
`block` values along K:
    B      uint8 [N, K/block, block/2]   value 2j in the low nibble of byte j, 2j+1 in the high
    scales float [N * K/block]
    zero_points (optional) uint8 [N * ceil(K/block / 2)], two 4-bit zero points per byte
                (low nibble first), or float [N * K/block]; absent means 8
    W[n, k] = (q - zero_point) * scale
With bits=8 a blob byte is one level and the implied zero point is 128.
GGUF weights convert to this form without requantizing: see ggml_blocks.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import EdgespecError

BLOCK_SIZES = (16, 32, 64, 128)


@dataclass
class PackedInt4:
    """A weight [N, K] in MatMulNBits form (bits=4, or 8 for the int8 variant)."""

    N: int
    K: int
    block: int
    blob: np.ndarray  # uint8 [N, K/block, block*bits/8]
    scales: np.ndarray  # float32 [N * K/block]
    zero_points: np.ndarray | None = None  # uint8 packed (4-bit only), or float32 [N * K/block]
    bits: int = 4


def check_blocks(shape: tuple[int, int], block: int) -> None:
    if block not in BLOCK_SIZES:
        raise EdgespecError(f"int4 block size {block} is not supported; choose one of {BLOCK_SIZES}")
    if shape[1] % block:
        raise EdgespecError(f"a weight with K={shape[1]} columns cannot be split into int4 blocks of {block}; "
                            f"K must be a multiple of the block size")


def pack_nibbles(q: np.ndarray) -> np.ndarray:
    """levels [..., block] in 0..15 -> bytes [..., block/2] (even index in the low nibble)."""
    q = q.astype(np.uint8)
    return q[..., 0::2] | (q[..., 1::2] << 4)


def unpack_nibbles(blob: np.ndarray) -> np.ndarray:
    """bytes [..., block/2] -> levels [..., block]."""
    out = np.empty(blob.shape[:-1] + (blob.shape[-1] * 2,), np.uint8)
    out[..., 0::2], out[..., 1::2] = blob & 0x0F, blob >> 4
    return out


def quantize(w: np.ndarray, block: int = 32, symmetric: bool = False) -> PackedInt4:
    """Round-to-nearest int4 per block. Symmetric: Q4_0-style (the extreme value maps to -8).
    Asymmetric: min/max range with a 4-bit zero point (smaller error, a little more to read)."""
    w = np.asarray(w, dtype=np.float32)
    check_blocks(w.shape, block)
    N, K = w.shape
    blocks = w.reshape(N, K // block, block)
    if symmetric:
        extreme = np.take_along_axis(blocks, np.abs(blocks).argmax(-1)[..., None], -1)[..., 0]
        scale = extreme / -8.0
        inv = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale != 0)
        q = np.clip(np.round(blocks * inv[..., None]) + 8, 0, 15)
        return PackedInt4(N, K, block, pack_nibbles(q), scale.reshape(-1).astype(np.float32))
    lo = np.minimum(blocks.min(-1), 0.0)
    hi = np.maximum(blocks.max(-1), 0.0)
    scale = (hi - lo) / 15.0
    inv = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale != 0)
    zp = np.clip(np.round(-lo * inv), 0, 15)
    q = np.clip(np.round(blocks * inv[..., None]) + zp[..., None], 0, 15)
    return PackedInt4(N, K, block, pack_nibbles(q), scale.reshape(-1).astype(np.float32), pack_zero_points(zp))


def pack_zero_points(zp: np.ndarray) -> np.ndarray:
    """[N, k_blocks] levels -> uint8 [N * ceil(k_blocks/2)] (rows padded to whole bytes)."""
    N, k_blocks = zp.shape
    if k_blocks % 2:
        zp = np.concatenate([zp, np.full((N, 1), 8)], axis=1)
    return pack_nibbles(zp).reshape(-1)


def quantize_int8(w: np.ndarray, block: int = 32, max_level: int = 127) -> PackedInt4:
    """Symmetric int8 per block (levels 128 +- max_level around the implied zero point 128: 1..255 by default)."""
    w = np.asarray(w, dtype=np.float32)
    check_blocks(w.shape, block)
    N, K = w.shape
    blocks = w.reshape(N, K // block, block)
    scale = np.abs(blocks).max(-1) / float(max_level)
    inv = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale != 0)
    q = np.clip(np.round(blocks * inv[..., None]), -max_level, max_level) + 128
    return PackedInt4(N, K, block, q.astype(np.uint8), scale.reshape(-1).astype(np.float32), bits=8)


def dequantize(p: PackedInt4) -> np.ndarray:
    """The float32 weight [N, K] MatMulNBits multiplies by."""
    k_blocks = p.K // p.block
    if p.bits == 8:
        q = p.blob.astype(np.float32)
        zp = np.full((p.N, k_blocks), 128.0, np.float32) if p.zero_points is None else \
            p.zero_points.reshape(p.N, k_blocks).astype(np.float32)
        return ((q - zp[..., None]) * p.scales.reshape(p.N, k_blocks)[..., None]).reshape(p.N, p.K)
    q = unpack_nibbles(p.blob).astype(np.float32)  # [N, k_blocks, block]
    if p.zero_points is None:
        zp = np.full((p.N, k_blocks), 8.0, np.float32)
    elif p.zero_points.dtype == np.uint8:
        zp = unpack_nibbles(p.zero_points.reshape(p.N, -1))[:, :k_blocks].astype(np.float32)
    else:
        zp = p.zero_points.reshape(p.N, k_blocks)
    scale = p.scales.reshape(p.N, k_blocks)
    return ((q - zp[..., None]) * scale[..., None]).reshape(p.N, p.K)


def take_rows(p: PackedInt4, rows) -> PackedInt4:
    """Rows `rows` (indices or a slice) of a packed weight: every per-row array is cut alike (4-bit zero
    points are padded to whole bytes per row, see pack_zero_points)."""
    blob = p.blob[rows]
    def per_row(a):
        return None if a is None else a.reshape(p.N, -1)[rows].reshape(-1)
    return PackedInt4(len(blob), p.K, p.block, blob, per_row(p.scales), per_row(p.zero_points), p.bits)


def error_report(reference: np.ndarray, packed: PackedInt4) -> dict[str, float]:
    """How far the int4 weight is from the float one: max abs and relative RMS error."""
    diff = dequantize(packed) - reference
    rms = float(np.sqrt(np.mean(np.square(reference)))) or 1.0
    return {"max_abs": float(np.abs(diff).max()), "rel_rms": float(np.sqrt(np.mean(np.square(diff))) / rms)}
