"""Weight readers: dequantizers against the gguf package, bad files, HF == GGUF."""

from __future__ import annotations

import dataclasses
import json

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q

from edgespec.errors import ModelFormatError, UnsupportedArchitectureError, UnsupportedQuantError
from edgespec.formats import open_weights
from edgespec.models.llama import names
from edgespec.formats.gguf import open_gguf
from edgespec.formats.hf import write_safetensors
from edgespec.formats.quants import SUPPORTED_TYPES, dequantize
from edgespec.models import reference_model_class

from .tiny import TINY_CONFIGS, random_weights

QUANTIZABLE = [Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.BF16]  # gguf.quants can make these itself
RANDOM_BLOCKS = [Q.Q4_K, Q.Q5_K, Q.Q6_K]  # random bytes with sane f16 scales


@pytest.mark.parametrize("qtype", QUANTIZABLE, ids=lambda t: t.name)
def test_dequantize_matches_gguf_on_quantized_values(qtype):
    w = np.random.default_rng(0).standard_normal((8, 256)).astype(np.float32)
    raw = gguf.quants.quantize(w, qtype)
    expected = gguf.quants.dequantize(raw, qtype)
    np.testing.assert_array_equal(dequantize(raw, qtype, w.shape), expected)


@pytest.mark.parametrize("qtype", RANDOM_BLOCKS, ids=lambda t: t.name)
def test_dequantize_matches_gguf_on_random_blocks(qtype):
    block_values, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 256, (16, block_bytes), dtype=np.uint8)
    scale = rng.uniform(0.001, 0.1, (16, 2)).astype(np.float16).view(np.uint8)
    if qtype == Q.Q6_K:  # f16 d is the last field
        raw[:, -2:] = scale[:, :2]
    else:  # f16 d, f16 dmin come first
        raw[:, :4] = scale
    expected = gguf.quants.dequantize(raw, qtype).reshape(16, block_values)
    np.testing.assert_array_equal(dequantize(raw, qtype, (16, block_values)), expected)


@pytest.mark.parametrize("model_fixture", ["smollm2_gguf", "qwen05_gguf"])
def test_dequantize_real_tensors_bit_exact(model_fixture, request):
    reader = gguf.GGUFReader(request.getfixturevalue(model_fixture))
    seen = {}
    for t in reader.tensors:
        if t.tensor_type not in seen:
            seen[t.tensor_type] = t
    for qtype, t in seen.items():
        shape = tuple(int(d) for d in reversed(t.shape))
        ours = dequantize(np.asarray(t.data), qtype, shape, t.name)
        np.testing.assert_array_equal(ours, gguf.quants.dequantize(t.data, qtype).reshape(shape), err_msg=t.name)
    print(model_fixture, sorted(q.name for q in seen))


def test_unsupported_quant_type_names_tensor_and_type():
    with pytest.raises(UnsupportedQuantError, match=r"'blk.0.x'.*IQ2_XXS.*supported: F32"):
        dequantize(np.zeros(66, np.uint8), Q.IQ2_XXS, (256,), "blk.0.x")
    assert "Q4_K" in SUPPORTED_TYPES


def write_tiny_gguf(path, config, weights, arch=None, extra_tensor=None, quantized=None):
    """A llama-family GGUF as convert_hf_to_gguf writes it (Q/K permuted for llama); quantized: canonical
    name -> GGMLQuantizationType for weights stored in that format (gguf.quants makes the blocks)."""
    quantized = quantized or {}
    arch = arch or config.architecture
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(config.num_layers)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(config.num_heads)
    w.add_head_count_kv(config.num_kv_heads)
    w.add_rope_freq_base(config.rope_theta)
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    w.add_vocab_size(config.vocab_size)
    for name, value in weights.items():
        kind = name.rsplit(".", 1)[-1]
        if arch == "llama" and kind in ("q", "k"):
            value = names.permute_qk(value, config.num_heads if kind == "q" else config.num_kv_heads)
        if name in quantized:
            w.add_tensor(names.from_canonical(name, names.GGUF), gguf.quants.quantize(value, quantized[name]),
                         raw_dtype=quantized[name])
        else:
            w.add_tensor(names.from_canonical(name, names.GGUF), value)
    if extra_tensor:
        w.add_tensor(*extra_tensor[:2], raw_dtype=extra_tensor[2])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_tiny_hf(directory, config, weights):
    directory.mkdir()
    hf_config = {"model_type": config.architecture, "vocab_size": config.vocab_size,
                 "hidden_size": config.hidden_size, "intermediate_size": config.intermediate_size,
                 "num_hidden_layers": config.num_layers, "num_attention_heads": config.num_heads,
                 "num_key_value_heads": config.num_kv_heads, "rms_norm_eps": config.rms_norm_eps,
                 "rope_theta": config.rope_theta, "max_position_embeddings": config.max_position_embeddings,
                 "tie_word_embeddings": config.tie_word_embeddings}
    (directory / "config.json").write_text(json.dumps(hf_config))
    (directory / "tokenizer.json").write_text("{}")
    write_safetensors(directory / "model.safetensors",
                      {names.from_canonical(n, names.HF): v for n, v in weights.items()})


