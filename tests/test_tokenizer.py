"""Tokenizer: ids equal llama.cpp's on the same GGUF; decoding; streaming; chat templates."""

from __future__ import annotations

import functools
import inspect
import logging
import random

import pytest

from edgespec.errors import TokenizerError
from edgespec.export.validate import prose_text
from edgespec.formats import open_weights
from edgespec.tokenizer import Tokenizer


def corpus() -> list[str]:
    import argparse
    import collections
    import difflib
    import json.encoder
    import textwrap

    texts = []
    for module in (argparse, collections, difflib, json.encoder, textwrap):
        source = inspect.getsource(module)
        texts += [source[i:i + 3000] for i in range(0, min(len(source), 15000), 3000)]
    prose = prose_text(30000)
    texts += [prose[i:i + 3000] for i in range(0, len(prose), 3000)]
    texts += [
        "héllo wörld, café, naïve, Ångström, Œuvre, façade",
        "👍🏽 👨‍👩‍👧‍👦 🎉🎉x 🏳️‍🌈 ❤️‍🔥",
        "中文字符测试，日本語のテキスト、한국어 문장입니다。",
        "مرحبا بالعالم — नमस्ते दुनिया — Привет, мир",
        "a" + " " * 37 + "b\t\t\n\n\n  \r\n x" + " " * 200 + "\n" * 30 + "\t" * 9 + "end",
        "1234567890 3.14159 1e10 0x1F 1,000,000 2024-11-25",
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
        "text<|endoftext|>more <|im_start|> spaced <|im_end|>",
        "don't won't I'm we'll they'd IT'S SHE'LL",
        "",
    ]
    return texts


# pieces that stress the splitting regexes: contractions in both cases, Unicode spaces and digits,
# combining marks, ZWJ sequences, special tokens glued to text, and partial special tokens
_PIECES = list("aZ09 '\t\n\r.,!?-_<>|") + [
    "'s", "'S", "'LL", "\u00a0", "\u3000", "\u2028", "\u2009", "\u200b", "\u0085", "\x0b", "\x0c", "\x1c",
    "é", "e\u0301", "٣", "²", "Ⅻ", "½", "中", "文", "😀", "👍🏽", "👨‍👩‍👧", "🏳️‍🌈", "ा", "क्ष", "ب", "\u200d",
    "\ufeff", "ﬁ", "Ａ", "１", "\x00", "\x7f", "ǅ", "ʰ", "〇", "₃", "<|im_start|>", "<|im_end|>", "<|endoftext|>",
    " <|im_end|> ", "<|im_start", "<|fim_prefix|>", "<repo_name>", "  ", "    ", "\n\n", "\r\n", " \n", "\t "]


def fuzz(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(_PIECES) for _ in range(rng.randint(1, 12))) for _ in range(n)]


def _mismatches(ours, llm, texts) -> list[str]:
    return [t for t in texts
            if ours.encode(t, add_bos=False) != llm.tokenize(t.encode("utf-8"), add_bos=False, special=True)]


@functools.cache
def _ours(path) -> Tokenizer:
    return Tokenizer.from_gguf(open_weights(path).metadata)


@pytest.fixture(scope="module", params=["smollm2_gguf", "qwen05_gguf"])
def model_pair(request):
    from .llamacpp_util import llama

    path = request.getfixturevalue(request.param)
    return _ours(path), llama(path, vocab_only=True)


def test_encode_equals_llamacpp(model_pair):
    ours, llm = model_pair
    texts = corpus() + fuzz(3000)
    mismatches = _mismatches(ours, llm, texts)
    print(f"compared {len(texts)} strings, {sum(map(len, texts)):,} characters: {len(mismatches)} mismatches")
    assert not [t[:60] for t in mismatches]


@pytest.fixture(scope="module")
def smollm2_metadata(smollm2_gguf):
    """(key, value, type, sub_type) of every metadata field of the SmolLM2 GGUF."""
    import gguf

    return [(key, field.contents(), field.types[0],
             field.types[1] if field.types[0] == gguf.GGUFValueType.ARRAY else None)
            for key, field in gguf.GGUFReader(smollm2_gguf).fields.items() if not key.startswith("GGUF.")]


@pytest.mark.parametrize("pre", ["gpt-2", "default", "llama-bpe", "qwen2", None])
def test_other_pre_tokenizers_equal_llamacpp(pre, smollm2_metadata, tmp_path, caplog):
    """The same vocabulary with another `tokenizer.ggml.pre` (None: the key is missing, which
    llama.cpp reads as 'default'): a tensor-less GGUF copy that llama.cpp loads vocab_only."""
    import gguf
    from llama_cpp import Llama

    metadata = {key: value for key, value, _, _ in smollm2_metadata if key != "tokenizer.ggml.pre"}
    path = tmp_path / "vocab.gguf"
    writer = gguf.GGUFWriter(str(path), metadata["general.architecture"])
    for key, value, value_type, sub_type in smollm2_metadata:
        if key not in ("general.architecture", "tokenizer.ggml.pre"):
            writer.add_key_value(key, value, value_type, sub_type=sub_type)
    if pre is not None:
        metadata["tokenizer.ggml.pre"] = pre
        writer.add_tokenizer_pre(pre)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    with caplog.at_level(logging.WARNING, logger="edgespec.tokenizer"):
        ours = Tokenizer.from_gguf(metadata)
    assert ("no pre-tokenizer" in caplog.text) == (pre is None)
    llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
    texts = corpus()[::3] + fuzz(1500, seed=1)
    mismatches = _mismatches(ours, llm, texts)
    print(f"pre={pre}: compared {len(texts)} strings, {sum(map(len, texts)):,} characters: "
          f"{len(mismatches)} mismatches")
    assert not [t[:60] for t in mismatches]


