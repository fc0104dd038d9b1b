"""The Llama family (Llama, Qwen2, SmolLM2): numpy reference, ONNX graph builder, tensor names."""

from ..registry import Family, register
from . import names
from .reference import LlamaReference
from .static_graph import STATIC_GRAPH_VERSION, build_static_graph

# Bumped whenever graph.py's graph changes, so exports cached on first use are rebuilt. Kept here, and
# the builder imported on first use, because importing onnx takes 0.5-5 s and loading a cached export
# (every `generate` and `chat` start) needs none of it.
GRAPH_VERSION = 3  # 2: stacked q/k/v and gate/up, SkipSimplifiedLayerNormalization; 3: extra_embeds by default


def build_graph(*args, **kwargs):
    """graph.build_graph (see there), imported when a graph is first built."""
    from .graph import build_graph as build

    return build(*args, **kwargs)


FAMILY = register(Family(architectures=("llama", "qwen2"), reference=LlamaReference, build_graph=build_graph,
                         graph_version=GRAPH_VERSION, names=names, build_static_graph=build_static_graph,
                         static_graph_version=STATIC_GRAPH_VERSION))
