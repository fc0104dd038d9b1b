"""The Llama family (Llama, Qwen2, SmolLM2): numpy reference, ONNX graph builder, tensor names."""

from ..registry import Family, register
from . import names
from .reference import LlamaReference
from .version import GRAPH_VERSION, STATIC_GRAPH_VERSION


def build_graph(*args, **kwargs):
    """graph.build_graph (see there), imported when a graph is first built: importing onnx takes
    0.5-5 s, and loading a cached export (every `generate` and `chat` start) needs none of it."""
    from .graph import build_graph as build

    return build(*args, **kwargs)


def build_static_graph(*args, **kwargs):
    """static_graph.build_static_graph (the NPU target), imported on first use like build_graph."""
    from .static_graph import build_static_graph as build

    return build(*args, **kwargs)


FAMILY = register(Family(architectures=("llama", "qwen2"), reference=LlamaReference, build_graph=build_graph,
                         graph_version=GRAPH_VERSION, names=names, build_static_graph=build_static_graph,
                         static_graph_version=STATIC_GRAPH_VERSION))
