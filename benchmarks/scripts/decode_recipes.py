"""Plain decode tok/s of several exports of one model and llama.cpp on its GGUF, interleaved in one
process (each repetition runs every engine once, in a rotating order), 2 threads.

    python benchmarks/scripts/decode_recipes.py SOURCE.gguf LABEL=EXPORT_DIR ... [--reps 3] [--tokens 64]
"""
import sys
import time

import numpy as np
from llama_cpp import Llama

from edgespec.export.manifest import manifest_config, read_manifest
from edgespec.runtimes.ort import OrtBackend

gguf = sys.argv[1]
reps = int(sys.argv[sys.argv.index("--reps") + 1]) if "--reps" in sys.argv else 3
n = int(sys.argv[sys.argv.index("--tokens") + 1]) if "--tokens" in sys.argv else 64
exports = dict(a.split("=", 1) for a in sys.argv[2:] if "=" in a)
prompt = list(range(1000, 1064))


def timed(reset, feed):
    """tok/s of n single-token steps after a 64-token prompt."""
    reset()
    feed(prompt)
    t = time.perf_counter()
    for i in range(n):
        feed([2000 + i])
    return n / (time.perf_counter() - t)


def ours(backend):
    return timed(backend.reset, backend.forward)


def theirs(llm):
    return timed(llm.reset, llm.eval)


engines = {label: (ours, OrtBackend(d + "/model.onnx", manifest_config(read_manifest(d, verify=False)), 1024, 2))
           for label, d in exports.items()}
engines["llama.cpp"] = (theirs, Llama(model_path=gguf, n_ctx=1024, n_threads=2, n_batch=512, verbose=False))
runs = {label: [] for label in engines}
labels = list(engines)
for rep in range(reps):
    for label in labels[rep % len(labels):] + labels[:rep % len(labels)]:
        run, engine = engines[label]
        runs[label].append(run(engine))
median = {label: float(np.median(v)) for label, v in runs.items()}
for label, v in runs.items():
    print(f"| {label} | {median[label]:.1f} | {median[label] / median['llama.cpp']:.2f} | {[round(x, 1) for x in v]} |")
