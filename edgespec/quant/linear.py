"""The graph builder's Linear strategy for quantized exports: MatMulNBits nodes.

For each weight it picks the most faithful route and records it:
  a GGUF block-quantized weight -> its own levels and scales (ggml_blocks.py):
      4-bit formats become int4, 5..8-bit formats int8, with a per-group offset
      term where the format has one; no requantization
  a float weight (F32/F16/BF16 GGUF, HF safetensors) -> round-to-nearest int4/int8,
      with the error reported
Rows of llama Q/K are permuted by the GGUF reader; the lossless route applies the
same row permutation to the packed rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np
from ..errors import EdgespecError
from ..models import family
from ..formats.quants import is_block_format
from .ggml_blocks import to_matmulnbits
from .int4 import (BLOCK_SIZES, PackedInt4, dequantize, error_report, pack_nibbles, pack_zero_points, quantize,
                   quantize_int8, take_rows, unpack_nibbles)

log = logging.getLogger(__name__)


@dataclass
class QuantizedLinear:
    """Callable Linear strategy: (builder, input [T, K], canonical weight, output) -> MatMulNBits."""

    source: object  # a weights source (formats.open_weights)
    bits: int = 4
    block: int = 32
    # MatMulNBits' accuracy level for every weight, int4 and int8 alike: 4 = int8 activations (fast); 0/1 = fp32,
    # what onnxruntime-web's kernels compute (export/targets.py), slow for int8 weights on a CPU: its kernel
    # has no fp32-activation path for them and dequantizes the whole weight per call (smollm2's lm_head
    # 152 -> 12 tok/s)
    accuracy_level: int = 4
    symmetric: bool = False
    keep_gguf_blocks: bool = True  # False: dequantize and requantize even GGUF block weights
    # Activation type T of MatMulNBits (its scales, float zero points, bias and the offset term share it):
    # float16 for NPU graphs (QNN HTP takes MatMulNBits with 3-D fp16 input), float32 otherwise.
    float_type: type = np.float32
    report: dict[str, dict] = field(default_factory=dict)
    planned: dict = field(default_factory=dict)  # canonical -> PackedInt4 chosen by export/precision.py (GPTQ)
    int8_offsets: bool = False  # Q4_1/Q4_K's per-block offset term as int8 (1/4 of the fp32 bytes, one rounding)
    # The GGUF's 5..8-bit levels (int8 in blocks of 32, Q6_K 16) re-blocked to int8 in blocks of up to this many
    # inputs (None: kept exact). 8.25 bits per weight instead of 9 (Q5_0, Q8_0) or 10 (Q6_K), an offset term
    # less for Q5_1/Q5_K, one rounding of at most 1/16 of a Q5 step; onnxruntime's int8 kernel takes the time
    # of the bytes (qwen 0.5b's gate/up: 225 us at block 32, 190 at 128). The planned recipes on the CPU.
    int8_block: int | None = None
    # A 4-bit weight's int8 offset term (Q4_1/Q4_K) folded into its own MatMulNBits (fold_offset): one kernel
    # call instead of two and an Add; smollm2's plain decode 1.10-1.15x. The planned recipes on the CPU.
    fold_offsets: bool = False

    # canonical -> n: rows [0, n) on the high route (GGUF levels), the others the planned int4 (export/precision.py)
    high_rows: dict = field(default_factory=dict)

    def __call__(self, g, x: str, canonical: str, out: str) -> None:
        n = self.high_rows.get(canonical, 0)
        if not n:
            packed, offset = self.pack(canonical)
            self._emit(g, x, canonical, packed, offset, out)
            return
        # Two MatMulNBits over the two row ranges, outputs concatenated along the vocabulary: the graph's
        # logits stay in token order, and the concatenation copies one row of logits per token.
        high, offset = self.pack(canonical, planned=False)
        high_route = self.report[canonical]["route"]
        low, _ = self.pack(canonical, record=False)
        parts = [g.fresh("rows"), g.fresh("rows")]
        self._emit(g, x, f"{canonical}.rows_0_{n}", take_rows(high, slice(0, n)),
                   None if offset is None else offset[:n], parts[0])
        self._emit(g, x, f"{canonical}.rows_{n}_{low.N}", take_rows(low, slice(n, None)), None, parts[1])
        g.node("Concat", parts, [out], axis=-1)
        self.report[canonical] = {"route": f"rows 0-{n - 1}: {high_route}; the others int4 (calibrated)",
                                  "bits": [high.bits, low.bits], "block": low.block, "high_rows": n}

    def stack(self, g, x: str, canonicals: list[str], out: str, biases: list[str] | None = None) -> bool:
        """Several weights on the same input as one MatMulNBits over their rows stacked (q/k/v, gate/up):
        one kernel call instead of several. Parts of one width and block stack even when one keeps a GGUF
        route's implied zero point and offset term and another is a calibrated int4 weight with zero points
        (qwen's Q4_K q/k beside a requantized Q6_K v): the first gets explicit zero points of 8 and the second
        an offset of zero, both exact, so the layer pays one kernel and one offset term instead of three and
        two. False when their bit widths, blocks or zero point kinds cannot be joined (nothing is added)."""
        parts = [self.pack(canonical) for canonical in canonicals]
        parts = _common_form(parts)
        if parts is None:
            return False
        first, first_offset = parts[0]
        stacked = PackedInt4(sum(p.N for p, _ in parts), first.K, first.block,
                             np.concatenate([p.blob for p, _ in parts]),
                             np.concatenate([p.scales for p, _ in parts]),
                             None if first.zero_points is None else np.concatenate([p.zero_points for p, _ in parts]),
                             first.bits)
        offset = None if first_offset is None else np.concatenate([o for _, o in parts])
        name = "+".join(canonicals)
        bias = None if biases is None else \
            g.constant(name + ".bias", np.concatenate([np.asarray(g.weights[b], self.float_type) for b in biases]))
        self._emit(g, x, name, stacked, offset, out, bias)
        return True

    def _emit(self, g, x: str, name: str, packed: PackedInt4, offset: np.ndarray | None, out: str,
              bias: str | None = None) -> None:
        if offset is not None and self.folds(packed):
            x, packed, offset = _with_block_sums(g, x, packed), fold_offset(packed, offset), None
        f = self.float_type
        zero_points = packed.zero_points
        if zero_points is not None and zero_points.dtype != np.uint8:
            zero_points = zero_points.astype(f)
        inputs = [x, g.constant(name + ".qweight", packed.blob), g.constant(name + ".scales", packed.scales.astype(f)),
                  "" if zero_points is None else g.constant(name + ".zero_points", zero_points),
                  "", "" if bias is None else bias]  # A, B, scales, zero_points, g_idx, bias
        while inputs[-1] == "":
            inputs.pop()
        main = out if offset is None else g.fresh("matmulnbits")
        g.node("MatMulNBits", inputs, [main], domain="com.microsoft", K=packed.K, N=packed.N, bits=packed.bits,
               block_size=packed.block, accuracy_level=self.accuracy_level)
        if offset is not None:  # + (block sums of x) @ offset^T
            k_blocks = packed.K // packed.block
            sums = _block_sums(g, x, packed)
            if self.int8_offsets:
                q = offset_int8(offset)
                correction = g.node("MatMulNBits", [sums, g.constant(name + ".block_offset.q", q.blob),
                                                    g.constant(name + ".block_offset.scales", q.scales)],
                                    domain="com.microsoft", K=k_blocks, N=packed.N, bits=8, block_size=q.block,
                                    accuracy_level=self.accuracy_level)
            else:
                correction = g.node("MatMul", [sums, g.constant(name + ".block_offset",
                                                                np.ascontiguousarray(offset.T, dtype=f))])
            g.node("Add", [main, correction], [out])

    def folds(self, packed: PackedInt4) -> bool:
        """Whether this weight's offset term (if it has one) is folded into its MatMulNBits."""
        return self.fold_offsets and self.int8_offsets and packed.bits == 4 and \
            (packed.zero_points is None or packed.zero_points.dtype == np.uint8)

    def pack(self, canonical: str, record: bool = True, planned: bool = True) -> tuple[PackedInt4, np.ndarray | None]:
        """(packed weight, per-block offset [N, K/block] or None). record=False: leave no report entry.
        planned=False: the high route (GGUF levels, int8 for a float weight) even where the plan says int4."""
        report = self.report if record else {}
        raw = self.source.raw(canonical) if hasattr(self.source, "raw") else None
        if planned and canonical in self.planned:
            packed = self.planned[canonical]
            report[canonical] = {"route": f"{raw.qtype.name if raw else 'float'} -> int4 (calibrated)", "bits": 4,
                                 "block": packed.block}
            return packed, None
        if raw is not None and is_block_format(raw.qtype) and self.keep_gguf_blocks:
            packed, offset = to_matmulnbits(raw.data, raw.qtype, raw.shape, canonical)
            packed = _permute_rows(packed, self.source.config, canonical)
            if offset is not None:
                offset = _unpermute(offset, self.source.config, canonical)
            route = f"{raw.qtype.name} levels kept"
            if self.int8_block and packed.bits == 8 and (offset is not None or _widest(packed, self.int8_block)
                                                          > packed.block):
                packed, offset = reblock_int8(packed, offset, self.int8_block), None
                route = f"{raw.qtype.name} levels as int8 in blocks of {packed.block}"
            report[canonical] = {"route": route, "bits": packed.bits, "block": packed.block,
                                 "offset_term": offset is not None}
            return packed, offset
        weight = self.source.tensor(canonical)
        packed = quantize(weight, self.block, self.symmetric) if self.bits == 4 else quantize_int8(weight, self.block)
        report[canonical] = {"route": f"{raw.qtype.name if raw else 'float'} requantized", "bits": packed.bits,
                                  **error_report(weight, packed)}
        return packed, None


@dataclass
class QuantizedEmbedding:
    """The embedding table stored as int8 levels with a scale per block, dequantized row by row in the graph
    (the graph's `embedding` strategy: (builder, ids [T]) -> rows [T, d] float32). A GGUF block table keeps its
    own levels (Q8_0/Q5_0/Q6_K/Q4_0 bit-exact; Q4_1/Q4_K plus a per-block offset gathered beside them); a float
    table is quantized to int8 in blocks of 32 (round-to-nearest). Standard ops only (Gather, Cast, Mul), fp32
    scales: onnxruntime-web's WASM build for WebGPU has no CPU kernel for GatherBlockQuantized, and a GPU without
    shader-f16 reads fp32. Half the fp16 table's bytes (4-bit levels too take a byte each)."""

    source: object
    report: dict = field(default_factory=dict)

    def __call__(self, g, ids: str) -> str:
        raw = self.source.raw("embed") if hasattr(self.source, "raw") else None
        if raw is not None and is_block_format(raw.qtype):
            packed, offset = to_matmulnbits(raw.data, raw.qtype, raw.shape, "embed")
            route = f"{raw.qtype.name} levels kept"
        else:
            packed, offset = quantize_int8(self.source.tensor("embed"), 32), None
            route = f"{raw.qtype.name if raw else 'float'} -> int8 (round-to-nearest)"
        n, k_blocks, block = packed.N, packed.K // packed.block, packed.block
        # MatMulNBits' levels with their implied zero point (8 or 128) taken off: x = scale * level (+ offset)
        unpacked = unpack_nibbles(packed.blob) if packed.bits == 4 else packed.blob
        levels = (unpacked.astype(np.int16) - (8 if packed.bits == 4 else 128)).astype(np.int8).reshape(n, -1)
        per_row = g.node("Gather", [g.constant("embed_rows.levels", levels), ids])  # [T, d]
        blocks = g.node("Reshape", [g.node("Cast", [per_row], to=1),  # to float
                                    g.constant("embed_rows.block_shape", np.array([-1, k_blocks, block]))])
        last = g.constant("axis_last", np.array([-1]))
        scales = g.constant("embed_rows.scales", packed.scales.reshape(n, k_blocks).astype(np.float32))
        x = g.node("Mul", [blocks, g.node("Unsqueeze", [g.node("Gather", [scales, ids]), last])])
        if offset is not None:  # + the block's offset [T, K/b, 1]
            offset_rows = g.node("Gather", [g.constant("embed_rows.offset", offset.astype(np.float32)), ids])
            x = g.node("Add", [x, g.node("Unsqueeze", [offset_rows, last])])
        self.report.update(route=route, levels_from_bits=packed.bits, block=block, offset_term=offset is not None,
                           bytes=int(levels.nbytes + packed.scales.nbytes + (0 if offset is None else offset.nbytes)))
        return g.node("Reshape", [x, g.constant("embed_rows.row_shape", np.array([-1, packed.K]))])


@dataclass
class TiedEmbedding:
    """The embedding rows read from the lm_head's own MatMulNBits weight (`--embed tied`): a tied model
    (lm_head = embedding table) stores the table once; where the GGUF holds both quantized two ways, the
    lm_head's is kept (same_table_check makes sure they are one table). Gather takes a token's packed
    bytes, scales and zero points from the same initializers the lm_head multiplies with; the bytes are
    unpacked in float (_nibbles) and dequantized,
    (level - zero point) * scale, as MatMulNBits does. The rows carry the lm_head's precision (int4 with the
    balanced recipe: its levels were chosen for the lm_head's output, the rows' error is measured by the
    export's validation)."""

    lm_head: QuantizedLinear
    report: dict = field(default_factory=dict)

    def __call__(self, g, ids: str) -> str:
        head = "lm_head" if "lm_head" in g.weights else "embed"
        if head == "lm_head":
            self.report["table_rel_rms_diff"] = same_table_check(g.weights)
        if self.lm_head.high_rows.get(head):
            raise EdgespecError("--embed tied reads its rows from one lm_head table; this plan split the lm_head "
                                "into two precisions (plan it with split_lm_head=False)")
        packed, offset = self.lm_head.pack(head, record=False)
        if offset is not None:
            raise EdgespecError("--embed tied needs an lm_head without a per-block offset term; this GGUF's table "
                                "is Q4_1/Q4_K: use --embed quantized (or fp16)")
        f, k_blocks = self.lm_head.float_type, packed.K // packed.block
        # The names QuantizedLinear._emit gives the same arrays, so the lm_head reuses these initializers.
        blob = g.constant(f"{head}.qweight", packed.blob)  # [N, K/b, bytes per block]
        scales = g.constant(f"{head}.scales", packed.scales.astype(f))  # [N * K/b]
        last = g.constant("axis_last", np.array([-1]))
        stored = g.node("Cast", [g.node("Gather", [blob, ids])], to=1)  # [T, K/b, bytes]: float
        levels = g.node("Reshape", [_nibbles(g, stored), g.constant(f"block_shape.{k_blocks}.{packed.block}",
                                                                 np.array([-1, k_blocks, packed.block]))]) \
            if packed.bits == 4 else stored
        zero = _zero_point_rows(g, packed, head, ids, k_blocks, f)
        scale_rows = g.node("Gather", [scales, _block_indices(g, ids, k_blocks, "embed_rows.block_range")])
        if f != np.float32:
            scale_rows = g.node("Cast", [scale_rows], to=1)
        x = g.node("Mul", [g.node("Sub", [levels, zero]), g.node("Unsqueeze", [scale_rows, last])])
        self.report.update(route=f"tied: the lm_head's int{packed.bits} weight", levels_from_bits=packed.bits,
                           block=packed.block, offset_term=False, bytes=0,
                           shared_bytes=int(packed.blob.nbytes + packed.scales.nbytes + (
                               0 if packed.zero_points is None else packed.zero_points.nbytes)))
        return g.node("Reshape", [x, g.constant("embed_rows.row_shape", np.array([-1, packed.K]))])


TIED_TABLE_TOLERANCE = 0.2  # relative RMS; two quantizations of one table differ by ~0.04 (Q5_0/Q8_0) to ~0.08 (Q4_K/Q6_K)


def same_table_check(weights, sample: int = 64) -> float:
    """A GGUF may store a tied model's table twice, quantized two ways (qwen2.5's token_embd Q5_0 and output
    Q8_0). The rows are one table when they differ by quantization noise only; an untied model's differ
    by >= 1 (unrelated rows). -> the measured relative RMS difference; raises above the tolerance."""
    source = getattr(weights, "source", None)  # formats.LazyWeights: dequantize the sampled rows only
    n = source.shape("embed")[0] if hasattr(source, "shape") else len(weights["embed"])
    rows = np.linspace(0, n - 1, sample).astype(np.int64)

    def sampled(name):
        if hasattr(source, "rows"):
            return np.asarray(source.rows(name, rows), np.float32)
        return np.asarray(weights[name], np.float32)[rows]

    a, b = sampled("embed"), sampled("lm_head")
    diff = float(np.sqrt(np.mean((a - b) ** 2) / max(np.mean(b ** 2), 1e-30)))
    if diff > TIED_TABLE_TOLERANCE:
        raise EdgespecError(f"--embed tied needs the lm_head to be the embedding table; this model's differ by "
                            f"{diff:.2f} relative RMS (sampled rows), more than the {TIED_TABLE_TOLERANCE} of two "
                            "quantizations of one table: use --embed quantized")
    return round(diff, 4)


def _nibbles(g, stored: str) -> str:
    """Bytes as floats [..., n] -> their 4-bit halves [..., n, 2], low first (pack_nibbles' order):
    hi = floor(b / 16), lo = b - 16 hi, exact in float and made of ops every execution provider has."""
    sixteen = g.constant("embed_rows.sixteen", np.array(16, np.float32))
    last = g.constant("axis_last", np.array([-1]))
    high = g.node("Floor", [g.node("Div", [stored, sixteen])])
    low = g.node("Sub", [stored, g.node("Mul", [high, sixteen])])
    return g.node("Concat", [g.node("Unsqueeze", [low, last]), g.node("Unsqueeze", [high, last])], axis=-1)


def _block_indices(g, ids: str, per_row: int, name: str) -> str:
    """[T, per_row] flat indices id * per_row + j of a 1-D per-row array (scales, zero points): a Gather on
    the initializer as stored, where a Reshape of it could be constant-folded into a second copy."""
    row_starts = g.node("Mul", [g.node("Unsqueeze", [ids, g.constant("axis_last", np.array([-1]))]),
                                g.constant(f"{name}.stride", np.array(per_row, np.int64))])
    return g.node("Add", [row_starts, g.constant(name, np.arange(per_row, dtype=np.int64))])


def _zero_point_rows(g, packed: PackedInt4, head: str, ids: str, k_blocks: int, f) -> str:
    """Each gathered row's zero point per block, [T, K/b, 1] float: MatMulNBits' implied 8 / 128, its packed
    4-bit zero points (two per byte, low nibble first, a row's count rounded up to whole bytes), or floats."""
    zp = packed.zero_points
    if zp is None:
        return g.constant(f"embed_rows.zero_point.{packed.bits}", np.array(8 if packed.bits == 4 else 128, np.float32))
    last = g.constant("axis_last", np.array([-1]))
    if zp.dtype == np.uint8:
        per_row = -(-k_blocks // 2)
        stored = g.node("Cast", [g.node("Gather", [g.constant(f"{head}.zero_points", zp),
                                                   _block_indices(g, ids, per_row, "embed_rows.zp_range")])], to=1)
        flat = g.node("Reshape", [_nibbles(g, stored), g.constant(f"embed_rows.zp_shape.{2 * per_row}",
                                                     np.array([-1, 2 * per_row]))])
        rows = g.node("Slice", [flat, g.constant("embed_rows.zp_from", np.array([0])),
                                g.constant("embed_rows.zp_to", np.array([k_blocks])), last])
    else:
        rows = g.node("Gather", [g.constant(f"{head}.zero_points", zp.astype(f)),
                                 _block_indices(g, ids, k_blocks, "embed_rows.block_range")])
        if f != np.float32:
            rows = g.node("Cast", [rows], to=1)
    return g.node("Unsqueeze", [rows, last])


def _common_form(parts: list[tuple[PackedInt4, np.ndarray | None]]):
    """The parts in one MatMulNBits form (bits, block, K, zero point kind, offset term or not), or None.
    4-bit parts without zero points get explicit ones at the implied 8; parts without an offset term get
    zeros when another has one. Both leave every part's dequantized values as they were."""
    first = parts[0][0]
    if any((p.bits, p.block, p.K) != (first.bits, first.block, first.K) for p, _ in parts):
        return None
    kinds = {None if p.zero_points is None else p.zero_points.dtype for p, _ in parts}
    if len(kinds) > 1:
        if kinds != {None, np.dtype(np.uint8)} or first.bits != 4:
            return None
        parts = [(p if p.zero_points is not None else
                  replace(p, zero_points=pack_zero_points(np.full((p.N, p.K // p.block), 8, np.uint8))), o)
                 for p, o in parts]
    if any(o is not None for _, o in parts):
        parts = [(p, np.zeros((p.N, p.K // p.block), np.float32) if o is None else o) for p, o in parts]
    return parts


def offset_int8(offset: np.ndarray) -> PackedInt4:
    """A per-block offset term [N, K/block] as an int8 MatMulNBits weight (K = K/block inputs; rows padded
    with zeros to whole blocks of 16 or 32, which MatMulNBits allows)."""
    n, k = offset.shape
    block = 32 if k >= 32 else 16
    padded = np.zeros((n, -(-k // block) * block), np.float32)
    padded[:, :k] = offset
    q = quantize_int8(padded, block)
    return PackedInt4(n, k, block, q.blob, q.scales, None, 8)


def fold_offset(packed: PackedInt4, offset: np.ndarray) -> PackedInt4:
    """A 4-bit weight W [N, K] with its per-block offset term O [N, K/block] as one 4-bit weight over the
    input [x, s, s] (s: x's block sums, zero-padded to P, a whole number of blocks). O is quantized to levels
    v = round(O / d) in [-119, 119] per block of `block` groups (int8 as offset_int8, a scale 127/119 wider), and
    u = v + 136 in [17, 255] splits into two nibbles that are two 4-bit blocks at the implied zero point 8:
        d * v = 16 d * (hi - 8) + d * (lo - 8),   u = 16 hi + lo
    so the weight keeps its zero points as they are (none for Q4_1: no bytes added there)."""
    n, groups = offset.shape
    b = packed.block
    p = -(-groups // b) * b
    padded = np.zeros((n, p), np.float32)
    padded[:, :groups] = offset
    q = quantize_int8(padded, b, max_level=119)  # levels v + 128
    u, d = q.blob + 8, q.scales.reshape(n, p // b)
    k_blocks = packed.K // b
    zero_points = None
    if packed.zero_points is not None:
        levels = unpack_nibbles(packed.zero_points.reshape(n, -1))[:, :k_blocks]
        zero_points = pack_zero_points(np.concatenate([levels, np.full((n, 2 * (p // b)), 8, np.uint8)], axis=1))
    return PackedInt4(n, packed.K + 2 * p, b,
                      np.concatenate([packed.blob, pack_nibbles(u >> 4), pack_nibbles(u & 0x0F)], axis=1),
                      np.concatenate([packed.scales.reshape(n, k_blocks), 16 * d, d], axis=1).reshape(-1)
                      .astype(np.float32), zero_points, 4)


def _block_sums(g, x: str, packed: PackedInt4) -> str:
    """The sums of x [T, K] over each block of the weight's inputs: [T, K/block]."""
    b, groups = packed.block, packed.K // packed.block
    shape = g.constant(f"block_shape.{groups}.{b}", np.array([-1, groups, b]))
    return g.node("ReduceSum", [g.node("Reshape", [x, shape]), g.constant("axis_last", np.array([-1]))], keepdims=0)


def _with_block_sums(g, x: str, packed: PackedInt4) -> str:
    """[x, s, s] for fold_offset: s = the block sums of x [T, K/block], zero-padded to whole blocks."""
    b, groups = packed.block, packed.K // packed.block
    sums = _block_sums(g, x, packed)
    pad = -(-groups // b) * b - groups
    if pad:
        sums = g.node("Pad", [sums, g.constant(f"pad_end.{pad}", np.array([0, pad])), "",
                              g.constant("axis_last", np.array([-1]))])
    return g.node("Concat", [x, sums, sums], axis=-1)


def offset_bytes(offset: np.ndarray | None, int8: bool) -> int:
    if offset is None:
        return 0
    if not int8:
        return offset.nbytes
    q = offset_int8(offset)
    return q.blob.nbytes + q.scales.nbytes


def reblock_int8(packed: PackedInt4, offset: np.ndarray | None, block: int) -> PackedInt4:
    """An int8 weight (with its per-group offset term, if any) as symmetric int8 in the widest blocks of at most
    `block` inputs that divide K."""
    weight = dequantize(packed)
    if offset is not None:  # [N, K/group] -> every input of its group
        weight += np.repeat(offset, packed.K // offset.shape[1], axis=1)
    return quantize_int8(weight, _widest(packed, block))


def _widest(packed: PackedInt4, block: int) -> int:
    return max(b for b in BLOCK_SIZES if packed.block <= b <= block and packed.K % b == 0)


def _unpermute(rows: np.ndarray, config, canonical: str) -> np.ndarray:
    """The GGUF reader's llama Q/K row un-permutation, for any per-row data [N, ...]."""
    kind = canonical.rsplit(".", 1)[-1]
    if config.architecture != "llama" or kind not in ("q", "k"):
        return rows
    heads = config.num_heads if kind == "q" else config.num_kv_heads
    return family(config.architecture).names.unpermute_qk(rows.reshape(rows.shape[0], -1), heads).reshape(rows.shape)


def _permute_rows(p: PackedInt4, config, canonical: str) -> PackedInt4:
    def rows(a: np.ndarray) -> np.ndarray:
        return _unpermute(a.reshape(p.N, -1), config, canonical).reshape(a.shape)

    zp = None if p.zero_points is None else rows(p.zero_points)
    return PackedInt4(p.N, p.K, p.block, rows(p.blob), rows(p.scales), zp, p.bits)

