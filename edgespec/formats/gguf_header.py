"""A GGUF header read in milliseconds: the metadata scalars and the tensor table, for `info`.

The gguf package's reader decodes every field, the vocabulary and merges included (~10^5
strings; 5-25 s for smollm2 on a loaded 2-core machine). Describing a model needs only the
scalars and the tensor names, so this walks the header once and keeps string arrays as their
length only (`range(n)`). Layout (GGUF v2/v3, little-endian): magic, version u32, tensor count
u64, KV count u64; KVs (key string, type u32, value); tensor infos (name, n_dims u32, dims u64[],
type u32, offset u64); then the data, aligned to general.alignment (default 32).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from ..errors import ModelFormatError

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class _Cursor:
    def __init__(self, data: bytes, strings: bool = False):
        self.data, self.pos, self.strings = data, 0, strings

    def take(self, fmt: str):
        value = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.take("<Q")
        start, self.pos = self.pos, self.pos + n
        if self.pos > len(self.data):
            raise struct.error("string past the end")
        return self.data[start:self.pos].decode("utf-8", errors="replace")

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item, n = self.take("<I"), self.take("<Q")
            if item == _STRING and self.strings:
                return [self.string() for _ in range(n)]
            if item == _STRING:  # the vocabulary, merges: skipped, length kept
                data, pos, unpack = self.data, self.pos, struct.Struct("<Q").unpack_from
                for _ in range(n):
                    pos += 8 + unpack(data, pos)[0]
                if pos > len(data):
                    raise struct.error("array past the end")
                self.pos = pos
                return range(n)
            if item in _SCALARS:
                size = struct.calcsize(_SCALARS[item])
                values = list(struct.unpack_from(f"<{n}{_SCALARS[item][1]}", self.data, self.pos))
                self.pos += n * size
                return values
            return [self.value(item) for _ in range(n)]
        raise struct.error(f"unknown value type {kind}")


def read_gguf_header(path: str | Path, chunk: int = 1 << 24,
                     strings: bool = False) -> tuple[dict[str, Any], frozenset[str]]:
    """(metadata, tensor names), checking the magic and that the file holds every tensor's start (a
    file cut short is refused, as a full load would). String arrays (vocabulary, merges) are `range(n)`
    unless strings=True: then lists of str, decoded straight from the bytes (for a tokenizer without
    gguf's reader, whose per-string arrays peak at 250 MiB for smollm2 and 680 MiB for qwen 0.5b)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        data = f.read(chunk)
        while True:
            try:
                return _parse(path, data, size, strings)
            except struct.error:
                if len(data) >= size:
                    raise ModelFormatError(f"'{path}' is corrupt or truncated: its GGUF header does not fit "
                                           f"its {size:,} bytes") from None
                data += f.read(len(data))  # a header larger than the first read: read more


def _parse(path: Path, data: bytes, size: int, strings: bool = False) -> tuple[dict[str, Any], frozenset[str]]:
    if data[:4] != b"GGUF":
        raise ModelFormatError(f"'{path}' is not a GGUF file: it starts with {data[:4]!r}, expected b'GGUF'")
    c = _Cursor(data, strings)
    c.pos = 4
    version, n_tensors, n_kv = c.take("<I"), c.take("<Q"), c.take("<Q")
    if version < 2:
        raise ModelFormatError(f"'{path}' is GGUF version {version}; versions 2 and 3 are supported")
    metadata = {}
    for _ in range(n_kv):
        key = c.string()
        metadata[key] = c.value(c.take("<I"))
    names, last_offset = [], 0
    for _ in range(n_tensors):
        names.append(c.string())
        n_dims = c.take("<I")
        c.pos += 8 * n_dims + 4  # dims, type
        last_offset = max(last_offset, c.take("<Q"))
    align = int(metadata.get("general.alignment", 32))
    data_start = (c.pos + align - 1) // align * align
    if data_start + last_offset > size:
        raise ModelFormatError(f"'{path}' is truncated: its tensors start up to byte {data_start + last_offset:,} "
                               f"but the file has {size:,}")
    return metadata, frozenset(names)
