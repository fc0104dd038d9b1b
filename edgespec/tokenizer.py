"""Tokenizer: HF `tokenizers` built from tokenizer.json or from GGUF metadata.

From GGUF we rebuild the byte-level BPE with the same pre-tokenizer regexes
llama.cpp applies for the file's `tokenizer.ggml.pre` (src/llama-vocab.cpp),
so token ids match llama.cpp on the same file (tests/test_tokenizer.py).
Control and user-defined tokens become added tokens, so '<|im_start|>' in a
chat prompt is one token, as with llama.cpp's tokenize(special=True).
"""

from __future__ import annotations

import codecs
import json
import logging
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from .errors import TokenizerError

log = logging.getLogger(__name__)

_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
_LLAMA3 = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

_DIGITS_GPT2 = (r"\p{N}", _GPT2)
_DEFAULT = (r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", r"[0-9][0-9][0-9]")

# tokenizer.ggml.pre -> the regexes llama.cpp splits with, in order (data from llama.cpp's
# src/llama-vocab.cpp, llm_tokenizer_bpe). The first names are the ones export/gguf_writer.py
# writes back for a tokenizer.json, so they come first; the rest are llama.cpp's aliases.
PRE_TOKENIZER_REGEXES: dict[str, tuple[str, ...]] = {
    "smollm": _DIGITS_GPT2,
    "starcoder": _DIGITS_GPT2,
    "refact": _DIGITS_GPT2,
    "gpt-2": (_GPT2,),
    "qwen2": (_QWEN2,),
    "llama-bpe": (_LLAMA3,),
    "llama3": (_LLAMA3,),
    "default": _DEFAULT,
    "llama-v3": (_LLAMA3,),
    "falcon3": (_LLAMA3,),
    "dbrx": (_LLAMA3,),
    "smaug-bpe": (_LLAMA3,),
    "command-r": _DIGITS_GPT2,
    "codeshell": _DIGITS_GPT2,
    "exaone": _DIGITS_GPT2,
    "minerva-7b": _DIGITS_GPT2,
    "phi-2": (_GPT2,),
    "mpt": (_GPT2,),
    "olmo": (_GPT2,),
    "jais": (_GPT2,),
    "stablelm2": (_QWEN2,),
    "deepseek-r1-qwen": (_QWEN2,),
    "megrez": (_QWEN2,),
}
# llama.cpp: a pre-tokenized word that is already a token is not merged further, and BOS is on by default
_LLAMA3_FAMILY = {"llama-bpe", "llama3", "llama-v3", "falcon3"}
_TOKEN_TYPE_CONTROL, _TOKEN_TYPE_USER_DEFINED = 3, 4
_END_OF_TURN = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")


class Tokenizer:
    def __init__(self, hf: HFTokenizer, bos_id: int | None, eos_id: int | None, add_bos: bool,
                 chat_template: str | None, extra_stop_ids: tuple[int, ...] = ()):
        self.hf = hf
        self.bos_id, self.eos_id, self.add_bos = bos_id, eos_id, add_bos
        self.chat_template = chat_template
        vocab = hf.get_vocab(with_added_tokens=True)
        stops = {eos_id, *extra_stop_ids} | {vocab[t] for t in _END_OF_TURN if t in vocab}
        self.stop_ids = frozenset(s for s in stops if s is not None)
        self._special_ids = frozenset(t for t, added in hf.get_added_tokens_decoder().items() if added.special)
        self._byte_decoder = {c: b for b, c in _bytes_to_unicode().items()}
        self._template = None

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def from_gguf(cls, metadata: Mapping[str, Any]) -> Tokenizer:
        kind = metadata.get("tokenizer.ggml.model")
        if kind != "gpt2":
            raise TokenizerError(f"tokenizer model '{kind}' is not supported; supported: gpt2 (byte-level BPE)")
        pre = metadata.get("tokenizer.ggml.pre") or "default"
        if not metadata.get("tokenizer.ggml.pre"):
            log.warning("the GGUF names no pre-tokenizer (tokenizer.ggml.pre); using llama.cpp's 'default' "
                        "splitting, which may not be the model's own")
        if pre not in PRE_TOKENIZER_REGEXES:
            raise TokenizerError(f"pre-tokenizer '{pre}' is not supported; supported: "
                                 f"{', '.join(PRE_TOKENIZER_REGEXES)}")
        tokens: list[str] | None = metadata.get("tokenizer.ggml.tokens")
        if not tokens:
            raise TokenizerError("the GGUF has no vocabulary (tokenizer.ggml.tokens); it cannot be tokenized")
        types: list[int] = metadata.get("tokenizer.ggml.token_type") or [1] * len(tokens)
        merges = [tuple(m.split(" ", 1)) for m in metadata.get("tokenizer.ggml.merges", [])]
        vocab = {t: i for i, t in enumerate(tokens)}
        hf = HFTokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=pre in _LLAMA3_FAMILY))
        hf.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in PRE_TOKENIZER_REGEXES[pre]]
            + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        hf.decoder = decoders.ByteLevel()
        hf.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                               for i, t in enumerate(types) if t == _TOKEN_TYPE_CONTROL])
        hf.add_tokens([AddedToken(tokens[i], special=False, normalized=False)
                       for i, t in enumerate(types) if t == _TOKEN_TYPE_USER_DEFINED])
        eot = metadata.get("tokenizer.ggml.eot_token_id")
        add_bos = bool(metadata.get("tokenizer.ggml.add_bos_token", pre in _LLAMA3_FAMILY))
        return cls(hf, metadata.get("tokenizer.ggml.bos_token_id"), metadata.get("tokenizer.ggml.eos_token_id"),
                   add_bos, metadata.get("tokenizer.chat_template"), (eot,) if eot is not None else ())

    @classmethod
    def from_hf_dir(cls, path: str | Path) -> Tokenizer:
        path = Path(path)
        file = path / "tokenizer.json"
        if not file.is_file():
            raise TokenizerError(f"'{path}' has no tokenizer.json; an HF model directory needs one")
        hf = HFTokenizer.from_file(str(file))
        config = {}
        if (path / "tokenizer_config.json").is_file():
            config = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))

        def token_id(key: str) -> int | None:
            value = config.get(key)
            if isinstance(value, dict):
                value = value.get("content")
            return hf.token_to_id(value) if value else None

        template = config.get("chat_template")
        if template is None and (path / "chat_template.jinja").is_file():
            template = (path / "chat_template.jinja").read_text(encoding="utf-8")
        return cls(hf, token_id("bos_token"), token_id("eos_token"), bool(config.get("add_bos_token", False)),
                   template)

    def save(self, directory: str | Path) -> None:
        """Write tokenizer.json + tokenizer_config.json; from_hf_dir() reloads the same tokenizer."""
        directory = Path(directory)
        self.hf.save(str(directory / "tokenizer.json"))
        config = {"bos_token": self._content(self.bos_id), "eos_token": self._content(self.eos_id),
                  "add_bos_token": self.add_bos, "chat_template": self.chat_template}
        (directory / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=1),
                                                         encoding="utf-8")

    def _content(self, token_id: int | None) -> str | None:
        return None if token_id is None else self.hf.id_to_token(token_id)

    # --- encoding / decoding ------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, add_bos: bool | None = None, parse_special: bool = True) -> list[int]:
        self.hf.encode_special_tokens = not parse_special
        ids = self.hf.encode(text, add_special_tokens=False).ids
        if (self.add_bos if add_bos is None else add_bos) and self.bos_id is not None:
            ids = [self.bos_id] + ids
        return ids

    def decode(self, ids: list[int], skip_special: bool = False) -> str:
        return b"".join(self.token_bytes(i) for i in ids if not (skip_special and i in self._special_ids)) \
            .decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        piece = self.hf.id_to_token(token_id)
        if piece is None:
            raise TokenizerError(f"token id {token_id} is outside the vocabulary of {self.vocab_size}")
        if token_id in self._special_ids or any(c not in self._byte_decoder for c in piece):
            return piece.encode("utf-8")  # added tokens are stored as plain text
        return bytes(self._byte_decoder[c] for c in piece)

    def stream_decoder(self) -> StreamDecoder:
        return StreamDecoder(self)

    # --- chat ---------------------------------------------------------------------------------

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True, **extra: Any) -> str:
        """The chat rendered with the model's jinja template (as HF transformers renders it);
        `extra` (tools=..., documents=...) is passed to the template."""
        if not self.chat_template:
            raise TokenizerError("this model has no chat template; use raw text (--no-chat-template)")
        if self._template is None:
            self._template = _compile_template(self.chat_template)
        try:
            return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                         bos_token=self._content(self.bos_id) or "",
                                         eos_token=self._content(self.eos_id) or "", **extra)
        except TemplateError as exc:
            raise TokenizerError(f"the model's chat template failed on these messages: {exc}") from None


