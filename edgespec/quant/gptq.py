"""GPTQ: int4 requantization that minimises a layer's OUTPUT error on real activations.

For Y = X W^T the error a quantized W adds over calibration inputs X [T, K] is
    ||X (W - Q)^T||^2 = tr((W - Q) H (W - Q)^T),   H = X^T X   [K, K]
GPTQ (Frantar et al., arXiv 2210.17323) quantizes the columns of W one at a time and
spreads each column's rounding error over the columns not yet quantized, weighted by
the inverse Hessian: with U the upper Cholesky factor of H^-1,
    err_j     = (w_j - q_j) / U[j, j]
    w_{j+1:} -= err_j * U[j, j+1:]
Rows are independent (they share H), so they are processed in slabs that stay in cache.
Wide inputs (ffn_down's K = 4864 on qwen 0.5b) are quantized in windows of WINDOW input
columns with the window's own Hessian block (error is spread within a window only): the
factorization costs K^3, 25x more for a 4864-wide H than for five 1024-wide blocks, and takes
seconds per layer on a busy 2-core machine.
Output: MatMulNBits' asymmetric int4 layout (block along K, 4-bit zero points), whose
block parameters are chosen from the already error-updated weights of each block; or, symmetric, its layout
without zero points (the implied 8; onnxruntime-genai's format, 0.125 bits per weight fewer), the block's
largest-magnitude weight mapped to -8 as Q4_0 and int4.quantize(symmetric=True) do.

Why our own and not onnxruntime.quantization's: its GPTQ (`neural_compressor.weight_only.gptq`)
returns fake-quantized floats, not the levels/scales/zero points MatMulNBits stores, picks block
parameters from weights not yet error-updated, and its module does not import without onnx_ir;
its quantizer front end wants an fp32 ONNX model with MatMul nodes and runs it for activations,
where ours come from the numpy reference layer by layer (export/precision.py). HQQ there needs
torch and minimises the weight error, not the output error.
"""

from __future__ import annotations

import numpy as np

from .int4 import PackedInt4, check_blocks, pack_nibbles, pack_zero_points

GPTQ_VERSION = 2  # in the calibration cache's key: 2 = blocks wider than CHUNK take their range from the whole block
DAMP = 0.1  # share of the mean Hessian diagonal added to it (GPTQ's percdamp; 0.1 beat 0.01 on held-out
# text with ~1000 calibration tokens: smollm2 layer 3 q output error 0.046 vs 0.054, RTN 0.062)
CHUNK = 32  # columns per lazy-batch update, or one block if larger (rank-1 updates stay small; the rest is one matmul)
SLAB = 4096  # rows processed together
WINDOW = 1024  # input columns that share one Hessian factorization (a multiple of CHUNK and of every block)


def hessian(x: np.ndarray) -> np.ndarray:
    """X^T X in float64 [K, K] for calibration rows x [T, K]."""
    x = np.asarray(x, np.float32)
    return (x.T @ x).astype(np.float64)


def inverse_factor(h: np.ndarray, damp: float = DAMP) -> tuple[np.ndarray, np.ndarray]:
    """(upper Cholesky factor of the damped H^-1 as float32, mask of dead input columns)."""
    from threadpoolctl import threadpool_limits

    h = np.array(h, np.float64)
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    h[np.diag_indices_from(h)] += damp * np.mean(np.diag(h))
    # U with U^T U = H^-1, from ONE Cholesky of H with its order reversed (J = reversal):
    # J H J = L L^T  =>  H^-1 = (J L^-1 J)^T (J L^-1 J), and J L^-1 J is upper triangular.
    with threadpool_limits(1):  # OpenBLAS' threaded LAPACK spins for seconds when the other core is busy
        lower = np.linalg.cholesky(h[::-1, ::-1])
        return np.linalg.inv(lower)[::-1, ::-1].astype(np.float32), dead


def gptq_int4(w: np.ndarray, h: np.ndarray, block: int = 32, damp: float = DAMP, window: int = WINDOW,
              symmetric: bool = False) -> PackedInt4:
    """w [N, K] float, h [K, K] = X^T X of its inputs -> int4 PackedInt4 (asymmetric, or symmetric: no zero points)."""
    w = np.asarray(w, np.float32)
    check_blocks(w.shape, block)  # as round-to-nearest does: an error that names K, not an IndexError
    N, K = w.shape
    levels = np.empty((N, K), np.uint8)
    scales = np.empty((N, K // block), np.float32)
    zeros = np.empty((N, K // block), np.float32)
    for c in range(0, K, window):
        cols = slice(c, min(c + window, K))
        u, dead = inverse_factor(h[cols, cols], damp)
        blocks = slice(c // block, cols.stop // block)
        for r in range(0, N, SLAB):
            rows = slice(r, min(r + SLAB, N))
            levels[rows, cols], scales[rows, blocks], zeros[rows, blocks] = _gptq_rows(w[rows, cols], u, dead, block,
                                                                                       symmetric)
    blob = pack_nibbles(levels.reshape(N, K // block, block))
    return PackedInt4(N, K, block, blob, scales.reshape(-1), None if symmetric else pack_zero_points(zeros))


def _gptq_rows(w: np.ndarray, u: np.ndarray, dead: np.ndarray, block: int, symmetric: bool = False):
    Wt = np.ascontiguousarray(w.T)  # [K, N]: a column of w is a contiguous row here
    Wt[dead] = 0.0
    K, N = Wt.shape
    # a block's range is taken from its columns as updated so far, so a block must lie inside one lazy batch:
    # with 32-column batches a 64-wide block took its range from its first half only and clipped outliers in
    # the second (output error 2x round-to-nearest's)
    chunk = max(CHUNK, block)
    levels = np.empty((K, N), np.uint8)
    scales = np.empty((K // block, N), np.float32)
    zeros = np.empty((K // block, N), np.float32)
    for c1 in range(0, K, chunk):
        c2 = min(c1 + chunk, K)
        W1 = Wt[c1:c2]  # a view: updated in place
        err = np.empty_like(W1)
        for i in range(c2 - c1):
            col = c1 + i
            if col % block == 0:  # this block's range from its error-updated weights
                g = W1[i:i + block]
                if symmetric:  # the largest-magnitude weight (with its sign) -> level 0, i.e. -8
                    scale = np.take_along_axis(g, np.abs(g).argmax(0)[None], 0)[0] / -8.0
                    safe, zp = np.where(scale == 0, 1.0, scale), np.full(scale.shape, 8.0, np.float32)
                else:
                    lo, hi = np.minimum(g.min(0), 0.0), np.maximum(g.max(0), 0.0)
                    scale = (hi - lo) / 15.0
                    safe = np.where(scale == 0, 1.0, scale)
                    zp = np.clip(np.round(-lo / safe), 0, 15)
                scales[col // block], zeros[col // block] = scale, zp
            q = np.clip(np.round(W1[i] / safe) + zp, 0, 15)
            levels[col] = q
            e = (W1[i] - (q - zp) * scale) / u[col, col]
            W1[i + 1:] -= u[col, col + 1:c2, None] * e
            err[i] = e
        Wt[c2:] -= u[c1:c2, c2:].T @ err
    return levels.T, scales.T, zeros.T


def output_error(x: np.ndarray, w: np.ndarray, w_quant: np.ndarray) -> float:
    """||x (w - w_quant)^T|| / ||x w^T||: the relative error the quantized weight adds to the layer's output."""
    x = np.asarray(x, np.float32)
    ref = x @ w.T
    return float(np.linalg.norm(x @ w_quant.T - ref) / (np.linalg.norm(ref) or 1.0))
