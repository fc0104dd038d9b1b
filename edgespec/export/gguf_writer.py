"""`edgespec export --format gguf`: a GGUF file llama.cpp loads, from a GGUF or an HF directory.

Weights are written in llama.cpp's layout (llama Q/K rows permuted back to its
interleaved RoPE order) as Q8_0, Q4_0, F16 or F32; 1-D tensors stay F32 and,
in quantized files, the embedding and output matrices Q8_0. From
a GGUF source the metadata (tokenizer included) is copied; from an HF directory
it is built from config.json and tokenizer.json.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as Q

from ..errors import EdgespecError, TokenizerError
from ..models import family
from ..progress import Progress
from ..tokenizer import PRE_TOKENIZER_REGEXES, Tokenizer

log = logging.getLogger(__name__)

GGUF_TYPES = {"Q8_0": (Q.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0), "Q4_0": (Q.Q4_0, gguf.LlamaFileType.MOSTLY_Q4_0),
              "F16": (Q.F16, gguf.LlamaFileType.MOSTLY_F16), "F32": (Q.F32, gguf.LlamaFileType.ALL_F32)}
_SKIP_KEYS = ("GGUF.", "general.architecture", "general.file_type", "general.quantization_version")
# The regex HF's Qwen2 tokenizer.json carries, which llama.cpp adapts for its own engine.
_HF_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
             r"|\s+(?!\S)|\s+")
_TOKEN_NORMAL, _TOKEN_CONTROL, _TOKEN_USER_DEFINED, _TOKEN_UNUSED = 1, 3, 4, 5


def write_gguf(ref, source, path: Path, type_name: str) -> dict:
    """Write `source` (an opened weights file of `ref`) to `path`; returns a small report."""
    if type_name not in GGUF_TYPES:
        raise EdgespecError(f"GGUF type '{type_name}' is not supported for writing; choose one of {list(GGUF_TYPES)}")
    qtype, file_type = GGUF_TYPES[type_name]
    config = source.config
    writer = gguf.GGUFWriter(str(path), config.architecture)
    if ref.kind == "gguf":
        for key, value in source.metadata.items():
            if not key.startswith(_SKIP_KEYS):
                field = source.field(key)
                sub_type = field.types[1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
                writer.add_key_value(key, value, field.types[0], sub_type=sub_type)
    else:
        _add_config(writer, config)
        _add_tokenizer(writer, Tokenizer.from_hf_dir(ref.path), config.vocab_size)
    writer.add_file_type(int(file_type))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    names = family(config.architecture).names
    counts: dict[str, int] = {}
    with Progress(len(source.names()), f"writing {path.name}", unit="tensors") as bar:
        for canonical in source.names():
            value = source.tensor(canonical)
            kind = canonical.rsplit(".", 1)[-1]
            if config.architecture == "llama" and kind in ("q", "k", "q_bias", "k_bias"):
                value = names.permute_qk(value, config.num_heads if kind.startswith("q") else config.num_kv_heads)
            name = names.from_canonical(canonical, names.GGUF)
            if value.ndim == 1 or qtype == Q.F32:
                writer.add_tensor(name, value.astype(np.float32))
                counts["F32"] = counts.get("F32", 0) + 1
            elif qtype == Q.F16:
                writer.add_tensor(name, value.astype(np.float16))
                counts["F16"] = counts.get("F16", 0) + 1
            else:
                # As llama.cpp's own quantize does, the vocabulary matrices keep more bits (Q8_0).
                tensor_type = Q.Q8_0 if canonical in ("embed", "lm_head") else qtype
                writer.add_tensor(name, gguf.quants.quantize(value, tensor_type), raw_dtype=tensor_type)
                counts[tensor_type.name] = counts.get(tensor_type.name, 0) + 1
            bar.update(1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"gguf_type": type_name, "tensors": counts}


def _add_config(writer, c) -> None:
    writer.add_block_count(c.num_layers)
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(c.num_heads)
    writer.add_head_count_kv(c.num_kv_heads)
    writer.add_rope_freq_base(c.rope_theta)
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_vocab_size(c.vocab_size)
    writer.add_rope_dimension_count(c.head_dim)
    if c.rope_scaling.kind == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(c.rope_scaling.factor)
    elif c.rope_scaling.kind != "none":
        raise EdgespecError(f"writing rope scaling '{c.rope_scaling.kind}' to GGUF is not supported yet")


def _add_tokenizer(writer, tokenizer: Tokenizer, vocab_size: int) -> None:
    """llama.cpp's gpt2-style BPE metadata from a tokenizers tokenizer (padded to the model's vocab)."""
    spec = json.loads(tokenizer.hf.to_str())
    if spec["model"]["type"] != "BPE":
        raise TokenizerError(f"only BPE tokenizers can be written to GGUF, this one is {spec['model']['type']}")
    pre = _pre_name(spec.get("pre_tokenizer") or {})
    added = {t["id"]: t for t in spec.get("added_tokens", [])}
    by_id = {i: t for t, i in tokenizer.hf.get_vocab(with_added_tokens=True).items()}
    tokens, types = [], []
    for i in range(vocab_size):
        if i in by_id:
            tokens.append(by_id[i])
            types.append(_TOKEN_NORMAL if i not in added else
                         _TOKEN_CONTROL if added[i].get("special") else _TOKEN_USER_DEFINED)
        else:  # the embedding has rows the tokenizer never emits (Qwen pads its vocabulary)
            tokens.append(f"[PAD{i}]")
            types.append(_TOKEN_UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    if tokenizer.bos_id is not None:
        writer.add_bos_token_id(tokenizer.bos_id)
    if tokenizer.eos_id is not None:
        writer.add_eos_token_id(tokenizer.eos_id)
    writer.add_add_bos_token(tokenizer.add_bos)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def _pre_name(pre: dict) -> str:
    """The llama.cpp pre-tokenizer name whose regexes this tokenizer.json splits with."""
    steps = pre.get("pretokenizers", [pre])
    regexes = tuple(s["pattern"].get("Regex") for s in steps if s.get("type") == "Split")
    for name, known in PRE_TOKENIZER_REGEXES.items():
        if regexes == known:
            return name
    if regexes == (_HF_QWEN2,):
        return "qwen2"
    raise TokenizerError(f"cannot tell which llama.cpp pre-tokenizer matches split regexes {regexes}; "
                         f"supported: {', '.join(PRE_TOKENIZER_REGEXES)}")