def tokenizer_for(kind: str, path, metadata: Mapping[str, Any], vocab_size: int) -> Tokenizer:
    """The tokenizer of a model source ("gguf": from its metadata; "hf"/"export": tokenizer.json),
    checked against the model's vocabulary so ids can never index past the embedding."""
    tokenizer = Tokenizer.from_gguf(metadata) if kind == "gguf" else Tokenizer.from_hf_dir(path)
    if tokenizer.vocab_size > vocab_size:
        raise TokenizerError(f"tokenizer mismatch: the tokenizer of '{path}' has {tokenizer.vocab_size} tokens but "
                             f"the model's vocabulary has {vocab_size}; they must come from the same model")
    return tokenizer


def chat_ids(tokenizer: Tokenizer, messages: list[dict]) -> list[int]:
    """Token ids of a chat, rendered with the model's template and ready for the assistant's turn."""
    return tokenizer.encode(tokenizer.apply_chat_template(messages, add_generation_prompt=True), add_bos=False)


class StreamDecoder:
    """Token ids in, text out, never splitting a multi-byte UTF-8 character."""

    def __init__(self, tokenizer: Tokenizer):
        self._tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        return self._utf8.decode(self._tokenizer.token_bytes(token_id))

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)


def _compile_template(source: str):
    def raise_exception(message):
        raise TokenizerError(f"chat template: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.filters["tojson"] = lambda value, indent=None, separators=None, sort_keys=False: json.dumps(
        value, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys)
    try:
        return env.from_string(source)
    except TemplateError as exc:
        raise TokenizerError(f"the model's chat template does not compile: {exc}") from None


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte <-> printable-unicode map used by byte-level BPE vocabularies."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping
