"""The Llama family (Llama, Qwen2, SmolLM2): numpy reference, ONNX graph builder, tensor names."""

from ..registry import Family, register
from . import names
from .graph import GRAPH_VERSION, build_graph
from .reference import LlamaReference

FAMILY = register(Family(architectures=("llama", "qwen2"), reference=LlamaReference, build_graph=build_graph,
                         graph_version=GRAPH_VERSION, names=names))
