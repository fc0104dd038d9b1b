"""Architecture registry: architecture name -> module implementing it.

A module registers itself with `register(...)`; `tests/test_registry.py`
fails when a registered architecture has no test, so a new family cannot
land untested.
"""

from __future__ import annotations

from typing import Callable

# Bumped whenever the ONNX graph onnx_llama.py builds changes, so exports cached on first use are
# rebuilt. Here, not there: finding a cached export must not import onnx (seconds at start-up).
GRAPH_VERSION = 2  # 2: stacked q/k/v and gate/up, SkipSimplifiedLayerNormalization

_REGISTRY: dict[str, Callable] = {}


def register(*names: str) -> Callable:
    """Class decorator: register a reference model class under GGUF architecture names."""

    def wrap(cls):
        for name in names:
            _REGISTRY[name] = cls
        return cls

    return wrap


def supported_architectures() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def reference_model_class(architecture: str):
    from ..errors import UnsupportedArchitectureError

    _load_builtin()
    try:
        return _REGISTRY[architecture]
    except KeyError:
        raise UnsupportedArchitectureError(
            f"unknown architecture '{architecture}'; supported: {', '.join(sorted(_REGISTRY))}") from None


def _load_builtin() -> None:
    # Imported lazily: config.py needs the list of names, models need config.py.
    from . import llama  # noqa: F401
