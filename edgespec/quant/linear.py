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
from dataclasses import dataclass, field

import numpy as np
from ..models import family
from ..formats.quants import is_block_format
from .ggml_blocks import to_matmulnbits
from .int4 import PackedInt4, error_report, quantize, quantize_int8

log = logging.getLogger(__name__)

INT8_WEIGHT_ACCURACY_LEVEL = 4


@dataclass
class QuantizedLinear:
    """Callable Linear strategy: (builder, input [T, K], canonical weight, output) -> MatMulNBits."""

    source: object  # a weights source (formats.open_weights)
    bits: int = 4
    block: int = 32
    accuracy_level: int = 4
    symmetric: bool = False
    keep_gguf_blocks: bool = True  # False: dequantize and requantize even GGUF block weights
    report: dict[str, dict] = field(default_factory=dict)

    def __call__(self, g, x: str, canonical: str, out: str) -> None:
        packed, offset = self.pack(canonical)
        self._emit(g, x, canonical, packed, offset, out)

    def stack(self, g, x: str, canonicals: list[str], out: str, biases: list[str] | None = None) -> bool:
        """Several weights on the same input as one MatMulNBits over their rows stacked (q/k/v, gate/up):
        one kernel call instead of several. False when their formats differ (then nothing is added)."""
        parts = [self.pack(canonical) for canonical in canonicals]
        first, first_offset = parts[0]
        def form(p, offset):
            zp = None if p.zero_points is None else p.zero_points.dtype
            return p.bits, p.block, p.K, zp, offset is None
        if any(form(p, o) != form(first, first_offset) for p, o in parts):
            return False
        stacked = PackedInt4(sum(p.N for p, _ in parts), first.K, first.block,
                             np.concatenate([p.blob for p, _ in parts]),
                             np.concatenate([p.scales for p, _ in parts]),
                             None if first.zero_points is None else np.concatenate([p.zero_points for p, _ in parts]),
                             first.bits)
        offset = None if first_offset is None else np.concatenate([o for _, o in parts])
        name = "+".join(canonicals)
        bias = None if biases is None else \
            g.constant(name + ".bias", np.concatenate([np.asarray(g.weights[b], np.float32) for b in biases]))
        self._emit(g, x, name, stacked, offset, out, bias)
        return True

    def _emit(self, g, x: str, name: str, packed: PackedInt4, offset: np.ndarray | None, out: str,
              bias: str | None = None) -> None:
        inputs = [x, g.constant(name + ".qweight", packed.blob), g.constant(name + ".scales", packed.scales),
                  "" if packed.zero_points is None else g.constant(name + ".zero_points", packed.zero_points),
                  "", "" if bias is None else bias]  # A, B, scales, zero_points, g_idx, bias
        while inputs[-1] == "":
            inputs.pop()
        main = out if offset is None else g.fresh("matmulnbits")
        g.node("MatMulNBits", inputs, [main], domain="com.microsoft", K=packed.K, N=packed.N, bits=packed.bits,
               block_size=packed.block, accuracy_level=self.level_for(packed.bits))
        if offset is not None:  # + (block sums of x) @ offset^T
            k_blocks = packed.K // packed.block
            shape = g.constant(f"block_shape.{k_blocks}.{packed.block}", np.array([-1, k_blocks, packed.block]))
            sums = g.node("ReduceSum", [g.node("Reshape", [x, shape]), g.constant("axis_last", np.array([-1]))],
                          keepdims=0)
            correction = g.node("MatMul", [sums, g.constant(name + ".block_offset", offset.T.copy())])
            g.node("Add", [main, correction], [out])

    def level_for(self, bits: int) -> int:
        """The accuracy level asked for applies to int4 weights. int8 weights keep int8 activations (4):
        onnxruntime's CPU kernel has no fp32-activation path for them and dequantizes the whole weight on
        every call (smollm2's int8 lm_head at level 0: 152 -> 12 tok/s)."""
        return self.accuracy_level if bits == 4 else INT8_WEIGHT_ACCURACY_LEVEL

    def pack(self, canonical: str) -> tuple[PackedInt4, np.ndarray | None]:
        """(packed weight, per-block offset [N, K/block] or None)."""
        raw = self.source.raw(canonical) if hasattr(self.source, "raw") else None
        if raw is not None and is_block_format(raw.qtype) and self.keep_gguf_blocks:
            packed, offset = to_matmulnbits(raw.data, raw.qtype, raw.shape, canonical)
            packed = _permute_rows(packed, self.source.config, canonical)
            if offset is not None:
                offset = _unpermute(offset, self.source.config, canonical)
            self.report[canonical] = {"route": f"{raw.qtype.name} levels kept", "bits": packed.bits,
                                      "block": packed.block, "offset_term": offset is not None}
            return packed, offset
        weight = self.source.tensor(canonical)
        packed = quantize(weight, self.block, self.symmetric) if self.bits == 4 else quantize_int8(weight, self.block)
        self.report[canonical] = {"route": f"{raw.qtype.name if raw else 'float'} requantized", "bits": packed.bits,
                                  **error_report(weight, packed)}
        return packed, None


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

