"""Regenerate the golden traces: `python -m tests.golden.make [--target cpu|web] [--out FILE]`.

Exports smollm2-135m with the target's options (cpu: the default export, cached under
EDGESPEC_CACHE/exports on first use; web: `--target web`, what the browser page runs), decodes the
prompts below greedily on onnxruntime and writes prompt ids, 32 tokens and per-step top-5 logits,
with the export's identity (source, graph contract, file hashes, export options).
Run it when an intended change alters an export's graph (the replay test says so).
`--print-export` only prints the target's export directory (making it if needed): .ci/run hands the
web one to the browser test.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import onnxruntime

import edgespec
from edgespec.export.manifest import read_manifest
from edgespec import hub
from edgespec.export.pipeline import ExportOptions, export
from edgespec.export.targets import TARGETS
from edgespec.loader import cached_export
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
TARGET_GOLDEN = {"cpu": GOLDEN, "web": Path(__file__).with_name(f"{MODEL}-web.json")}
EXPORT_CODE = ("models", "export", "quant", "formats")  # what a change of re-makes the web export


def machine_kind() -> dict:
    """What decides the int8-activation kernels' rounding: a replay on the same kind of machine reproduces
    every token; elsewhere a near-tie may flip (tests/golden/README.md)."""
    info = machine_info(THREADS)
    return {k: info[k] for k in ("cpu", "avx512", "avx512_vnni")}


def target_export(target: str) -> Path:
    """smollm2's export for `target`: the default one from edgespec's cache (cpu), else made once per
    version of the export code under EDGESPEC_CACHE/exports."""
    ref = hub.resolve_model(MODEL)
    if target == "cpu":
        return cached_export(ref)
    package = Path(edgespec.__file__).parent
    code = hashlib.sha256()
    for path in sorted(p for part in EXPORT_CODE for p in (package / part).rglob("*.py")):
        code.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    out = hub.cache_dir() / "exports" / f"{MODEL}-{target}-{code.hexdigest()[:12]}"
    if not (out / "edgespec.json").is_file():
        # validated on 64 tokens per text without llama.cpp: it feeds tests, and its golden checks it closely
        export(MODEL, out, ExportOptions(**TARGETS[target], validate_tokens=64, compare_llamacpp=False), force=True)
        # made by earlier export code and a day old (a worktree of other code may still be using a newer one)
        for older in out.parent.glob(f"{MODEL}-{target}-*"):
            if len(older.name) == len(out.name) and not older.is_symlink() and \
                    older.stat().st_mtime < time.time() - 86400:
                shutil.rmtree(older, ignore_errors=True)
    return out


def export_identity(export_dir: Path, target: str = "cpu") -> dict:
    manifest = read_manifest(export_dir)  # checks every file's sha256 against the manifest
    return {"source": {"name": manifest["source"]["name"], "sha256": manifest["source"].get("sha256")},
            "graph_contract_version": manifest["graph_contract"]["version"], "graph_version": GRAPH_VERSION,
            "options": asdict(ExportOptions(**TARGETS[target])), "max_len": manifest["max_len"],
            "files": {name: manifest["files"][name] for name in ("model.onnx", "model.onnx.data")}}


def make(out: Path = GOLDEN, target: str = "cpu") -> dict:
    directory = target_export(target)
    model = edgespec.load(str(directory), backend="ort", threads=THREADS)
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
        "format": FORMAT, "format_version": FORMAT_VERSION, "model": MODEL,
        "regenerate": REGENERATE + ("" if target == "cpu" else f" --target {target}"),
        "export": {"kind": "default int4 ONNX export (edgespec export MODEL, default options)" if target == "cpu"
                   else f"int4 ONNX export for --target {target} (edgespec export MODEL --target {target})",
                   "target": target, **export_identity(directory, target)},
        "produced_by": {"edgespec": edgespec.__version__, "onnxruntime": onnxruntime.__version__,
                        "threads": THREADS, **machine_kind(), "python": platform.python_version()},
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
    parser.add_argument("--target", choices=sorted(TARGET_GOLDEN), default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="default: tests/golden/smollm2-135m[-TARGET].json")
    parser.add_argument("--print-export", action="store_true", help="only print the target's export directory")
    args = parser.parse_args()
    if args.print_export:
        print(target_export(args.target))
        return
    golden = make(args.out or TARGET_GOLDEN[args.target], args.target)
    gaps = [s["top_logits"][0] - s["top_logits"][1] for c in golden["cases"] for s in c["steps"]]
    print(f"wrote {len(golden['cases'])} cases x {TOKENS} tokens; smallest top-1/top-2 gap {min(gaps):.4f}")


if __name__ == "__main__":
    main()
