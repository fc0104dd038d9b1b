"""Where a static (NPU) graph runs: one compiled graph behind `runner(feeds) -> {output name: array}`.

  cpu       onnxruntime's CPU execution provider
  qnn       onnxruntime-qnn's plugin execution provider on the HTP backend (libQnnHtp.so from its wheel;
            on x86 the HTP is simulated), CPU fallback disabled: a node QNN does not take fails the session
  openvino  OpenVINO's own runtime (core.read_model on the ONNX file), on its NPU when it has one, else
            its CPU plugin in fp32. Not onnxruntime's OpenVINO EP: that plugin lists no device on
            non-Intel CPUs (the vendor is read from /proc/cpuinfo, for the log)
Both plugins come with the `[npu]` extra.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
from pathlib import Path

import numpy as np

from ..errors import EdgespecError, MissingDependencyError
from ..sysinfo import cpu_vendor
from .huge_pages import SettlesPages, create_session

log = logging.getLogger(__name__)

STATIC_DEVICES = ("cpu", "qnn", "openvino")
NPU_EXTRA = "pip install 'edgespec[npu]'  (onnxruntime-qnn 2.7.0, openvino 2026.4.1)"
QNN_EP = "QNNExecutionProvider"
SIMULATED_SOC, SIMULATED_HTP_ARCH = "57", "75"  # Snapdragon 8 Gen 3
_qnn_lock = threading.Lock()


def open_runner(path: Path, device: str, threads: int = 0):
    if device not in STATIC_DEVICES:
        raise EdgespecError(f"device '{device}' cannot run a static export; choose one of {', '.join(STATIC_DEVICES)}")
    return OpenVinoRunner(path, threads) if device == "openvino" else OrtRunner(path, device, threads)


class OrtRunner(SettlesPages):
    def __init__(self, path: Path, device: str, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
        providers = ["CPUExecutionProvider"]
        if device == "qnn":
            options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
            options.add_provider_for_devices(qnn_devices(), qnn_options())
            providers = None
        # as runtimes/ort.py: read pages leave the resident set, prepacked weights move to huge pages
        self.session, self.huge_pages = create_session(
            lambda: ort.InferenceSession(str(path), options, providers=providers), Path(path).parent)
        self.outputs = [o.name for o in self.session.get_outputs()]

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.outputs, self.session.run(self.outputs, feeds)))

    def assignment(self) -> dict[str, list[str]]:
        """Execution provider -> op types of the nodes it was given (onnxruntime's own record)."""
        out: dict[str, list[str]] = {}
        for subgraph in self.session.get_provider_graph_assignment_info():
            out.setdefault(subgraph.ep_name, []).extend(node.op_type for node in subgraph.get_nodes())
        return out


def qnn_options() -> dict[str, str]:
    """The HTP backend from the wheel, fp32 ops computed in fp16 (what HTP has). In simulation (x86) the chip
    must be named: with the default (HTP v68, no SoC) MatMulNBits with int4/int8 blocks is rejected (Conv2d
    validation error 3110) and fp32 RMSNormalization / ReduceMean fail graph finalization (MEM_ALLOC), and
    fp16 precision needs a soc_model. Simulated: Snapdragon 8 Gen 3 (SM8650: soc_model 57, HTP v75),
    EDGESPEC_QNN_SOC / EDGESPEC_QNN_HTP_ARCH override; on a phone the EP reads the SoC's own."""
    options = {"backend_path": _qnn().get_qnn_htp_path(), "enable_htp_fp16_precision": "1"}
    simulated = platform.machine() in ("x86_64", "AMD64")
    for key, env, default in (("soc_model", "EDGESPEC_QNN_SOC", SIMULATED_SOC),
                              ("htp_arch", "EDGESPEC_QNN_HTP_ARCH", SIMULATED_HTP_ARCH)):
        value = os.environ.get(env, default if simulated else "")
        if value:
            options[key] = value
    return options


def _qnn():
    try:
        import onnxruntime_qnn
    except ImportError:
        raise MissingDependencyError(f"--device qnn needs the onnxruntime-qnn plugin: {NPU_EXTRA}") from None
    return onnxruntime_qnn


def qnn_devices() -> list:
    """The QNN plugin's devices, registering the plugin library with onnxruntime once per process."""
    import onnxruntime as ort

    qnn = _qnn()
    with _qnn_lock:
        devices = [d for d in ort.get_ep_devices() if d.ep_name == QNN_EP]
        if not devices:
            ort.register_execution_provider_library(QNN_EP, qnn.get_library_path())
            devices = [d for d in ort.get_ep_devices() if d.ep_name == QNN_EP]
    if not devices:
        raise EdgespecError(f"onnxruntime-qnn {getattr(qnn, '__version__', '?')} registered but offers no device "
                            f"on this machine")
    return devices[:1]


class OpenVinoRunner(SettlesPages):  # no huge-page copy: settle/close do nothing
    def __init__(self, path: Path, threads: int):
        try:
            import openvino as ov
        except ImportError:
            raise MissingDependencyError(f"--device openvino needs OpenVINO's runtime: {NPU_EXTRA}") from None
        core = ov.Core()
        target = "NPU" if "NPU" in core.available_devices else "CPU"
        config = {"INFERENCE_PRECISION_HINT": "f32"} if target == "CPU" else {}
        if threads and target == "CPU":
            config["INFERENCE_NUM_THREADS"] = threads
        log.info("OpenVINO %s on %s (CPU vendor %s; devices %s)", ov.get_version(), target, cpu_vendor(),
                 core.available_devices)
        self.target = target
        self.compiled = core.compile_model(core.read_model(str(path)), target, config)
        self.request = self.compiled.create_infer_request()
        self.outputs = [o.get_any_name() for o in self.compiled.outputs]

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.request.infer(feeds)
        return {name: np.asarray(results[output]) for name, output in zip(self.outputs, self.compiled.outputs)}

    def assignment(self) -> dict[str, list[str]]:
        """The whole graph is one compiled model on one OpenVINO device."""
        return {f"OpenVINO:{self.target}": [op.get_type_name() for op in self.compiled.get_runtime_model().get_ops()]}
