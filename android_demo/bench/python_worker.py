"""The Python side of bench/node-vs-python.js: the same export decoded by edgespec's own engine.

Reads JSON lines {"prompt_ids", "spec": off|ngram|auto|ppd|s3d, "tokens"} on stdin and answers
{"tokens", "decode_s", "drafted", "accepted"} on stdout. `auto` is edgespec's own `auto_drafter` with no trained or
layer-skip drafters, as the JS engine's autoDrafter is built here (the controller over the n-gram drafter with a
freshly measured cost curve), so both sides run the same algorithm.
Usage (from the repo root): PYTHONPATH=. python android_demo/bench/python_worker.py EXPORT_DIR THREADS
"""

import json
import sys
import time

from edgespec.export.manifest import manifest_config, read_manifest
from edgespec.export.trained import load_drafter
from edgespec.runtimes.ort import OrtBackend
from edgespec.sampling import Sampler, SamplingParams
from edgespec.speculative.calibration.costs import measure_cost_model
from edgespec.speculative.drafters.combined import auto_drafter
from edgespec.speculative.drafters.ngram import NgramDrafter
from edgespec.speculative.drafters.ppd import PPDDrafter
from edgespec.speculative.drafters.s3d import S3DDrafter
from edgespec.speculative.engine import SpecStats, decode


def main() -> None:
    directory, threads = sys.argv[1], int(sys.argv[2])
    manifest = read_manifest(directory)
    backend = OrtBackend(f"{directory}/{manifest['graph']['file']}", manifest_config(manifest), manifest["max_len"],
                         threads=threads)
    drafters = {}
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("calibrate"):  # the JS side sends the calibration prompt's ids (same tokenizer)
            cost = measure_cost_model(backend, request["calibrate"], reps=3)
            drafters["auto"] = lambda: auto_drafter(backend, backend.config.num_layers, cost, None, max_budget=8)
            drafters["ngram"] = NgramDrafter
            kinds = {d.get("kind") for d in manifest.get("drafters", []) if d.get("file")}
            if "ppd" in kinds:
                drafters["ppd"] = lambda rows=load_drafter(directory, "ppd")[0]: PPDDrafter(rows, cost=cost)
            if "s3d" in kinds:
                drafters["s3d"] = lambda trained=load_drafter(directory, "s3d"): S3DDrafter(
                    backend, backend.config.num_layers, trained[1]["skip"], trained[0])
            print(json.dumps({"ok": True}), flush=True)
            continue
        drafter = drafters[request["spec"]]() if request["spec"] != "off" else None
        tokens, first, stats = [], None, SpecStats()
        for event in decode(backend, request["prompt_ids"], Sampler(SamplingParams()), request["tokens"], drafter,
                            budget=8, stats=stats):
            first = first or time.perf_counter()
            tokens.append(event.token)
        print(json.dumps({"tokens": tokens, "decode_s": time.perf_counter() - first, "drafted": stats.drafted,
                          "accepted": stats.accepted}), flush=True)
        backend.reset()


if __name__ == "__main__":
    main()
