"""ModelConfig: the one description of a model's shape that every part shares.

Built from GGUF metadata or an HF config.json; unknown keys are ignored, an
unsupported value raises a typed error that names it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import UnsupportedArchitectureError

# GGUF architecture name <- HF model_type / architectures[0].
HF_TO_GGUF_ARCH = {
    "llama": "llama",
    "LlamaForCausalLM": "llama",
    "qwen2": "qwen2",
    "Qwen2ForCausalLM": "qwen2",
}
# The architectures whose hyperparameters this module reads. The model-family registry (models/) must
# implement exactly these; tests/test_models_reference.py checks that, so config needs no registry.
SUPPORTED_ARCHITECTURES = tuple(sorted(set(HF_TO_GGUF_ARCH.values())))


@dataclass(frozen=True)
class RopeScaling:
    """RoPE frequency scaling. kind: 'none', 'linear', 'llama3' or 'yarn' (not yet)."""

    kind: str = "none"
    factor: float = 1.0
    original_max_position: int = 0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0


@dataclass(frozen=True)
class ModelConfig:
    architecture: str  # canonical name, the GGUF one: "llama", "qwen2"
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling = field(default_factory=RopeScaling)
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # Qwen2: bias on q, k, v projections

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ModelConfig":
        """Build from our own serialized form (the manifest); unknown keys ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in values.items() if k in names}
        if isinstance(kwargs.get("rope_scaling"), Mapping):
            kwargs["rope_scaling"] = RopeScaling(**kwargs["rope_scaling"])
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_gguf(cls, metadata: Mapping[str, Any], tensor_names: frozenset[str] = frozenset()) -> "ModelConfig":
        """metadata: GGUF key -> python value. tensor_names tells tied embeddings apart."""
        arch = metadata.get("general.architecture")
        _check_arch(arch, "GGUF general.architecture")

        def get(key: str, default: Any = None) -> Any:
            value = metadata.get(f"{arch}.{key}", default)
            if value is None:
                raise UnsupportedArchitectureError(f"GGUF metadata lacks '{arch}.{key}', which a {arch} model needs")
            return value

        hidden = int(get("embedding_length"))
        heads = int(get("attention.head_count"))
        vocab = metadata.get(f"{arch}.vocab_size") or len(metadata.get("tokenizer.ggml.tokens", ()))
        scaling = RopeScaling()
        kind = metadata.get(f"{arch}.rope.scaling.type")
        if kind not in (None, "none"):
            scaling = _rope_scaling(kind, metadata.get(f"{arch}.rope.scaling.factor", 1.0),
                                    metadata.get(f"{arch}.rope.scaling.original_context_length", 0))
        head_dim = int(metadata.get(f"{arch}.attention.key_length") or metadata.get(f"{arch}.rope.dimension_count") or hidden // heads)
        return cls(
            architecture=arch,
            vocab_size=int(vocab),
            hidden_size=hidden,
            intermediate_size=int(get("feed_forward_length")),
            num_layers=int(get("block_count")),
            num_heads=heads,
            num_kv_heads=int(get("attention.head_count_kv", heads)),
            head_dim=head_dim,
            rms_norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-6)),
            rope_theta=float(get("rope.freq_base", 10000.0)),
            rope_scaling=scaling,
            max_position_embeddings=int(get("context_length", 4096)),
            tie_word_embeddings=bool(tensor_names) and "output.weight" not in tensor_names,
            attention_bias="blk.0.attn_q.bias" in tensor_names,
        )

    @classmethod
    def from_hf(cls, config: Mapping[str, Any]) -> "ModelConfig":
        """config: the dict of an HF config.json."""
        model_type = config.get("model_type") or (config.get("architectures") or [None])[0]
        arch = HF_TO_GGUF_ARCH.get(model_type)
        if arch is None:
            arch = HF_TO_GGUF_ARCH.get((config.get("architectures") or [None])[0])
        _check_arch(arch or model_type, "config.json model_type")
        heads = int(config["num_attention_heads"])
        hidden = int(config["hidden_size"])
        scaling = RopeScaling()
        rs = config.get("rope_scaling")
        if rs:
            kind = rs.get("rope_type") or rs.get("type")
            scaling = _rope_scaling(kind, rs.get("factor", 1.0), rs.get("original_max_position_embeddings", 0),
                                    rs.get("low_freq_factor", 1.0), rs.get("high_freq_factor", 4.0))
        return cls(
            architecture=arch,
            vocab_size=int(config["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(config["intermediate_size"]),
            num_layers=int(config["num_hidden_layers"]),
            num_heads=heads,
            num_kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or hidden // heads),
            rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
            rope_theta=float(config.get("rope_theta", 10000.0)),
            rope_scaling=scaling,
            max_position_embeddings=int(config.get("max_position_embeddings", 4096)),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            attention_bias=bool(config.get("attention_bias", arch == "qwen2")),
        )


SUPPORTED_ROPE_SCALING = ("none", "linear", "llama3")


def _rope_scaling(kind: str | None, factor: float, original: int, low: float = 1.0, high: float = 4.0) -> RopeScaling:
    kind = kind or "none"
    if kind == "default":
        kind = "none"
    if kind not in SUPPORTED_ROPE_SCALING:
        raise UnsupportedArchitectureError(
            f"rope scaling type '{kind}' is not supported; supported: {', '.join(SUPPORTED_ROPE_SCALING)}")
    return RopeScaling(kind=kind, factor=float(factor), original_max_position=int(original or 0),
                       low_freq_factor=float(low), high_freq_factor=float(high))


def _check_arch(arch: str | None, where: str) -> None:
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedArchitectureError(
            f"unknown architecture '{arch}' (from {where}); supported: {', '.join(SUPPORTED_ARCHITECTURES)}")
