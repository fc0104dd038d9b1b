"""Decode step time of several engines, each loaded in its own process, taking turns block by block.

Two onnxruntime sessions in one process bias each other (the one created second steps 2-4% faster,
plain-decode.md stop 38), and separate runs drift 5-10% with the machine's state; processes loaded side by
side that take turns (in a shuffled order each round) see the same machine. Each block is a 40-token prompt
(`--prompt`) then 128 greedy single-token steps; the result is ms per step, and each engine's median ratio to
the first. Name an engine twice to see the noise floor (and the first-loaded process's bias).

    python benchmarks/scripts/turns_ab.py ROUNDS ENGINE [ENGINE ...] [--prompt=40]

ENGINE is KIND:TARGET[&VAR=VALUE...]:
    generate:MODEL       edgespec.load(MODEL) and Model.generate (after Model.settle()), what users run
    forward:EXPORT_DIR   OrtBackend.forward alone (no engine, no sampler)
    genai:GENAI_DIR      onnxruntime-genai's own generator loop (run by --peers-python)
    genai-model:GENAI_DIR  genai's model.onnx in a plain onnxruntime session, IOBinding like ours
VAR=VALUE pairs go into that process's environment (EDGESPEC_HUGE_PAGES=0 turns the huge-page move off).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np

STEPS = 128

WORKER = r"""
import json, os, sys, time, numpy as np
kind, target, prompt_len, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
prompt = list(range(100, 100 + prompt_len))
if kind == "generate":
    import edgespec
    model = edgespec.load(target, backend="ort", threads=2, context=4096, spec="off")
    model.settle()
    def block():
        g = model.generate(prompt, max_tokens=steps + 1, stop_on_eos=False); list(g)
        return g.stats.decode_seconds / (g.stats.generated_tokens - 1)
elif kind == "forward":
    from pathlib import Path
    from edgespec.export.manifest import manifest_config, read_manifest
    from edgespec.runtimes.ort import OrtBackend
    config = manifest_config(read_manifest(Path(target), verify=False))
    b = OrtBackend(str(Path(target) / "model.onnx"), config, 4096, 2)
    b.settle()
    def block():
        b.cache_len = 0
        token = int(np.argmax(b.forward(prompt, logits_for=[prompt_len - 1])[-1])); start = time.perf_counter()
        for _ in range(steps):
            token = int(np.argmax(b.forward([token], logits_for=[0])[-1]))
        return (time.perf_counter() - start) / steps
elif kind == "genai":
    import onnxruntime_genai as og
    config = og.Config(target)  # 2 threads, as every engine here (the builder's config names none)
    config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": 2}}}}))
    model = og.Model(config)
    def block():
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=prompt_len + steps + 1, do_sample=False)
        g = og.Generator(model, params); g.append_tokens(prompt); g.generate_next_token(); start = time.perf_counter()
        for _ in range(steps):
            g.generate_next_token()
        return (time.perf_counter() - start) / steps
elif kind == "genai-model":
    import onnxruntime as ort
    options = ort.SessionOptions(); options.intra_op_num_threads = 2; options.inter_op_num_threads = 1
    s = ort.InferenceSession(f"{target}/model.onnx", options, providers=["CPUExecutionProvider"])
    c = json.load(open(f"{target}/genai_config.json"))["model"]["decoder"]
    io, kv = s.io_binding(), []
    for i in range(c["num_hidden_layers"]):
        for k in ("key", "value"):
            kv.append(np.zeros((1, c["num_key_value_heads"], 4096, c["head_size"]), np.float32))
            v = ort.OrtValue.ortvalue_from_numpy(kv[-1])
            io.bind_ortvalue_input(f"past_key_values.{i}.{k}", v); io.bind_ortvalue_output(f"present.{i}.{k}", v)
    def run(ids, past):
        io.bind_cpu_input("input_ids", np.array([ids], np.int64))
        io.bind_cpu_input("attention_mask", np.ones((1, past + len(ids)), np.int64))
        io.bind_output("logits"); s.run_with_iobinding(io)
        return int(np.argmax(io.get_outputs()[0].numpy()[0, -1]))
    def block():
        token, past = run(prompt, 0), prompt_len; start = time.perf_counter()
        for _ in range(steps):
            token = run([token], past); past += 1
        return (time.perf_counter() - start) / steps
else:
    sys.exit(f"unknown engine kind {kind!r}: generate, forward, genai, genai-model")
block()
huge = sum(int(l.split()[1]) for l in open("/proc/self/smaps") if l.startswith("AnonHugePages:")) >> 10
print("ready", huge, flush=True)
for _ in sys.stdin:
    print(block(), flush=True)
"""


def start(engine: str, prompt_len: int, peers_python: str) -> subprocess.Popen:
    spec, *assignments = engine.split("&")
    kind, target = spec.split(":", 1)
    env = dict(os.environ, **dict(a.split("=", 1) for a in assignments))
    python = peers_python if kind == "genai" else sys.executable
    worker = subprocess.Popen([python, "-c", WORKER, kind, target, str(prompt_len), str(STEPS)], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    ready = worker.stdout.readline().split()
    if not ready or ready[0] != "ready":
        sys.exit(f"{engine}: the worker did not load (run it alone to see why)")
    worker.huge_mb = int(ready[1])  # its memory in 2 MB pages once loaded
    return worker


def main(argv: list[str]) -> None:
    options = dict(a[2:].split("=", 1) for a in argv if a.startswith("--"))
    rounds, *engines = [a for a in argv if not a.startswith("--")]
    prompt_len = int(options.get("prompt", 40))
    workers = [start(e, prompt_len, options.get("peers-python", sys.executable)) for e in engines]
    times = [[] for _ in workers]
    for _ in range(int(rounds)):
        for i in random.sample(range(len(workers)), len(workers)):
            workers[i].stdin.write("go\n")
            workers[i].stdin.flush()
            times[i].append(float(workers[i].stdout.readline()) * 1e3)
    for w in workers:
        w.stdin.close()
        w.wait()
    first = np.array(times[0])
    report = []
    for engine, t, w in zip(engines, times, workers):
        ratio = np.array(t) / first
        report.append({"engine": engine, "huge_pages_mb": w.huge_mb, "median_ms": round(float(np.median(t)), 3),
                       "ratio_to_first": round(float(np.median(ratio)), 3),
                       "ratio_iqr": [round(float(np.percentile(ratio, q)), 3) for q in (25, 75)]})
        print(f"{engine[-48:]:48s} {np.median(t):8.3f} ms/step   / first {np.median(ratio):.3f} "
              f"(IQR {np.percentile(ratio, 25):.3f}-{np.percentile(ratio, 75):.3f}), {w.huge_mb} MB in huge pages")
    if "json" in options:
        with open(options["json"], "w") as f:
            json.dump({"rounds": int(rounds), "prompt_tokens": prompt_len, "steps": STEPS, "engines": report}, f,
                      indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
