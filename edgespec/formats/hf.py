"""Read a Hugging Face model directory: config.json + *.safetensors (+ tokenizer.json).

safetensors is simple enough to read without its package: 8 bytes of header
length (little-endian u64), a JSON header {name: {dtype, shape, data_offsets}},
then the raw tensor bytes. Files are memory-mapped.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ModelConfig
from ..errors import ModelFormatError, UnsupportedQuantError
from ..models import family

_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}


def open_hf_dir(path: str | Path) -> "HFModel":
    return HFModel(Path(path))


class HFModel:
    def __init__(self, path: Path):
        self.path = path
        missing = [n for n in ("config.json", "tokenizer.json") if not (path / n).is_file()]
        files = sorted(path.glob("*.safetensors"))
        if not files:
            missing.append("*.safetensors")
        if missing:
            raise ModelFormatError(f"HF model directory '{path}' lacks {', '.join(missing)}; expected config.json, "
                                   "*.safetensors and tokenizer.json")
        try:
            self.metadata: dict[str, Any] = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ModelFormatError(f"'{path / 'config.json'}' is not valid JSON ({exc})") from None
        self.config = ModelConfig.from_hf(self.metadata)
        self._tensors: dict[str, tuple[Path, dict]] = {}
        names = family(self.config.architecture).names
        for file in files:
            for file_name, info in read_safetensors_header(file).items():
                canonical = names.to_canonical(file_name, names.HF)
                if canonical is not None:
                    self._tensors[canonical] = (file, info)
        self._maps: dict[Path, np.memmap] = {}

    def names(self) -> list[str]:
        return list(self._tensors)

    def shape(self, canonical: str) -> tuple[int, ...]:
        return tuple(self._tensors[canonical][1]["shape"])

    def rows(self, canonical: str, index) -> np.ndarray:
        return self.tensor(canonical)[index]

    def tensor(self, canonical: str) -> np.ndarray:
        file, info = self._tensors[canonical]
        dtype = info["dtype"]
        if dtype not in _DTYPES:
            raise UnsupportedQuantError(f"tensor '{canonical}' in '{file}' has dtype {dtype}; "
                                        f"supported: {', '.join(_DTYPES)}")
        if file not in self._maps:
            self._maps[file] = np.memmap(file, dtype=np.uint8, mode="r")
        start, end = info["data_offsets"]
        base = 8 + struct.unpack("<Q", bytes(self._maps[file][:8]))[0]
        raw = np.asarray(self._maps[file][base + start:base + end]).view(_DTYPES[dtype])
        if dtype == "BF16":
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        return raw.astype(np.float32).reshape(info["shape"])


def read_safetensors_header(file: Path) -> dict[str, dict]:
    size = file.stat().st_size
    with open(file, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ModelFormatError(f"'{file}' is truncated: {size} bytes, not even a safetensors header")
        (length,) = struct.unpack("<Q", head)
        if 8 + length > size:
            raise ModelFormatError(f"'{file}' is truncated or not safetensors: header of {length} bytes, "
                                   f"file of {size}")
        try:
            header = json.loads(f.read(length))
        except ValueError as exc:
            raise ModelFormatError(f"'{file}' has a corrupt safetensors header ({exc})") from None
    header.pop("__metadata__", None)
    end = max((info["data_offsets"][1] for info in header.values()), default=0)
    if 8 + length + end > size:
        raise ModelFormatError(f"'{file}' is truncated: tensors need {8 + length + end:,} bytes, file has {size:,}")
    return header


def write_safetensors(file: Path, tensors: dict[str, np.ndarray]) -> None:
    """Write float32/float16 tensors (for tests and exports)."""
    codes = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16"}
    header, offset, blobs = {}, 0, []
    for name, value in tensors.items():
        data = np.ascontiguousarray(value).tobytes()
        header[name] = {"dtype": codes[np.dtype(value.dtype)], "shape": list(value.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)  # keep tensor data 8-byte aligned
    with open(file, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded)
        for blob in blobs:
            f.write(blob)


def write_hf_dir(source, tokenizer, directory: Path, dtype=np.float16) -> None:
    """An HF model directory (config.json, model.safetensors, tokenizer files) from any weights source,
    e.g. to hand the same weights to another tool's exporter (onnxruntime-genai's builder)."""
    c = source.config
    directory.mkdir(parents=True, exist_ok=True)
    model_type = {"llama": "llama", "qwen2": "qwen2"}[c.architecture]
    config = {"architectures": [{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}[model_type]],
              "model_type": model_type, "vocab_size": c.vocab_size, "hidden_size": c.hidden_size,
              "intermediate_size": c.intermediate_size, "num_hidden_layers": c.num_layers,
              "num_attention_heads": c.num_heads, "num_key_value_heads": c.num_kv_heads, "head_dim": c.head_dim,
              "rms_norm_eps": c.rms_norm_eps, "rope_theta": c.rope_theta,
              "max_position_embeddings": c.max_position_embeddings, "tie_word_embeddings": c.tie_word_embeddings,
              "hidden_act": "silu", "torch_dtype": "float16" if dtype == np.float16 else "float32",
              "bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id}
    if c.rope_scaling.kind != "none":
        config["rope_scaling"] = {"rope_type": c.rope_scaling.kind, "factor": c.rope_scaling.factor}
    if model_type == "llama":
        config["attention_bias"] = c.attention_bias
    (directory / "config.json").write_text(json.dumps(config, indent=1))
    names = family(c.architecture).names
    write_safetensors(directory / "model.safetensors",
                      {names.from_canonical(n, names.HF): source.tensor(n).astype(dtype) for n in source.names()})
    tokenizer.save(directory)
