"""Per-op-type time of 64 decode steps (after a 64-token prefill), from onnxruntime's own profiler.

Usage: python benchmarks/scripts/op_profile.py DIR
DIR is an edgespec export (run through OrtBackend, in-place KV buffers) or an onnxruntime-genai
model dir (genai_config.json; run as a plain session, past KV fed back). 2 threads."""
import collections
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

STEPS, PREFILL = 64, 64
_SESSION_OPTIONS = ort.SessionOptions  # the real class: run_edgespec swaps ort.SessionOptions for the function below


def profiled_options() -> ort.SessionOptions:
    options = _SESSION_OPTIONS()
    options.intra_op_num_threads, options.enable_profiling = 2, True
    options.profile_file_prefix = "/tmp/op_profile"
    return options


def run_edgespec(d: Path):
    from edgespec.export.manifest import manifest_config, read_manifest
    from edgespec.runtimes.ort import OrtBackend

    ort.SessionOptions = profiled_options  # OrtBackend builds its session from these
    try:
        backend = OrtBackend(str(d / "model.onnx"), manifest_config(read_manifest(d)), 1024, 2)
    finally:
        ort.SessionOptions = _SESSION_OPTIONS
    backend.forward(list(range(1000, 1000 + PREFILL)), logits_for=[PREFILL - 1])
    for i in range(STEPS):
        backend.forward([2000 + i], logits_for=[0])
    return backend.session


def run_genai(d: Path):
    decoder = json.loads((d / "genai_config.json").read_text())["model"]["decoder"]
    session = ort.InferenceSession(str(d / "model.onnx"), profiled_options(), providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    past = {i.name: np.zeros((1, decoder["num_key_value_heads"], 0, decoder["head_size"]), np.float32)
            for i in session.get_inputs() if i.name.startswith("past")}

    def step(ids: np.ndarray, length: int) -> None:
        feed = {"input_ids": ids.astype(np.int64), "attention_mask": np.ones((1, length), np.int64), **past}
        for name, value in zip(outputs[1:], session.run(outputs, feed)[1:]):
            past[name.replace("present", "past_key_values")] = value

    step(np.arange(1000, 1000 + PREFILL)[None], PREFILL)
    for i in range(STEPS):
        step(np.array([[2000 + i]]), PREFILL + 1 + i)
    return session


def main() -> None:
    d = Path(sys.argv[1])
    session = (run_genai if (d / "genai_config.json").exists() else run_edgespec)(d)
    events = json.loads(Path(session.end_profiling()).read_text())
    per_op, total, runs = collections.Counter(), 0, 0
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"]
        elif e.get("cat") == "Session" and e["name"] == "model_run":
            total, runs = total + e["dur"], runs + 1
    print(f"{runs} runs: {total / 1000:.1f} ms in model_run, {sum(per_op.values()) / 1000:.1f} ms in kernels")
    for op, us in per_op.most_common(15):
        print(f"{op:34s} {us / 1000:8.1f} ms")


if __name__ == "__main__":
    main()