def test_special_token_parsing_can_be_turned_off(model_pair):
    ours, llm = model_pair
    text = "<|im_start|>user"
    assert len(ours.encode(text)) == 2
    assert ours.encode(text, parse_special=False) == llm.tokenize(text.encode(), add_bos=False, special=False)
    assert len(ours.encode(text, parse_special=False)) > 2


def test_decode_round_trip(model_pair):
    ours, llm = model_pair
    for text in corpus() + fuzz(500, seed=2):
        ids = ours.encode(text, add_bos=False)
        assert ours.decode(ids) == text
        assert ours.decode(ids).encode("utf-8") == _llamacpp_detokenize(llm, ids)


def _llamacpp_detokenize(llm, ids: list[int]) -> bytes:
    """llama.cpp's pieces. (Not Llama.detokenize: llama-cpp-python 0.3 gives llama_token_to_piece a
    32-byte buffer and slices with the negative 'too small' return, garbling longer tokens such as
    Qwen's runs of spaces.)"""
    import ctypes

    import llama_cpp

    buffer, out = ctypes.create_string_buffer(1024), b""
    for i in ids:
        n = llama_cpp.llama_token_to_piece(llm._model.vocab, i, buffer, len(buffer), 0, True)
        assert 0 <= n <= len(buffer)
        out += buffer.raw[:n]
    return out


def test_decode_can_skip_special_tokens(model_pair):
    ours, _ = model_pair
    ids = ours.encode("<|im_start|>user\nhi<|im_end|>")
    assert ours.decode(ids) == "<|im_start|>user\nhi<|im_end|>"
    assert ours.decode(ids, skip_special=True) == "user\nhi"


def test_stream_decoder_never_breaks_utf8(model_pair):
    ours, _ = model_pair
    for text in ["emoji 👨‍👩‍👧‍👦 and 中文 and é", *corpus()[-10:], *fuzz(200, seed=3)]:
        decoder = ours.stream_decoder()
        pieces = [decoder.push(t) for t in ours.encode(text, add_bos=False)] + [decoder.flush()]
        assert "".join(pieces) == text
        assert all("\ufffd" not in p for p in pieces)
    # multi-byte characters do span tokens here, so buffering was exercised
    assert any(len(ours.token_bytes(t).decode("utf-8", errors="ignore")) == 0
               for t in ours.encode("👨‍👩‍👧‍👦中文", add_bos=False))


def test_stop_ids_include_end_of_turn(model_pair):
    ours, _ = model_pair
    assert ours.eos_id in ours.stop_ids
    assert ours.encode("<|im_end|>")[0] in ours.stop_ids


def test_chat_template_shape(model_pair):
    ours, _ = model_pair
    text = ours.apply_chat_template([{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": "hi"}])
    assert text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_chat_template_passes_tools(qwen05_gguf):
    ours = _ours(qwen05_gguf)
    tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                             "parameters": {"type": "object", "properties": {}}}}
    text = ours.apply_chat_template([{"role": "user", "content": "Paris?"}], tools=[tool])
    assert '"name": "get_weather"' in text and text.endswith("<|im_start|>assistant\n")


def test_save_and_reload(model_pair, tmp_path):
    ours, _ = model_pair
    ours.save(tmp_path)
    again = Tokenizer.from_hf_dir(tmp_path)
    for text in corpus()[-10:] + fuzz(300, seed=4):
        assert again.encode(text) == ours.encode(text)
    assert (again.bos_id, again.eos_id, again.stop_ids, again.chat_template) == \
        (ours.bos_id, ours.eos_id, ours.stop_ids, ours.chat_template)


def test_unsupported_tokenizer_is_named():
    with pytest.raises(TokenizerError, match="'llama'.*supported: gpt2"):
        Tokenizer.from_gguf({"tokenizer.ggml.model": "llama"})
    with pytest.raises(TokenizerError, match="'deepseek-coder'.*supported: smollm"):
        Tokenizer.from_gguf({"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "deepseek-coder"})


def test_missing_chat_template_is_clear(model_pair):
    ours, _ = model_pair
    bare = Tokenizer(ours.hf, ours.bos_id, ours.eos_id, False, None)
    with pytest.raises(TokenizerError, match="no chat template"):
        bare.apply_chat_template([{"role": "user", "content": "x"}])
