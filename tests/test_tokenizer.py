"""Tokenizer: ids equal llama.cpp's on the same GGUF; decoding; streaming; chat templates."""

from __future__ import annotations

import inspect

import pytest

from edgespec.errors import TokenizerError
from edgespec.formats import open_weights
from edgespec.tokenizer import Tokenizer

from edgespec.export.validate import prose_text


def corpus() -> list[str]:
    import argparse, collections, difflib, json.encoder, textwrap  # noqa: E401  (sources only)

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


@pytest.fixture(scope="module", params=["smollm2_gguf", "qwen05_gguf"])
def model_pair(request):
    from .llamacpp_util import llama

    path = request.getfixturevalue(request.param)
    return Tokenizer.from_gguf(open_weights(path).metadata), llama(path, vocab_only=True)


def test_encode_equals_llamacpp(model_pair):
    ours, llm = model_pair
    texts = corpus()
    mismatches = [t[:60] for t in texts
                  if ours.encode(t, add_bos=False) != llm.tokenize(t.encode("utf-8"), add_bos=False, special=True)]
    print(f"compared {len(texts)} strings, {sum(map(len, texts)):,} characters: {len(mismatches)} mismatches")
    assert not mismatches


def test_special_token_parsing_can_be_turned_off(model_pair):
    ours, llm = model_pair
    text = "<|im_start|>user"
    assert len(ours.encode(text)) == 2
    assert ours.encode(text, parse_special=False) == llm.tokenize(text.encode(), add_bos=False, special=False)
    assert len(ours.encode(text, parse_special=False)) > 2


def test_decode_round_trip(model_pair):
    ours, _ = model_pair
    for text in corpus():
        assert ours.decode(ours.encode(text, add_bos=False)) == text


def test_stream_decoder_never_breaks_utf8(model_pair):
    ours, _ = model_pair
    text = "emoji 👨‍👩‍👧‍👦 and 中文 and é"
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


def test_save_and_reload(model_pair, tmp_path):
    ours, _ = model_pair
    ours.save(tmp_path)
    again = Tokenizer.from_hf_dir(tmp_path)
    for text in corpus()[-10:]:
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
