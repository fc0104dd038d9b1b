"""Read GGUF files (memory-mapped, through the `gguf` package) into canonical tensors.

Everything a later step could trip over is checked when the file is opened:
magic, truncation, architecture, quantization types and tensor shapes, each
with an error that names the file, the value found and what was expected.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader

from ..config import ModelConfig
from ..errors import ModelFormatError
from ..models import family
from .quants import check_supported, dequantize

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawTensor:
    """A tensor as stored: ggml type, logical shape (rows, cols) in canonical layout, raw bytes."""

    qtype: GGMLQuantizationType
    shape: tuple[int, ...]
    data: np.ndarray


def open_gguf(path: str | Path) -> "GGUFModel":
    return GGUFModel(Path(path))


class GGUFModel:
    def __init__(self, path: Path):
        self.path = path
        if not path.is_file():
            raise ModelFormatError(f"'{path}' does not exist or is not a file; expected a .gguf file")
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic != b"GGUF":
            raise ModelFormatError(f"'{path}' is not a GGUF file: it starts with {magic!r}, expected b'GGUF'")
        try:
            self._reader = GGUFReader(path, "r")
        except (ValueError, IndexError, KeyError, OSError) as exc:
            raise ModelFormatError(f"'{path}' is corrupt or truncated: its GGUF header and tensor table do not "
                                   f"fit its {path.stat().st_size:,} bytes ({exc})") from None
        self._check_not_truncated()
        self.metadata: dict[str, Any] = {key: _plain(field) for key, field in self._reader.fields.items()
                                         if not key.startswith("GGUF.")}
        self._tensors = {t.name: t for t in self._reader.tensors}
        self.config = ModelConfig.from_gguf(self.metadata, frozenset(self._tensors))
        self.names_table = names = family(self.config.architecture).names
        self._canonical = {}
        for file_name, tensor in self._tensors.items():
            canonical = names.to_canonical(file_name, names.GGUF)
            if canonical is None:
                log.debug("%s: ignoring tensor %s (not in the canonical table)", path.name, file_name)
                continue
            check_supported(tensor.tensor_type, file_name)
            self._canonical[canonical] = tensor
        self._check_shapes()

    def _check_not_truncated(self) -> None:
        size = self.path.stat().st_size
        end = max((int(t.data_offset) + int(t.n_bytes) for t in self._reader.tensors), default=0)
        if end > size:
            raise ModelFormatError(
                f"'{self.path}' is truncated: its tensors need {end:,} bytes but the file has {size:,}")

    def _check_shapes(self) -> None:
        c = self.config
        q_out, kv_out = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
        expected = {"embed": (c.vocab_size, c.hidden_size), "lm_head": (c.vocab_size, c.hidden_size),
                    "final_norm": (c.hidden_size,)}
        for i in range(c.num_layers):
            expected.update({f"layers.{i}.q": (q_out, c.hidden_size), f"layers.{i}.k": (kv_out, c.hidden_size),
                             f"layers.{i}.v": (kv_out, c.hidden_size), f"layers.{i}.o": (c.hidden_size, q_out),
                             f"layers.{i}.gate": (c.intermediate_size, c.hidden_size),
                             f"layers.{i}.up": (c.intermediate_size, c.hidden_size),
                             f"layers.{i}.down": (c.hidden_size, c.intermediate_size)})
        missing = [n for n in expected if n not in self._canonical and not (n == "lm_head" and c.tie_word_embeddings)]
        if missing:
            raise ModelFormatError(f"'{self.path}' lacks tensors a {c.architecture} model needs: {missing[:5]}")
        for name, shape in expected.items():
            if name in self._canonical and self.shape(name) != shape:
                raise ModelFormatError(f"'{self.path}': tensor {name} has shape {self.shape(name)}, "
                                       f"expected {shape} from the model's metadata")

    def field(self, key: str):
        """The raw gguf ReaderField (value types included), for copying metadata."""
        return self._reader.fields[key]

    def names(self) -> list[str]:
        return list(self._canonical)

    def shape(self, canonical: str) -> tuple[int, ...]:
        return tuple(int(d) for d in reversed(self._canonical[canonical].shape))  # ggml order is reversed

    def raw(self, canonical: str) -> RawTensor:
        t = self._canonical[canonical]
        return RawTensor(GGMLQuantizationType(t.tensor_type), self.shape(canonical), np.asarray(t.data))

    def rows(self, canonical: str, index) -> np.ndarray:
        """Rows `index` of a 2-D tensor, dequantizing only those rows (embedding lookups, chunked lm_head)."""
        t = self._canonical[canonical]
        if canonical.rsplit(".", 1)[-1] in ("q", "k"):
            return self.tensor(canonical)[index]  # permuted rows: take them from the whole tensor
        raw = np.asarray(t.data)
        picked = raw.reshape(self.shape(canonical)[0], -1)[index]
        return dequantize(picked, t.tensor_type, (picked.shape[0], self.shape(canonical)[1]), t.name)

    def tensor(self, canonical: str) -> np.ndarray:
        """float32, canonical (HF) layout: [out, in]; llama Q/K rows in rotate-half order."""
        t = self._canonical[canonical]
        values = dequantize(np.asarray(t.data), t.tensor_type, self.shape(canonical), t.name)
        if self.config.architecture == "llama":
            kind = canonical.rsplit(".", 1)[-1]
            if kind in ("q", "q_bias"):
                values = self.names_table.unpermute_qk(values, self.config.num_heads)
            elif kind in ("k", "k_bias"):
                values = self.names_table.unpermute_qk(values, self.config.num_kv_heads)
        return values


def _plain(field) -> Any:
    """A GGUF field as a plain python value (str, int, float, bool, or list of those)."""
    try:
        return field.contents()
    except Exception as exc:  # noqa: BLE001 - any decode failure means a corrupt header
        raise ModelFormatError(f"GGUF metadata field '{field.name}' cannot be decoded ({exc})") from None
