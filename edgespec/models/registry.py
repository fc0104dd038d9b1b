"""Model-family registry: GGUF architecture name -> the family unit implementing it.

A family (e.g. models/llama/) registers ONE `Family` with everything the rest of edgespec needs
from it: the numpy reference, the ONNX graph builder and its version, the tensor-name table.
`tests/test_models_reference.py` fails when a registered architecture has no test, and
config.SUPPORTED_ARCHITECTURES must list exactly the registered names (config asks no registry).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Callable

from ..errors import UnsupportedArchitectureError


@dataclass(frozen=True)
class Family:
    architectures: tuple[str, ...]  # GGUF general.architecture names
    reference: type  # numpy fp32 reference: cls(config, weights) with forward(tokens, cache, positions, mask)
    build_graph: Callable  # (config, weights, max_len, linear=..., ...) -> onnx.ModelProto (the graph contract)
    graph_version: int  # bumped when the built graph changes: cached exports are rebuilt
    names: ModuleType  # canonical <-> GGUF / HF tensor names (to_canonical, from_canonical, permute_qk...)


_FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    for name in family.architectures:
        _FAMILIES[name] = family
    return family


def supported_architectures() -> list[str]:
    return sorted(_FAMILIES)


def family(architecture: str) -> Family:
    try:
        return _FAMILIES[architecture]
    except KeyError:
        raise UnsupportedArchitectureError(
            f"unknown architecture '{architecture}'; supported: {', '.join(supported_architectures())}") from None


def reference_model_class(architecture: str) -> type:
    return family(architecture).reference
