"""Graph-building pieces every model family's ONNX builder shares: the node/initializer collector,
streaming of large initializers into one external data file, and the float Linear strategies
(quant/linear.py adds the MatMulNBits one)."""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .contract import TensorSpec

OPSET = 23
MS_DOMAIN = "com.microsoft"

# A Linear strategy: (graph, input name [T, in], canonical weight name, output name) -> None.
# It adds nodes/initializers to `graph` computing input @ W^T. fp32 uses Gemm(transB=1);
# int4 (quant/int4.py) swaps in MatMulNBits.
Linear = Callable[["GraphBuilder", str, str, str], None]


class ExternalData:
    """Streams large initializers into one data file as the graph is built, so the builder
    never holds the whole model in memory. Offsets are page-aligned (ORT can map them)."""

    ALIGN = 4096
    MIN_BYTES = 1024

    def __init__(self, path, location: str):
        self.file = open(path, "wb")
        self.location = location
        self.written: dict[str, tuple[int, int]] = {}  # name -> (offset, bytes): graphs sharing the file reuse them

    def tensor(self, name: str, value: np.ndarray) -> onnx.TensorProto:
        value = np.ascontiguousarray(value)
        if name not in self.written:
            offset = self.file.seek(0, 2)
            pad = -offset % self.ALIGN
            self.file.write(b"\0" * pad)
            self.file.write(value.tobytes())
            self.written[name] = (offset + pad, value.nbytes)
        offset, length = self.written[name]
        proto = helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape)
        tensor = onnx.TensorProto(name=name, data_type=proto.type.tensor_type.elem_type, dims=value.shape)
        tensor.data_location = onnx.TensorProto.EXTERNAL
        for key, val in (("location", self.location), ("offset", str(offset)), ("length", str(length))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, val
        return tensor

    def close(self) -> None:
        self.file.close()


class GraphBuilder:
    """Collects nodes and initializers; `weights` are the canonical float32 arrays."""

    def __init__(self, weights: Mapping[str, np.ndarray], linear: Linear | None = None, float_type=np.float32,
                 external: ExternalData | None = None):
        self.weights = weights
        self.linear = linear or gemm_linear
        self.float_type = float_type
        self.external = external
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: dict[str, tuple] = {}  # name -> (shape, dtype)
        self._counter = 0

    def fresh(self, stem: str) -> str:
        self._counter += 1
        return f"{stem}_{self._counter}"

    def node(self, op: str, inputs: list[str], outputs: list[str] | None = None, domain: str = "", **attrs) -> str:
        outputs = outputs or [self.fresh(op.lower())]
        self.nodes.append(helper.make_node(op, inputs, outputs, domain=domain or None, **attrs))
        return outputs[0]

    def constant(self, name: str, value: np.ndarray) -> str:
        """An initializer, added once per name: a second call with the same name reuses the first (shared
        tables, shape constants); one with another shape or dtype is a naming bug and raises."""
        value = np.asarray(value)
        form = (value.shape, value.dtype)
        if name in self._names:
            if self._names[name] != form:
                raise ValueError(f"initializer '{name}' is already {self._names[name]}, not {form}")
        else:
            self._names[name] = form
            if self.external is not None and value.nbytes >= ExternalData.MIN_BYTES:
                self.initializers.append(self.external.tensor(name, value))
            else:
                self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def project(self, x: str, canonicals: list[str], outs: list[str]) -> None:
        """outs[j] = x @ W_j^T."""
        for canonical, out in zip(canonicals, outs):
            self.linear(self, x, canonical, out)

    def project_stacked(self, x: str, canonicals: list[str], out: str, biases: list[str] | None = None) -> bool:
        """out = x @ [W_0; W_1; ...]^T (+ the biases) as one wider product, when the Linear strategy can
        (a `stack` method: one kernel call reading x once). False: nothing was added."""
        stack = getattr(self.linear, "stack", None)
        return stack is not None and stack(self, x, canonicals, out, biases)

    def weight(self, canonical: str) -> str:
        """The canonical weight as an initializer in the graph's float type (once)."""
        return self.constant(canonical, self.weights[canonical].astype(self.float_type))


def gemm_linear(g: GraphBuilder, x: str, canonical: str, out: str) -> None:
    g.node("Gemm", [x, g.weight(canonical)], [out], transB=1)


def fp16_linear(g: GraphBuilder, x: str, canonical: str, out: str) -> None:
    """fp16 weights and product (onnxruntime's CPU Gemm has an fp16 kernel); activations stay fp32
    between layers, so norms, attention and the residual stream keep full precision."""
    w16 = g.constant(canonical + ".fp16", np.asarray(g.weights[canonical], dtype=np.float16))
    y16 = g.node("Gemm", [g.node("Cast", [x], to=TensorProto.FLOAT16), w16], transB=1)
    g.node("Cast", [y16], [out], to=TensorProto.FLOAT)


def value_info(spec: TensorSpec) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(spec.name, helper.np_dtype_to_tensor_dtype(np.dtype(spec.dtype)),
                                         list(spec.shape))


def matmul_linear(float_type=np.float32) -> Linear:
    """x [1,T,K] @ W^T by MatMul on a [K, N] initializer in `float_type` (activations cast around it)."""
    def linear(g: GraphBuilder, x: str, canonical: str, out: str) -> None:
        name = f"{canonical}.T.{np.dtype(float_type).name}"
        w = g.constant(name, np.ascontiguousarray(np.asarray(g.weights[canonical]).T, dtype=float_type))
        if np.dtype(float_type) == np.float32:
            g.node("MatMul", [x, w], [out])
            return
        y = g.node("MatMul", [g.node("Cast", [x], to=TensorProto.FLOAT16), w])
        g.node("Cast", [y], [out], to=TensorProto.FLOAT)
    return linear


class Fp16Activations:
    """Wraps a Linear strategy whose kernel takes fp16 input (MatMulNBits with float_type float16):
    casts the fp32 activations to fp16 and the product back, for single and stacked projections."""

    def __init__(self, inner):
        self.inner = inner
        self.report = getattr(inner, "report", {})

    def __call__(self, g: GraphBuilder, x: str, canonical: str, out: str) -> None:
        y = g.fresh("y16")
        self.inner(g, g.node("Cast", [x], to=TensorProto.FLOAT16), canonical, y)
        g.node("Cast", [y], [out], to=TensorProto.FLOAT)

    def stack(self, g: GraphBuilder, x: str, canonicals: list[str], out: str, biases=None) -> bool:
        if not hasattr(self.inner, "stack"):
            return False
        y = g.fresh("y16")
        if not self.inner.stack(g, g.node("Cast", [x], to=TensorProto.FLOAT16), canonicals, y, biases):
            return False
        g.node("Cast", [y], [out], to=TensorProto.FLOAT)
        return True
