"""Regenerate the golden traces: `python -m tests.golden.make [--out tests/golden/smollm2-135m.json]`.

Exports smollm2-135m with the default options (cached under EDGESPEC_CACHE/exports on first use),
decodes the prompts below greedily on onnxruntime and writes prompt ids, 32 tokens and per-step
top-5 logits, with the export's identity (source, graph contract, file hashes, export options).
Run it when an intended change alters the default export's graph (the replay test says so).
"""

from __future__ import annotations

import argparse
import json
import platform
from dataclasses import asdict
from pathlib import Path

import onnxruntime

import edgespec
from edgespec.export.manifest import read_manifest
from edgespec.export.pipeline import ExportOptions
from edgespec.models.llama import GRAPH_VERSION
from edgespec.sysinfo import machine_info

from .trace import FORMAT, FORMAT_VERSION, REGENERATE, digest, trace

MODEL = "smollm2-135m"
TOKENS = 32
THREADS = 2
LOGIT_TOLERANCE = 0.05  # |logit difference| a replay may show (other CPUs round int8 activations differently)
CASES = [
    {"name": "chat-capital", "messages": [{"role": "user", "content": "What is the capital of France?"}]},
    {"name": "chat-system-haiku", "messages": [{"role": "system", "content": "You are a concise poet."},
                                               {"role": "user", "content": "Write a haiku about autumn."}]},
    {"name": "raw-code", "text": "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"},
    {"name": "raw-prose", "text": "The history of the printing press begins"},
]
GOLDEN = Path(__file__).with_name(f"{MODEL}.json")


def export_identity(export_dir: Path) -> dict:
    manifest = read_manifest(export_dir)  # checks every file's sha256 against the manifest
    return {"source": {"name": manifest["source"]["name"], "sha256": manifest["source"].get("sha256")},
            "graph_contract_version": manifest["graph_contract"]["version"], "graph_version": GRAPH_VERSION,
            "options": asdict(ExportOptions()), "max_len": manifest["max_len"],
            "files": {name: manifest["files"][name] for name in ("model.onnx", "model.onnx.data")}}


def make(out: Path = GOLDEN) -> dict:
    model = edgespec.load(MODEL, backend="ort", threads=THREADS)
    cases = []
    for case in CASES:
        if "messages" in case:
            ids = model.chat_prompt(case["messages"])
            entry = {"name": case["name"], "chat_template": True, "messages": case["messages"]}
        else:
            ids = model.tokenizer.encode(case["text"])
            entry = {"name": case["name"], "chat_template": False, "text": case["text"]}
        tokens, rows = trace(model.backend, ids, TOKENS)
        cases.append({**entry, "prompt_text": model.tokenizer.decode(ids), "prompt_ids": ids, "tokens": tokens,
                      "output_text": model.tokenizer.decode(tokens), "steps": [digest(r) for r in rows]})
    golden = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "model": MODEL, "regenerate": REGENERATE,
        "export": {"kind": "default int4 ONNX export (edgespec export MODEL, default options)",
                   **export_identity(Path(model.source))},
        "produced_by": {"edgespec": edgespec.__version__, "onnxruntime": onnxruntime.__version__,
                        "threads": THREADS, "cpu": machine_info(THREADS)["cpu"], "python": platform.python_version()},
        "protocol": {
            "decoding": "greedy: argmax of the row's logits (an exact tie goes to the lowest id)",
            "prefill": "feed all prompt_ids in one pass (positions 0..P-1, causal), logits_index = [P-1]; "
                       "tokens[0] is the argmax of that row",
            "step": "then feed tokens[i-1] alone (position P+i-1, logits_index = [0]); tokens[i] is its argmax",
            "tokens": TOKENS, "stop_on_eos": False,
            "steps": "steps[i] digests the row that chose tokens[i]: top_ids = the 5 highest logits (descending), "
                     "top_logits = their values (rounded to 4 decimals)"},
        "tolerance": {
            "logit_abs": LOGIT_TOLERANCE,
            "rule": "for every step compared, the replay's logit of each golden top_id is within logit_abs of "
                    "top_logits; tokens are equal, except that a replay may pick another token where the golden "
                    "top-1 minus top-2 gap is below 2 * logit_abs (a near-tie); the case's comparison ends there"},
        "cases": cases,
    }
    out.write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return golden


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=GOLDEN)
    golden = make(parser.parse_args().out)
    gaps = [s["top_logits"][0] - s["top_logits"][1] for c in golden["cases"] for s in c["steps"]]
    print(f"wrote {len(golden['cases'])} cases x {TOKENS} tokens; smallest top-1/top-2 gap {min(gaps):.4f}")


if __name__ == "__main__":
    main()
