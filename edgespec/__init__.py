"""edgespec: small LLMs, fast, on the devices people have, by self-speculative decoding.

    import edgespec
    model = edgespec.load("smollm2-135m", spec="auto")
    for event in model.generate("Hello", max_tokens=32):
        print(event.text, end="")
"""

from ._version import __version__

__all__ = ["GenerationStats", "Model", "TokenEvent", "__version__", "load"]


def __getattr__(name: str):
    # Lazy: the bench runs edgespec.bench.worker in a peers-only Python (numpy + its engine), so importing
    # the package must not import the runtime (onnxruntime, tokenizers).
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgespec' has no attribute '{name}'")
