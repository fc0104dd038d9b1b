"""Peak and settled RSS while onnxruntime creates a session of an export, per session-option set,
each in a fresh process (ru_maxrss), beside llama.cpp loading the GGUF.

    python benchmarks/scripts/load_rss.py EXPORT_DIR [GGUF] [--json=out.json]
"""

from __future__ import annotations

import json
import subprocess
import sys

OPTION_SETS = {
    "default": {},  # mapped pages released while the session is created (runtimes/mapped_pages.py), since stop 38
    "pages_kept": {"__release": "0"},
    "disable_prepacking": {"session.disable_prepacking": "1"},
    "device_allocator_for_initializers": {"session.use_device_allocator_for_initializers": "1"},
    "no_arena": {"__arena": "0"},
    "disable_prepacking+no_arena": {"session.disable_prepacking": "1", "__arena": "0"},
}

CHILD_ORT = r"""
import json, resource, sys, psutil, numpy as np, onnxruntime as ort
path, opts = sys.argv[1], json.loads(sys.argv[2])
o = ort.SessionOptions(); o.intra_op_num_threads = 2
from edgespec.runtimes import mapped_pages
for k, v in opts.items():
    if k == "__arena": o.enable_cpu_mem_arena = v == "1"
    elif k == "__release": mapped_pages.ENABLED = v == "1"
    else: o.add_session_config_entry(k, v)
real = ort.SessionOptions
ort.SessionOptions = lambda: o  # the backend's own options, plus the entries under test
from pathlib import Path
from edgespec.export.manifest import read_manifest, manifest_config
from edgespec.runtimes.ort import OrtBackend
d = Path(path).parent
import time
started = time.perf_counter()
b = OrtBackend(path, manifest_config(read_manifest(d, verify=False)), 256, 2)
load_s = time.perf_counter() - started
loaded = psutil.Process().memory_info().rss
peak_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
b.forward(np.arange(8))
print(json.dumps({"load_s": load_s, "peak_mb": peak_load, "after_load_mb": loaded / 2**20,
                  "after_forward_mb": psutil.Process().memory_info().rss / 2**20,
                  "peak_forward_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

CHILD_LLAMA = r"""
import json, resource, sys, psutil, llama_cpp
m = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=512, n_threads=2, verbose=False)
loaded = psutil.Process().memory_info().rss
m.eval(list(range(1, 9)))
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "after_load_mb": loaded / 2**20,
                  "after_forward_mb": psutil.Process().memory_info().rss / 2**20}))
"""


def run(code: str, *args: str) -> dict:
    import os

    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--json")]
    export, gguf = args[0], (args[1] if len(args) > 1 else None)
    data_mb = __import__("os").path.getsize(f"{export}/model.onnx.data") / 2**20
    baseline = run("import json,resource,psutil,numpy,onnxruntime;print(json.dumps({'peak_mb': resource.getrusage("
                   "resource.RUSAGE_SELF).ru_maxrss/1024, 'after_mb': psutil.Process().memory_info().rss/2**20}))")
    result = {"export": export, "data_mb": round(data_mb, 1), "python_onnxruntime_mb": round(baseline["after_mb"], 1),
              "sessions": {}}
    for name, opts in OPTION_SETS.items():
        r = run(CHILD_ORT, f"{export}/model.onnx", json.dumps(opts))
        r["load_factor_peak"] = round((max(r["peak_mb"], r["after_forward_mb"]) - baseline["after_mb"]) / data_mb, 3)
        result["sessions"][name] = {k: round(v, 1) if k.endswith("mb") else v for k, v in r.items()}
        print(name, result["sessions"][name], flush=True)
    if gguf:
        result["llama.cpp"] = run(CHILD_LLAMA, gguf)
        print("llama.cpp", result["llama.cpp"])
    for a in sys.argv[1:]:
        if a.startswith("--json="):
            open(a.split("=", 1)[1], "w").write(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
