"""Weight readers. Each maps its file's tensor names to the canonical table in names.py."""

from pathlib import Path

from ..errors import ModelFormatError
from .gguf import open_gguf
from .hf import open_hf_dir


def open_weights(path):
    """A .gguf file or an HF directory (config.json + *.safetensors) -> a weights source with
    .config, .metadata, .names(), .tensor(canonical) (float32, canonical layout)."""
    path = Path(path)
    if path.is_dir():
        return open_hf_dir(path)
    if path.is_file():
        return open_gguf(path)
    raise ModelFormatError(f"'{path}' does not exist; expected a .gguf file or an HF model directory "
                           "(config.json + *.safetensors + tokenizer.json)")


class LazyWeights:
    """A read-only mapping canonical name -> float32 array that dequantizes on access,
    so a graph builder never holds every float weight at once."""

    def __init__(self, source):
        self.source = source
        self._names = set(source.names())

    def __getitem__(self, name: str):
        if name not in self._names:
            raise KeyError(name)
        return self.source.tensor(name)

    def rows(self, name: str, index):
        """Rows of a 2-D tensor without dequantizing the rest of it."""
        return self.source.rows(name, index)

    def __contains__(self, name) -> bool:
        return name in self._names

    def __iter__(self):
        return iter(sorted(self._names))

    def __len__(self) -> int:
        return len(self._names)
