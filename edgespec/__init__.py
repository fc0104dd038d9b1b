"""edgespec: small LLMs, fast, on the devices people have, by self-speculative decoding."""

__version__ = "0.1.0"


def load(spec: str = "smollm2-135m"):
    """Load a model by known name, .gguf path or HF directory (see edgespec.api.load)."""
    from .api import load as _load

    return _load(spec)
