"""Export recipes: data that says how each weight is stored.

A recipe names a bytes-per-token budget relative to onnxruntime-genai's int4 model of the same weights
(its builder's `-p int4`: every projection and the lm_head symmetric int4, block 32, fp32 scales, no zero
points; fp32 RoPE caches over the model's whole context), as `edgespec bench` counts bytes: every weight a
decode step reads but the embedding table (peer_int4_bytes; measured against the builder's own models,
onnxruntime-genai 0.18.0: smollm2-135m 86.29 MB estimated / 86.51 counted, qwen2.5-coder-0.5b 317.40 / 317.59,
qwen2.5-coder-1.5b 982.09 / 982.31; the rest is its model.onnx). The planner (export/precision.py) starts from
every requantizable weight at GPTQ int4 and keeps the GGUF's own levels (int8 for 5..8-bit formats, in blocks
of 128 on the CPU: INT8_BLOCK; int4 + offset term for Q4_1/Q4_K) for the groups whose measured KL to the fp32
reference per extra byte is largest, while the budget holds. Q4_0, Q4_1 and Q4_K weights always keep their
levels (exact; Q4_0 smaller than asymmetric int4, Q4_1/Q4_K 1.03x it with the offset term).

    faithful  every GGUF level kept, lm_head int8 (no requantization; 1.4-1.7x the bytes)
    balanced  <= 1.0975x onnxruntime-genai's bytes per token, the lm_head planned in row segments (the default:
              the issue's bar is 1.1x; the margin covers the estimate's error: 0.2-0.4 MB)
    fast      the least this export format reads: every requantizable weight int4 (asymmetric, so 1.025x
              genai's symmetric bytes) plus the offset terms of kept Q4_1/Q4_K levels
    compact   fast with symmetric int4 (genai's format) within genai's bytes: the recipe that reads no more
              than genai's model where the model's exact 4-bit GGUF levels leave room (qwen2.5-coder-0.5b; not
              smollm2 or 1.5b, whose Q4_1 / Q4_K weights alone read more than genai's symmetric int4)

Until 2026-12-06 the budget was 1.09x our own asymmetric all-int4 count, which let smollm2-135m's plan read
1.103x genai's model (its symmetric layers are 2.4% smaller than ours, and our RoPE table is a larger share
of a small model): the bar was then checked against our count of genai's recipe, not genai's model.
Other recipes (a web preset, a phone preset) are more entries in RECIPES.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import EdgespecError
from .linear import fold_offset, offset_bytes


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    budget: float | None  # bytes per token / onnxruntime-genai's int4 bytes; None: every GGUF level kept (no plan)
    calib_tokens: int = 1024  # tokens whose activations give GPTQ its Hessians (GPTQ for weights with <= this many inputs)
    kl_tokens: int = 64  # tokens over which each group's int4 cost (KL to the reference) is measured
    top_k: int = 32  # KL over the union of the reference's top_k tokens of every row (renormalized)
    # lm_head row segments planned apart (export/precision.py): a prefix of the vocabulary may keep the high
    # route while the other rows are int4
    lm_head_rows: tuple[int, ...] = (2048, 8192, 32768)
    symmetric: bool = False  # requantized weights as symmetric int4 (no zero points: onnxruntime-genai's format)

    def as_dict(self) -> dict:
        return asdict(self)


RECIPES = {r.name: r for r in (
    Recipe("faithful", "every GGUF level kept (int8 for 5..8-bit weights and the lm_head): the reference's "
                       "perplexity, 1.4-1.7x the bytes per token of all-int4", None),
    Recipe("balanced", "GPTQ int4 where the measured KL cost per byte is lowest, GGUF levels kept elsewhere, "
                       "within 1.0975x the bytes per token of onnxruntime-genai's int4 model", 1.0975),
    Recipe("fast", "every weight GPTQ int4 but the 4-bit GGUF levels (kept exact): about the all-int4 bytes per "
                   "token", 1.0),
    # symmetric int4 leaves room for the lm_head's frequent rows at their GGUF levels within genai's bytes (the
    # estimate of genai's bytes is 0.2 MB under what the bench counts of its three models: 1.0 is not more)
    Recipe("compact", "every weight symmetric GPTQ int4 (onnxruntime-genai's format) but the 4-bit GGUF levels "
                      "(kept exact), within the bytes per token of onnxruntime-genai's int4 model", 1.0,
           symmetric=True),
)}
DEFAULT_RECIPE = "balanced"
# bump when a recipe plans differently from the same calibration, or the default export stores a weight otherwise:
# cached exports are remade (5: the embedding table as the GGUF's own levels, export/pipeline.py::default_embed)
RECIPE_VERSION = 5
# The planned recipes' raised 5..8-bit GGUF levels as int8 in blocks of up to this many inputs, on the CPU (see
# QuantizedLinear.int8_block): qwen 0.5b's default raises five layers instead of three within the same bytes
INT8_BLOCK = 128
CALIBRATION_VERSION = 4  # bump when GPTQ or the KL measurement changes: cached calibrations are then redone


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise EdgespecError(f"recipe '{name}' is not known; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


def int4_bytes(n: int, k: int, block: int = 32, zero_points: bool = True) -> int:
    """Bytes of an int4 MatMulNBits weight [n, k]: levels, fp32 scales, 4-bit zero points (asymmetric)."""
    blocks = k // block
    return n * (k // 2 + 4 * blocks + ((blocks + 1) // 2 if zero_points else 0))


def peer_int4_bytes(shapes, config) -> int:
    """Bytes per token of onnxruntime-genai's `-p int4` model of these weights, as the bench counts them:
    `shapes` ([n, k] of every projection and the lm_head) symmetric int4 block 32 with fp32 scales, its RoPE
    cos/sin caches (fp32, the model's whole context, half the head dim), the norms and q/k/v biases (fp32)."""
    matmuls = sum(n * (k // 2 + 4 * (k // 32)) for n, k in shapes)
    return matmuls + 2 * rope_bytes(config, config.max_position_embeddings) + norm_bias_bytes(config)


def rope_bytes(config, positions: int) -> int:
    """One fp32 RoPE table (cos or sin) over `positions`."""
    return positions * (config.head_dim // 2) * 4


def norm_bias_bytes(config) -> int:
    norms = (2 * config.num_layers + 1) * config.hidden_size
    biases = config.num_layers * (config.num_heads + 2 * config.num_kv_heads) * config.head_dim \
        if config.attention_bias else 0
    return 4 * (norms + biases)


def packed_bytes(packed, offset=None, int8_offsets: bool = True, fold: bool = False) -> int:
    """Bytes a MatMulNBits weight (and its per-block offset term, if any) reads per token.
    fold: the offset term is folded into the weight (linear.fold_offset)."""
    if fold and offset is not None:
        packed, offset = fold_offset(packed, offset), None
    total = packed.blob.nbytes + packed.scales.nbytes
    if packed.zero_points is not None:
        total += packed.zero_points.nbytes
    return total + offset_bytes(offset, int8_offsets)
