"""`edgespec bench`: plain decoding of our export against llama.cpp on the same source GGUF.

Same prompts (chat-templated token ids), same threads, same number of new
tokens; engines run in their own processes (so each one's peak RSS is its own).
Every engine is loaded side by side and they take turns prompt by prompt, in an order that rotates, so
a ratio between any two engines (a speedup over plain, ours against a peer) compares runs made seconds
apart on this noisy machine; every repetition starts fresh processes. `turns="family"` loads one family
at a time (an engine and its speculative variants: edgespec-ort, edgespec-ort+auto; llama.cpp and
llama.cpp+lookup; ...) where memory is short: then ratios across families compare different minutes.
Reported per engine: prefill and decode tok/s (medians), peak RSS, and the effective weight bandwidth
(bytes of weights read per decoded token / time per token) beside the memory bandwidth this machine
measures for a large copy, the physical limit of plain decoding.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

import gguf as gguf_lib
import numpy as np

from .. import hub
from ..api import cached_export
from ..export.manifest import read_manifest
from ..loader import choose_backend
from .._version import __version__
from ..errors import EdgespecError
from ..progress import Progress
from ..speculative.drafters.select import check_spec
from ..sysinfo import machine_info, memory_bandwidth
from ..tokenizer import Tokenizer, chat_ids
from . import TURNS
from .report import by_category, category_markdown

log = logging.getLogger(__name__)


SHIPPED_PROMPTS = ("default", "suite")  # suite: chat, code, code_edit, summarisation, long_context_qa


def load_prompts(path: str | None = None) -> list[dict]:
    """MT-Bench / Spec-Bench `question.jsonl` rows: question_id, category, turns (a file, or a shipped set)."""
    name = path or "default"
    if name in SHIPPED_PROMPTS:
        text = resources.files("edgespec.bench").joinpath(f"prompts/{name}.jsonl").read_text(encoding="utf-8")
    elif not Path(path).is_file():
        raise EdgespecError(f"--prompts '{path}' is neither a file nor a shipped set ({', '.join(SHIPPED_PROMPTS)})")
    else:
        text = Path(path).read_text(encoding="utf-8")
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise EdgespecError(f"--prompts '{name}' line {number} is not JSON ({exc.msg}); expected one "
                                "question.jsonl object per line") from None
    if not rows:
        raise EdgespecError(f"--prompts '{name}' holds no prompts; expected question.jsonl rows")
    for row in rows:
        row = row if isinstance(row, dict) else {}
        if not isinstance(row.get("turns"), list) or not row["turns"]:
            raise EdgespecError(f"prompt row {row.get('question_id')} has no 'turns' list; expected the "
                                "question.jsonl format (question_id, category, turns)")
    return rows


def peer_versions() -> dict:
    import onnxruntime  # here: ~40 MB resident, which a llama.cpp-only process does not need (see loader)

    versions = {"edgespec": __version__, "onnxruntime": onnxruntime.__version__}
    try:
        import llama_cpp  # optional (the [llamacpp] extra)

        versions["llama-cpp-python"] = llama_cpp.__version__
    except ImportError:
        versions["llama-cpp-python"] = None
    return versions


def embedding_bytes(manifest: dict) -> int:
    """Bytes of an export's embedding table of its own (0 when tied to the lm_head's weight)."""
    c, q = manifest["config"], manifest["quantization"]
    if "embed_route" in q:
        return q["embed_route"]["bytes"]
    return c["vocab_size"] * c["hidden_size"] * (2 if q.get("embed") == "fp16" else 4)


def export_weights_per_token(manifest: dict) -> int:
    """Bytes of weights one decode step of an export reads: all of them but the embedding table (one row)."""
    return manifest["files"]["model.onnx.data"]["size"] - embedding_bytes(manifest)


def gguf_weights_per_token(gguf: Path) -> int:
    """The same for llama.cpp on a GGUF: every tensor but token_embd, plus it again when it is the tied lm_head."""
    reader = gguf_lib.GGUFReader(gguf)
    total = sum(int(t.n_bytes) for t in reader.tensors if t.name != "token_embd.weight")
    if not any(t.name == "output.weight" for t in reader.tensors):  # tied: the table is the lm_head too
        total += next(int(t.n_bytes) for t in reader.tensors if t.name == "token_embd.weight")
    return total


def _weights_per_token(export_dir: Path, gguf: Path, genai_model: str | None, static_dir: str | None = None) -> dict:
    """Bytes of weights one decode step reads, per engine."""
    manifest = read_manifest(export_dir, verify=False)
    c = manifest["config"]
    sizes = {"edgespec-ort": export_weights_per_token(manifest), "llama.cpp": gguf_weights_per_token(gguf)}
    if static_dir:  # the same weights, with fp16 offset terms
        static = read_manifest(static_dir, verify=False)
        sizes["edgespec-static"] = static["files"][static["static"]["data"]]["size"] - embedding_bytes(static)
    if genai_model:
        sizes["onnxruntime-genai"] = genai_weights_per_token(Path(genai_model))
    return sizes


def genai_weights_per_token(model_dir: Path) -> int:
    """The same for an onnxruntime-genai model directory: its files but a separate fp32 embedding table, which
    decoding does not read (with tied embeddings, e.g. smollm2, its builder gathers rows from the int4 lm_head
    and stores no table)."""
    import onnx

    decoder = json.loads((model_dir / "genai_config.json").read_text())["model"]["decoder"]
    graph = onnx.load(str(model_dir / decoder["filename"]), load_external_data=False).graph
    table = sum(next((int(e.value) for e in init.external_data if e.key == "length"), len(init.raw_data))
                for init in graph.initializer if init.name == "model.embed_tokens.weight")
    return sum(p.stat().st_size for p in model_dir.glob("*.onnx*")) - table


def resolve_backends(model: str, names: list[str], threads: int) -> list[str]:
    """bench --backend: ort / llamacpp / static (the NPU graphs on the CPU EP) as named; auto -> the one
    `--backend auto` picks here."""
    out = []
    for name in names:
        if name not in ("ort", "llamacpp", "auto", "static"):
            raise EdgespecError(f"bench --backend: unknown backend '{name}'; expected ort, llamacpp, auto or static")
        if name == "auto":
            name, why = choose_backend(hub.resolve_model(model), threads, 4096)
            log.info("bench: auto picked %s (%s)", name, why)
        if name not in out:
            out.append(name)
    return out


def engine_name(backend: str, mode: str = "off") -> str:
    return f"edgespec-{backend}" + ("" if mode == "off" else f"+{mode}")


def _check_genai_peer(model_dir: str, python: str) -> None:
    """Before any run: the onnxruntime-genai model directory and a Python that imports onnxruntime_genai (the
    bench otherwise failed minutes in, after the other engines' runs)."""
    if not (Path(model_dir) / "genai_config.json").is_file():
        raise EdgespecError(f"--ortgenai '{model_dir}' has no genai_config.json; expected a model directory made by "
                            "onnxruntime-genai's builder (benchmarks/plain-decode.md)")
    try:
        found = subprocess.run([python, "-c", "import onnxruntime_genai"], capture_output=True, timeout=120)
    except OSError as exc:
        raise EdgespecError(f"--peers-python '{python}' cannot run: {exc.strerror}") from None
    if found.returncode != 0:
        raise EdgespecError(f"'{python}' cannot import onnxruntime_genai: pass --peers-python with a Python that "
                            "has it (pip install 'edgespec[peers]' or onnxruntime-genai)")


def exports_by_mode(ref: hub.ModelRef, modes) -> dict[str, Path]:
    """The cached export each mode runs on, as `--spec MODE` opens it: the variant with layer plans for modes that
    skip layers (layerskip, s3d), the default for the others. A trained drafter lives in the variant it was trained
    for (PPD in the default, S3D in the plans one), so one export for every mode cannot run `--spec ppd,s3d`."""
    plans = {mode: check_spec(mode)[0].layer_plans for mode in modes}
    exports = {flag: cached_export(ref, layer_plans=flag) for flag in set(plans.values())}  # once per variant
    return {mode: exports[flag] for mode, flag in plans.items()}


def run_bench(model: str, tokens: int = 128, threads: int = 2, reps: int = 3, prompts_file: str | None = None,
              ortgenai_model: str | None = None, peers_python: str | None = None, backends=("ort",),
              modes=("off",), budget: int = 8, turns: str = "all") -> dict:
    """ortgenai_model: a model dir onnxruntime-genai's builder made from the same weights, run with
    peers_python (a Python that has onnxruntime-genai; the [peers] extra) — see benchmarks/plain-decode.md.
    turns: "all" (every engine loaded at once, taking turns) or "family" (see turn_groups)."""
    ours = {engine_name(b, m): {"backend": b, "spec_mode": m} for b in backends for m in modes}
    mode_exports: dict[str, Path] = {}
    speculating = any(m != "off" for m in modes)  # then the peers' own n-gram / prompt-lookup speculation too
    genai = (("onnxruntime-genai",) + (("onnxruntime-genai+ngram",) if speculating else ())) if ortgenai_model else ()
    engines = tuple(ours) + ("llama.cpp",) + (("llama.cpp+lookup",) if speculating else ()) + genai
    groups = turn_groups(engines, turns)
    if ortgenai_model:
        _check_genai_peer(ortgenai_model, peers_python or sys.executable)
    ref = hub.resolve_model(model)
    if ref.kind == "export":
        export_dir = ref.path
        gguf = Path(read_manifest(export_dir, verify=False)["source"]["path"])
    elif ref.kind == "gguf":
        mode_exports, gguf = exports_by_mode(ref, modes), ref.path
        export_dir = mode_exports.get("off") or next(iter(mode_exports.values()))
    else:
        raise EdgespecError("bench needs a GGUF source for llama.cpp: give a known name, a .gguf or an export of one")
    tokenizer = Tokenizer.from_hf_dir(export_dir)  # prompts are tokenized once, the same for every engine
    rows = load_prompts(prompts_file)
    prompts = [chat_ids(tokenizer, [{"role": "user", "content": r["turns"][0]}]) for r in rows]
    for engine, settings in ours.items():  # each mode on the export variant a user's --spec MODE opens
        if settings["backend"] == "ort" and settings["spec_mode"] in mode_exports:
            settings["export"] = str(mode_exports[settings["spec_mode"]])
    spec = {"export": str(export_dir), "gguf": str(gguf), "threads": threads, "tokens": tokens, "prompts": prompts,
            "n_ctx": max(len(p) for p in prompts) + tokens + 16, "genai_model": ortgenai_model, "budget": budget}
    if "static" in backends:  # the static (NPU) graphs on the CPU EP: what fixed shapes cost here
        spec["static_export"] = str(cached_export(ref, fmt="npu"))

    runs: dict[str, list] = {e: [] for e in engines}
    with Progress(reps * len(engines) * len(prompts), "bench", unit="runs") as bar:
        for rep in range(reps):
            for group in groups:
                specs = {engine: {**spec, **ours.get(engine, {}), "engine": engine} for engine in group}
                python = {engine: peers_python if engine.startswith("onnxruntime-genai") and peers_python
                          else sys.executable for engine in group}
                for engine, run in _run_interleaved(specs, python, len(prompts), rep, bar).items():
                    runs[engine].append(run)

    bandwidth = memory_bandwidth()
    weights = _weights_per_token(export_dir, gguf, ortgenai_model, spec.get("static_export"))
    report = {"model": ref.name, "export": str(export_dir), "gguf": str(gguf), "tokens": tokens, "reps": reps,
              "turns": turns,
              "machine": machine_info(threads), "versions": peer_versions(),
              "memory_bandwidth_gb_s": round(bandwidth, 2), "engines": {}, "prompts": rows,
              "command": "edgespec " + " ".join(sys.argv[1:]) if sys.argv and "edgespec" in sys.argv[0] else None}
    if len(set(mode_exports.values())) > 1:
        report["exports_by_mode"] = {mode: str(path) for mode, path in mode_exports.items()}
    for engine, reps_runs in runs.items():
        decode = [sum(r["steps"] for r in run["results"]) / sum(r["decode_s"] for r in run["results"])
                  for run in reps_runs]
        prefill = [sum(r["prompt_tokens"] for r in run["results"]) / sum(r["prefill_s"] for r in run["results"])
                   for run in reps_runs]
        tok_s = float(np.median(decode))
        report["engines"][engine] = {
            "version": reps_runs[0].get("version"),
            "decode_tok_s": round(tok_s, 2), "prefill_tok_s": round(float(np.median(prefill)), 1),
            "decode_tok_s_runs": [round(x, 2) for x in decode],
            "peak_rss_mb": round(max(run["peak_rss"] for run in reps_runs) / 2**20, 1),
            "weight_bytes_per_token": weights[_base(engine)],
            "effective_weight_gb_s": round(weights[_base(engine)] * tok_s / 1e9, 2),
            "token_ids": [r["token_ids"] for r in reps_runs[0]["results"]],
        }
        results = [r for run in reps_runs for r in run["results"]]
        if "spec" in results[0]:
            steps = sum(r["spec"]["steps"] for r in results)
            report["engines"][engine]["tokens_per_step"] = round(
                sum(r["spec"]["steps"] + r["spec"]["accepted"] for r in results) / steps, 3)
        if "backend_s" in results[0]:  # time per token outside llama_decode: our Python per step
            outside = sum(r["decode_s"] + r["prefill_s"] - r["backend_s"] for r in results)
            report["engines"][engine]["python_overhead_ms_per_step"] = round(
                1e3 * outside / sum(r["steps"] + 1 for r in results), 3)
    report["categories"] = by_category(runs, rows)
    report["decode_ratio"], report["identical_outputs"] = {}, {}
    peers = [e for e in engines if not e.startswith("edgespec")]
    for engine in engines:
        if not engine.startswith("edgespec"):
            continue
        plain = engine.split("+")[0]
        dynamic = engine.replace("edgespec-static", "edgespec-ort")  # fixed shapes against dynamic ones
        for other in peers + ([plain] if plain != engine else []) + ([dynamic] if dynamic in engines and
                                                                     dynamic != engine else []):
            ratio, same = _compare(report["engines"][engine], report["engines"][other])
            report["decode_ratio"][f"{engine} / {other}"] = ratio
            report["identical_outputs"][f"{engine} vs {other}"] = f"{same}/{len(prompts)}"
    return report


def turn_groups(engines, turns: str) -> list[list[str]]:
    """The engines loaded side by side, taking turns: all of them, or one family at a time."""
    if turns == "all":
        return [list(engines)]
    if turns != "family":
        raise EdgespecError(f"--turns {turns!r}: expected one of {', '.join(TURNS)}")
    families: dict[str, list] = {}
    for engine in engines:
        families.setdefault(_family(engine), []).append(engine)
    return list(families.values())


def _family(engine: str) -> str:
    """Engines that take turns prompt by prompt: an engine and its speculative variants; the static graphs
    beside the dynamic export they are compared with."""
    base = engine.split("+")[0]
    return "edgespec-ort" if base == "edgespec-static" else base


def _base(engine: str) -> str:
    """The engine whose weights an engine reads: our llama.cpp backend reads the GGUF."""
    engine = engine.split("+")[0]
    if engine == "llama.cpp":
        return engine
    return "llama.cpp" if engine == "edgespec-llamacpp" else engine


def _compare(ours: dict, theirs: dict) -> tuple[float, int]:
    same = sum(x == y for x, y in zip(ours["token_ids"], theirs["token_ids"]))
    return round(ours["decode_tok_s"] / theirs["decode_tok_s"], 3), same


def _run_interleaved(specs: dict[str, dict], python: dict[str, str], n_prompts: int, rep: int, bar) -> dict:
    """Load every engine of `specs` in its own worker, then run prompt by prompt, each prompt on every
    engine in turn (the order rotates with the prompt and repetition). -> engine -> {results, peak_rss, version}"""
    if rep == 0 and any(spec.get("spec_mode") in ("auto", "layerskip") and spec.get("backend") == "ort"
                        for spec in specs.values()):  # the backend with layer plans
        # the worker calibrates on first use of an export, before it says it is ready
        log.info("loading %s (a first --spec auto/layerskip on an export calibrates it here first: about 10-20 s)",
                 ", ".join(specs))
    workers = {engine: _Worker(spec, python[engine]) for engine, spec in specs.items()}
    try:
        results: dict[str, list] = {engine: [] for engine in specs}
        names = list(specs)
        for i in range(n_prompts):
            shift = (i + rep) % len(names)
            for engine in names[shift:] + names[:shift]:
                results[engine].append(workers[engine].ask(str(i)))
                bar.update(1)
        return {engine: {"results": results[engine], **workers[engine].ask("quit")} for engine in specs}
    finally:
        for worker in workers.values():
            worker.close()


class _Worker:
    """One engine in its own process (edgespec.bench.worker), answering one JSON line per request."""

    def __init__(self, spec: dict, python: str):
        self.engine = spec["engine"]
        # PYTHONPATH lets a peers-only Python import the worker module (it needs only numpy besides its engine).
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        self.stderr = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: engines' chatter cannot block them
        self.process = subprocess.Popen([python, "-m", "edgespec.bench.worker", json.dumps(spec)], env=env, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr)
        self.read()  # {"ready": true} once loaded

    def read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            self.stderr.seek(0)
            raise EdgespecError(f"bench worker for {self.engine} failed (exit code {self.process.returncode}):\n"
                                f"{self.stderr.read().strip()[-2000:]}")
        return json.loads(line)

    def ask(self, request: str) -> dict:
        try:
            self.process.stdin.write(request + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # it died: read() says how
        return self.read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.stderr.close()


def markdown(report: dict) -> str:
    m = report["machine"]
    kind = "plain and speculative decoding" if any("+" in e for e in report["engines"]) else "plain decoding"
    lines = [f"### {report['model']}: {kind}, {report['tokens']} new tokens, {m['threads']} threads, "
             f"median of {report['reps']} interleaved runs"
             + (", one engine family at a time" if report.get("turns") == "family" else ", every engine taking turns"),
             "",
             f"Machine: {m['cpu']}, {m['cores']} cores, AVX-512 {'yes' if m['avx512'] else 'no'}, VNNI "
             f"{'yes' if m['avx512_vnni'] else 'no'}; memory bandwidth (copy) {report['memory_bandwidth_gb_s']} GB/s. "
             f"Versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}.",
             "",
             "| engine | version | decode tok/s | prefill tok/s | peak RSS MB | weights read/token MB | effective GB/s |",
             "|---|---|---|---|---|---|---|"]
    for name, e in report["engines"].items():
        lines.append(f"| {name} | {e.get('version')} | {e['decode_tok_s']} | {e['prefill_tok_s']} | {e['peak_rss_mb']} | "
                     f"{e['weight_bytes_per_token'] / 1e6:.0f} | {e['effective_weight_gb_s']} |")
    lines.append("")
    if report.get("command"):
        lines += [f"Command: `{report['command']}`", ""]
    extras = [f"{name}: {e['tokens_per_step']} tokens/step" for name, e in report["engines"].items()
              if "tokens_per_step" in e and "+" in name] + \
             [f"{name}: Python overhead {e['python_overhead_ms_per_step']} ms/step outside llama_decode"
              for name, e in report["engines"].items() if "python_overhead_ms_per_step" in e]
    lines += [f"{x}." for x in extras] + ([""] if extras else [])
    if len(report.get("categories", {})) > 1:
        lines += [category_markdown(report["categories"]), ""]
    for (key, value), same in zip(report["decode_ratio"].items(), report["identical_outputs"].values()):
        lines.append(f"Decode ratio {key}: **{value}**; identical greedy outputs: {same}.")
    return "\n".join(lines)
