"""edgespec command line: a thin layer over the Python API.

Errors the user can fix (EdgespecError) print one line and exit non-zero,
without a traceback; `-v` shows debug logging.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from . import api, hub
from ._version import __version__
from .bench.costs import cost_markdown, run_cost_curves
from .bench.report import plot
from .bench.runner import markdown, peer_versions, resolve_backends, run_bench
from .chat import run_chat
from .errors import EdgespecError
from .export.manifest import read_manifest
from .export.targets import TARGETS  # presets as data: no onnxruntime behind it
from .formats import open_weights
from .memory import default_budget
from .sampling import SamplingParams
from .speculative.drafters.select import check_spec
from .sysinfo import machine_info, peak_rss

log = logging.getLogger("edgespec")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(message)s" if not args.verbose else "%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        return args.func(args) or 0
    except EdgespecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgespec", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"edgespec {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    p = sub.add_parser("pull", help="fetch a known model into the local cache")
    p.add_argument("name", nargs="?", help="known model name (see --list)")
    p.add_argument("--list", action="store_true", help="list the known models")
    p.add_argument("--force", action="store_true", help="fetch again even if cached and valid")
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("info", help="describe a model or an export (its manifest and validation)")
    p.add_argument("model", help="known name, .gguf file, HF directory or export directory")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("export", help="export a model to ONNX (int4 by default), validated, with a manifest")
    p.add_argument("model", nargs="?", default=hub.DEFAULT_MODEL)
    p.add_argument("-o", "--output", help="output directory (default: ./<model>-<precision>)")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--int4", dest="precision", action="store_const", const="int4")
    precision.add_argument("--fp32", dest="precision", action="store_const", const="fp32")
    precision.add_argument("--fp16", dest="precision", action="store_const", const="fp16")
    p.add_argument("--format", default="onnx", choices=["onnx", "gguf"],
                   help="gguf: a GGUF for llama.cpp (Q4_0 for --int4, F32 for --fp32, or --gguf-type)")
    p.add_argument("--gguf-type", help="Q8_0 | Q4_0 | F16 | F32 (with --format gguf)")
    p.add_argument("--block-size", type=int, default=32, help="int4 block for requantized weights (16/32/64/128)")
    p.add_argument("--accuracy-level", type=int, default=4,
                   help="MatMulNBits accuracy level for int4 weights: 4 = int8 activations (fast, like llama.cpp), "
                        "0 = fp32 activations (exact, 0.6-0.9x speed); int8 weights always use 4")
    p.add_argument("--target", default="default", choices=sorted(TARGETS),
                   help="web: a preset for the phone/browser demo (android_demo/): the fp16 embedding values stored as fp32, "
                        "which WebGPU without shader-f16 can read; explicit flags override it")
    p.add_argument("--lm-head", help="int8 | int4 | fp32 (default int8)")
    p.add_argument("--embed", help="fp16 | fp32 | fp16-widened (fp16 values stored as fp32) (default fp16)")
    p.add_argument("--max-len", type=int, default=4096, help="context length of the KV buffers")
    p.add_argument("--validate-tokens", type=int, default=256)
    p.add_argument("--requantize", action="store_true",
                   help="requantize GGUF weights to plain int4 (asymmetric, --block-size) instead of keeping "
                        "their own levels: smaller and faster, lossy")
    p.add_argument("--no-layer-plans", dest="layer_plans", action="store_false",
                   help="inline the layers (no layer-skip drafting; a few %% faster per step)")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.set_defaults(func=cmd_export, precision="int4")

    p = sub.add_parser("bench", help="plain decode: our export vs llama.cpp on the same GGUF")
    p.add_argument("model", nargs="?", default=hub.DEFAULT_MODEL)
    p.add_argument("--tokens", type=int, default=128, help="new tokens per prompt")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions")
    p.add_argument("--prompts", help="a question.jsonl file (question_id, category, turns), or a shipped set: "
                                     "default (5 prompts), suite (chat, code, code_edit, summarisation, "
                                     "long_context_qa)")
    p.add_argument("--plot", help="write a PNG plot of decode speed per category and engine (needs matplotlib)")
    p.add_argument("--json", dest="json_out", help="write the full report here")
    p.add_argument("--markdown", help="append the markdown table to this file")
    p.add_argument("--ortgenai", help="also run onnxruntime-genai on this model dir (built by its builder)")
    p.add_argument("--peers-python", help="the Python that has onnxruntime-genai (default: this one)")
    p.add_argument("--backend", default="ort,llamacpp",
                   help="our backends to run, comma-separated: ort, llamacpp, auto (default: ort,llamacpp)")
    p.add_argument("--spec", default="off", help="decoding modes, comma-separated: off, ngram, layerskip, auto, "
                                                 "draft:MODEL (default: off)")
    p.add_argument("--draft-budget", type=int, default=8, help="max draft tokens per verify pass")
    p.add_argument("--cost-curve", action="store_true",
                   help="measure the verify cost curve c(T) on each backend instead of decoding")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("generate", help="complete one prompt")
    p.add_argument("model", nargs="?", default=hub.DEFAULT_MODEL)
    p.add_argument("-p", "--prompt", required=True)
    p.add_argument("--system", help="system message (chat template)")
    p.add_argument("--no-chat-template", action="store_true", help="feed the prompt as raw text")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end instead of streaming")
    _add_sampling_args(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("tune", help="find this device's fastest layer-skip drafter and store it in the export")
    p.add_argument("model", nargs="?", default=hub.DEFAULT_MODEL)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--tokens", type=int, default=48, help="new tokens per calibration prompt")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("chat", help="interactive chat in the terminal")
    p.add_argument("model", nargs="?", default=hub.DEFAULT_MODEL)
    p.add_argument("--system", help="system message")
    p.add_argument("--no-stats", action="store_true", help="no stats footer after each answer")
    _add_sampling_args(p)
    p.set_defaults(func=cmd_chat)
    return parser


def _add_sampling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default="ort", choices=["ort", "llamacpp", "auto", "reference"],
                   help="ort: int4 ONNX export on onnxruntime (made and cached on first use); llamacpp: the GGUF "
                        "on llama.cpp; auto: the faster of the two here (measured once); reference: numpy fp32")
    p.add_argument("--device", default="cpu", help="onnxruntime device: cpu, xnnpack, qnn, nnapi, coreml, "
                                                   "openvino, webgpu, dml, cuda (if this build has it)")
    p.add_argument("--threads", type=int, default=0, help="compute threads (0 = all physical cores)")
    p.add_argument("--context", type=int, default=4096, help="context length in tokens (KV cache size)")
    p.add_argument("--spec", default="off", help="speculative decoding: off, ngram (prompt lookup), layerskip "
                                                 "(ort), draft:MODEL (a smaller model, same vocabulary), auto")
    p.add_argument("--draft-budget", type=int, default=8, help="max draft tokens per verify pass")
    p.add_argument("--memory-budget", help="resident memory this process may use, e.g. 1.5G (default: what it "
                                           "uses now + 90%% of the available RAM); context and draft size shrink to "
                                           "fit, and a budget plain decoding cannot fit is refused")
    p.add_argument("--exact", action="store_true", help="bit-identical output with and without --spec: every pass "
                                                        "has >= 2 rows (a plain step costs ~1.1-2x)")
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--min-p", type=float, default=0.0)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--seed", type=int, default=None)


def _sampling(args):
    check_spec(args.spec)  # before the (slow) load
    return SamplingParams(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                          repetition_penalty=args.repetition_penalty, seed=args.seed)


def cmd_pull(args) -> int:
    if args.list or not args.name:
        for row in hub.list_models():
            mark = "cached" if row["cached"] else ""
            print(f"{row['name']:<22} {row['size']:>9}  {row['licence']:<11} {mark:<7} {row['description']}")
        return 0
    path = hub.pull(args.name, force=args.force)
    print(path)
    return 0


def cmd_bench(args) -> int:
    backends = resolve_backends(args.model, args.backend.split(","), args.threads)
    if args.cost_curve:
        curves = run_cost_curves(args.model, args.threads, backends)
        command = "edgespec " + " ".join(sys.argv[1:])
        report = {"model": args.model, "cost_curves": curves, "machine": machine_info(args.threads),
                  "versions": peer_versions(), "command": command}
        table = cost_markdown(args.model, curves, report["machine"], command)
    else:
        modes = args.spec.split(",")
        for mode in modes:
            check_spec(mode)
        report = run_bench(args.model, tokens=args.tokens, threads=args.threads, reps=args.reps,
                           prompts_file=args.prompts, ortgenai_model=args.ortgenai, peers_python=args.peers_python,
                           backends=backends, modes=modes, budget=args.draft_budget)
        table = markdown(report)
        if args.plot:
            plot(report, args.plot)
    print(table)
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as f:
            f.write(table + "\n\n")
    return 0


def cmd_export(args) -> int:
    from .export.pipeline import ExportOptions, export  # onnxruntime (validation): see loader._open_ort

    preset = TARGETS[args.target]  # flags the user gave win over the target's preset
    chosen = {key: getattr(args, key) for key in ("lm_head", "embed") if getattr(args, key) is not None}
    options = ExportOptions(precision=args.precision, block_size=args.block_size, accuracy_level=args.accuracy_level,
                            **{**preset, **chosen}, max_len=args.max_len,
                            validate_tokens=args.validate_tokens, format=args.format, requantize=args.requantize,
                            gguf_type=args.gguf_type, layer_plans=args.layer_plans)
    output = args.output or f"{hub.Path(args.model).stem if hub.Path(args.model).exists() else args.model}-" \
                            f"{args.precision}"
    out = export(args.model, output, options, force=args.force)
    _print_manifest(out)
    return 0


def _print_manifest(directory) -> None:
    m = read_manifest(directory)
    q = m["quantization"]
    print(f"export:       {directory}  (schema {m['schema_version']}, edgespec {m['edgespec_version']})")
    print(f"source:       {m['source']['name']} ({m['source']['kind']}) sha256 {m['source'].get('sha256', '-')}")
    print(f"model:        {m['architecture']}, {m['config']['num_layers']} layers, hidden "
          f"{m['config']['hidden_size']}, vocab {m['config']['vocab_size']}, context {m['max_len']}")
    if m.get("format") == "gguf":
        print(f"format:       GGUF for llama.cpp, {q['gguf_type']}: {q['tensors']}")
    else:
        print(f"precision:    {q['precision']} (lm_head {q['lm_head']}, embed {q['embed']}, accuracy level "
              f"{q['accuracy_level']}); weights: {q['routes']}")
    for name, entry in m["validation"].items():
        if isinstance(entry, dict):
            llama = entry.get("llamacpp_perplexity")
            print(f"validation {name:<7} top-1 {entry['top1_agreement']:.2%}  max|dlogit| "
                  f"{entry['max_abs_logit_diff']:.3g}  ppl {entry['perplexity']:.3f} (reference "
                  f"{entry['reference_perplexity']:.3f}" + (f", llama.cpp {llama:.3f})" if llama else ")"))
    print("files:        " + ", ".join(f"{n} ({f['size'] / 1e6:.1f} MB)" for n, f in m["files"].items()))
    print(f"time:         {m['timing']['total_seconds']} s")


def cmd_info(args) -> int:
    ref = hub.resolve_model(args.model)
    if ref.kind == "export":
        _print_manifest(ref.path)
        return 0
    source = open_weights(ref.path)
    print(f"model:        {ref.name} ({ref.kind}) {ref.path}")
    for key, value in source.config.to_dict().items():
        print(f"{key + ':':<26}{value}")
    return 0


def cmd_generate(args) -> int:
    sampling = _sampling(args)  # validate before the (slow) load
    model = load_model(args)
    if args.no_chat_template:
        prompt = model.tokenizer.encode(args.prompt)
    else:
        messages = ([{"role": "system", "content": args.system}] if args.system else [])
        prompt = model.chat_prompt(messages + [{"role": "user", "content": args.prompt}])
    pieces = []
    generation = model.generate(prompt, max_tokens=args.max_tokens, sampling=sampling, stop=tuple(args.stop))
    for event in generation:
        pieces.append(event.text)
        if not args.json:
            sys.stdout.write(event.text)
            sys.stdout.flush()
    stats = generation.stats
    if args.json:
        print(json.dumps({"text": "".join(pieces), "token_ids": stats.token_ids, "stats": _stats_dict(model, stats)}))
    else:
        print()
    return 0


def load_model(args) -> api.Model:
    """edgespec.load with the options of generate / chat."""
    model = api.load(args.model, backend=args.backend, spec=args.spec, draft_budget=args.draft_budget,
                     exact=args.exact, memory_budget=args.memory_budget or default_budget(), context=args.context,
                     threads=args.threads, device=args.device)
    log.info("%s on %s, speculation: %s", model.ref.name, model.backend_name, model.spec_name)
    return model


def _stats_dict(model: api.Model, s: api.GenerationStats) -> dict:
    return {"backend": model.backend_name, "prompt_tokens": s.prompt_tokens, "reused_tokens": s.reused_tokens,
            "tokens": s.generated_tokens,
            "prefill_tok_s": round(s.prefill_tok_s, 2), "decode_tok_s": round(s.decode_tok_s, 2),
            "stop_reason": s.stop_reason, "spec": model.spec_name,
            "accepted_drafts_per_step": round(s.spec.accepted / s.spec.steps, 3) if s.spec.steps else 0.0,
            "tokens_per_step": round(s.spec.tokens_per_step, 3),
            "spec_stats": {**s.spec.as_dict(),  # time split of the decode phase: draft / verify / the rest
                           "other_s": round(max(s.decode_seconds - s.spec.draft_seconds - s.spec.verify_seconds, 0), 4)},
            "peak_rss_mb": round(peak_rss() / 2**20, 1), "context": model.context_length,
            "kv_allocated_mb": round(model.backend.memory().get("kv_allocated", 0) / 2**20, 1),
            "memory_plan": model.memory_plan.as_dict() if model.memory_plan else None}


def cmd_tune(args) -> int:
    model = api.load(args.model, backend="ort", threads=args.threads)
    record = model.tune(tokens=args.tokens)
    for row in sorted(record["candidates"], key=lambda r: -r["tok_s"]):
        print(f"skip {row['skip']}, chain {row['draft_len']}: {row['tok_s']} tok/s, {row['tokens_per_step']} tok/step")
    verdict = "pays" if record["pays"] else "does not pay here: --spec auto will not use it"
    print(f"plain decoding: {record['plain_tok_s']} tok/s; best layer-skip {record['speedup']}x ({verdict}); "
          f"stored in {model.source}/edgespec.json")
    return 0


def cmd_chat(args) -> int:
    return run_chat(args, _sampling(args), load_model)


if __name__ == "__main__":
    sys.exit(main())