@pytest.mark.parametrize("arch", sorted(TINY_CONFIGS))
def test_hf_and_gguf_readers_agree(arch, tmp_path):
    config = TINY_CONFIGS[arch]
    weights = random_weights(config)
    write_tiny_gguf(tmp_path / "m.gguf", config, weights)
    write_tiny_hf(tmp_path / "hf", config, weights)
    from_gguf, from_hf = open_weights(tmp_path / "m.gguf"), open_weights(tmp_path / "hf")
    as_f32 = dataclasses.replace(config, rms_norm_eps=float(np.float32(config.rms_norm_eps)))  # GGUF stores f32
    assert from_gguf.config == as_f32
    assert from_hf.config == config
    assert sorted(from_gguf.names()) == sorted(from_hf.names()) == sorted(weights)
    for name, value in weights.items():
        np.testing.assert_array_equal(from_gguf.tensor(name), value, err_msg=name)
        np.testing.assert_array_equal(from_hf.tensor(name), value, err_msg=name)
    tokens = np.arange(10) % config.vocab_size
    cls = reference_model_class(arch)
    np.testing.assert_array_equal(cls.from_source(from_gguf).forward(tokens), cls.from_source(from_hf).forward(tokens))


def test_not_a_gguf(tmp_path):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"\x89PNG not a model")
    with pytest.raises(ModelFormatError, match=r"not a GGUF file: it starts with b'\\x89PNG', expected b'GGUF'"):
        open_gguf(bad)


def test_truncated_gguf(tmp_path, smollm2_gguf):
    cut = tmp_path / "cut.gguf"
    with open(smollm2_gguf, "rb") as f:
        cut.write_bytes(f.read(5_000_000))
    with pytest.raises(ModelFormatError, match="truncated.*5,000,000"):
        open_gguf(cut)


def test_unknown_architecture(tmp_path):
    config = TINY_CONFIGS["llama"]
    write_tiny_gguf(tmp_path / "m.gguf", config, random_weights(config), arch="mamba")
    with pytest.raises(UnsupportedArchitectureError, match="'mamba'.*supported: llama, qwen2"):
        open_gguf(tmp_path / "m.gguf")


def test_unsupported_tensor_type_in_file(tmp_path):
    config = TINY_CONFIGS["llama"]
    weights = random_weights(config)
    # one IQ2_XXS block (66 bytes = 256 values) per row; the type is checked before shapes
    bad = ("blk.0.ffn_up.weight", np.zeros((config.intermediate_size, 66), np.uint8), Q.IQ2_XXS)
    del weights["layers.0.up"]
    write_tiny_gguf(tmp_path / "m.gguf", TINY_CONFIGS["llama"], weights, extra_tensor=bad)
    with pytest.raises(UnsupportedQuantError, match="blk.0.ffn_up.weight.*IQ2_XXS"):
        open_gguf(tmp_path / "m.gguf")


def test_hf_dir_missing_files(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelFormatError, match=r"lacks tokenizer.json, \*.safetensors"):
        open_weights(tmp_path)


@pytest.mark.realmodel
def test_header_reader_gives_the_full_readers_metadata_with_strings(smollm2_gguf):
    """llama.cpp's tokenizer is built from read_gguf_header(strings=True) (no gguf reader's peak):
    every metadata value, the vocabulary and merges included, equals the gguf package's decoding."""
    from edgespec.formats.gguf_header import read_gguf_header

    metadata, tensors = read_gguf_header(smollm2_gguf, strings=True)
    full = open_gguf(smollm2_gguf)
    assert set(metadata) == set(full.metadata)
    for key in full.metadata:
        assert metadata[key] == full.metadata[key], key
    assert len(metadata["tokenizer.ggml.tokens"]) == full.config.vocab_size and metadata["tokenizer.ggml.merges"]
    assert tensors == frozenset(t.name for t in full._reader.tensors)
