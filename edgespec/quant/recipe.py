"""Export recipes: data that says how each weight is stored.

A recipe names a bytes-per-token budget relative to the all-int4 equivalent of the model
(every projection and the lm_head asymmetric int4, block 32: what onnxruntime-genai's
builder makes with `-p int4`). The planner (export/precision.py) starts from every
requantizable weight at GPTQ int4 and keeps the GGUF's own levels (int8 for 5..8-bit
formats, int4 + offset term for Q4_1/Q4_K) for the groups whose measured KL to the fp32
reference per extra byte is largest, while the budget holds. Q4_0, Q4_1 and Q4_K weights always
keep their levels (exact; Q4_0 smaller than asymmetric int4, Q4_1/Q4_K 1.03x it with the offset term).

    faithful  every GGUF level kept, lm_head int8 (no requantization; 1.4-1.7x the bytes)
    balanced  <= 1.09x the all-int4 bytes, the lm_head planned in row segments (the default: the issue's bar is 1.1x onnxruntime-genai's int4
              model, whose bytes differ from this count by up to 0.7% (qwen 1.5b: 982 vs 989 MB); at 1.1x
              1.5b's plan read 1.102x genai's)
    fast      all-int4 bytes (plus the offset terms of kept Q4_1/Q4_K levels)

Other recipes (a web preset, a phone preset) are more entries in RECIPES.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import EdgespecError
from .linear import offset_bytes


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    budget: float | None  # bytes per token / all-int4 bytes; None: keep every GGUF level (no planning)
    calib_tokens: int = 1024  # tokens whose activations give GPTQ its Hessians (GPTQ for weights with <= this many inputs)
    kl_tokens: int = 64  # tokens over which each group's int4 cost (KL to the reference) is measured
    top_k: int = 32  # KL over the union of the reference's top_k tokens of every row (renormalized)
    # lm_head row segments planned apart (export/precision.py): a prefix of the vocabulary may keep the high
    # route while the other rows are int4
    lm_head_rows: tuple[int, ...] = (2048, 8192, 32768)

    def as_dict(self) -> dict:
        return asdict(self)


RECIPES = {r.name: r for r in (
    Recipe("faithful", "every GGUF level kept (int8 for 5..8-bit weights and the lm_head): the reference's "
                       "perplexity, 1.4-1.7x the bytes per token of all-int4", None),
    Recipe("balanced", "GPTQ int4 where the measured KL cost per byte is lowest, GGUF levels kept elsewhere, "
                       "within 1.09x the all-int4 bytes per token", 1.09),
    Recipe("fast", "every weight GPTQ int4 but the 4-bit GGUF levels (kept exact): about the all-int4 bytes per "
                   "token", 1.0),
)}
DEFAULT_RECIPE = "balanced"
CALIBRATION_VERSION = 4  # bump when GPTQ or the KL measurement changes: cached calibrations are then redone


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise EdgespecError(f"recipe '{name}' is not known; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


def int4_bytes(n: int, k: int, block: int = 32) -> int:
    """Bytes of an asymmetric int4 MatMulNBits weight [n, k]: levels, fp32 scales, 4-bit zero points."""
    blocks = k // block
    return n * (k // 2 + 4 * blocks + (blocks + 1) // 2)


def packed_bytes(packed, offset=None, int8_offsets: bool = True) -> int:
    """Bytes a MatMulNBits weight (and its per-block offset term, if any) reads per token."""
    total = packed.blob.nbytes + packed.scales.nbytes
    if packed.zero_points is not None:
        total += packed.zero_points.nbytes
    return total + offset_bytes(offset, int8_offsets)
