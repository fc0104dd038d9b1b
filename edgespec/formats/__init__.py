"""Weight readers. Each maps its file's tensor names to the canonical table in names.py."""

from pathlib import Path

from ..errors import ModelFormatError


def open_weights(path):
    """A .gguf file or an HF directory (config.json + *.safetensors) -> a weights source with
    .config, .metadata, .names(), .tensor(canonical) (float32, canonical layout)."""
    path = Path(path)
    if path.is_dir():
        from .hf import open_hf_dir

        return open_hf_dir(path)
    if path.is_file():
        from .gguf import open_gguf

        return open_gguf(path)
    raise ModelFormatError(f"'{path}' does not exist; expected a .gguf file or an HF model directory "
                           "(config.json + *.safetensors + tokenizer.json)")
