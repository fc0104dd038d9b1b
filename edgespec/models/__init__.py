"""Model families, one unit each (reference, ONNX graph builder, tensor names), and the graph contract.

Importing the package registers the built-in families."""

from . import llama  # noqa: F401  (registers llama / qwen2)
from .registry import Family, family, reference_model_class, register, supported_architectures

__all__ = ["Family", "family", "reference_model_class", "register", "supported_architectures"]
