"""edgespec command line: a thin layer over the Python API.

Errors the user can fix (EdgespecError) print one line and exit non-zero,
without a traceback; `-v` shows debug logging.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from . import hub, manage
from ._version import __version__
from .chat import run_chat
from .export.targets import TARGETS
from .serve import add_arguments as add_serve_arguments
from .errors import EdgespecError

# Commands import what they run, inside them: `info`, `list` and `rm` answer in well under a second,
# and `generate`/`chat` on a cached export pay neither for onnx (the exporter) nor for the bench.

log = logging.getLogger("edgespec")
DEFAULTS = f"""defaults of chat and generate (override with the flags; see `edgespec chat -h`):
  model {hub.DEFAULT_MODEL} (a 491 MB download, exported once on first use; smollm2-135m is smaller
        and faster but answers poorly), --spec auto, --temperature 0.8 (0 = greedy), --top-k 40,
        --top-p 0.9, --repeat-penalty 1.1, -n -1 (until the answer ends), --context 4096"""


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
    parser = argparse.ArgumentParser(prog="edgespec", description=__doc__.splitlines()[0], epilog=DEFAULTS,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"edgespec {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    p = sub.add_parser("pull", help="fetch a known model into the local cache")
    p.add_argument("name", nargs="?", help="known model name (see --list)")
    p.add_argument("--list", action="store_true", help="list the known models")
    p.add_argument("--force", action="store_true", help="fetch again even if cached and valid")
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("info", help="describe a model or an export (its manifest and validation); never downloads")
    p.add_argument("model", help="known name, .gguf file, HF directory or export directory")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("list", help="the pulled models and the exports in the cache: sizes and sources")
    p.set_defaults(func=lambda args: print("\n".join(manage.list_rows())))

    p = sub.add_parser("rm", help="delete a pulled model (with its exports) or one export (a name from `list`)")
    p.add_argument("name", nargs="+")
    p.set_defaults(func=cmd_rm)

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
    p.add_argument("--accuracy-level", type=int, default=None,
                   help="MatMulNBits accuracy level for int4 weights: 4 = int8 activations (fast, like llama.cpp), "
                        "0/1 = fp32 activations on every weight (exact; 0.6-0.9x speed on int4, far slower on int8 "
                        "weights; --target web uses 1: the browser computes fp32)")
    p.add_argument("--recipe", default=None,
                   help="int4: faithful (every GGUF level kept) | balanced (default: GPTQ int4 where the measured "
                        "KL cost per byte is lowest, <= 1.1x the all-int4 bytes per token) | fast (all GPTQ int4)")
    p.add_argument("--bytes-budget", default=None,
                   help="bytes per token for balanced/fast instead of the recipe's own (e.g. 350M)")
    p.add_argument("--lm-head", default=None, help="int8 | int4 | fp32 (with --recipe faithful or --requantize)")
    p.add_argument("--embed", help="fp16 | fp32 | fp16-widened (fp16 values stored as fp32) (default fp16)")
    p.add_argument("--max-len", type=int, help="context length of the KV buffers (default 4096; 1024 for --target npu)")
    p.add_argument("--target", default="cpu", choices=sorted(TARGETS),
                   help="cpu (default): dynamic shapes for onnxruntime; npu: static shapes, one graph per row bucket, "
                        "KV window on the host (QNN HTP, OpenVINO, CPU); web: the phone/browser demo's preset "
                        "(android_demo/): fp16 embedding values stored as fp32, which WebGPU without shader-f16 "
                        "can read; explicit flags override a preset")
    p.add_argument("--buckets", default="1,4,8,16", help="--target npu: rows per graph, comma-separated")
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
                   help="our backends to run, comma-separated: ort, llamacpp, auto, static (the NPU graphs on the "
                        "CPU EP) (default: ort,llamacpp)")
    p.add_argument("--spec", default="off", help="decoding modes, comma-separated: off, ngram, layerskip, ppd, "
                                                 "s3d, auto, draft:MODEL (default: off)")
    p.add_argument("--draft-budget", type=int, default=8, help="max draft tokens per verify pass")
    p.add_argument("--cost-curve", action="store_true",
                   help="measure the verify cost curve c(T) on each backend instead of decoding")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("generate", epilog=DEFAULTS, formatter_class=argparse.RawDescriptionHelpFormatter, help="complete one prompt")
    p.add_argument("model", nargs="?", default=hub.DEFAULT_MODEL)
    p.add_argument("-p", "--prompt", help="the prompt; '-' reads it from stdin, as does a pipe without -p")
    p.add_argument("-f", "--file", help="read the prompt from this file")
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

    p = sub.add_parser("train", help="train a self-drafter for a model's export ([train] extra: torch): ppd "
                                     "(prompt tokens) or s3d (mask tokens, middle layers skipped)")
    p.add_argument("kind", choices=["ppd", "s3d"])
    p.add_argument("model", nargs="?", default=hub.DEFAULT_MODEL)
    p.add_argument("--minutes", type=float, default=15.0, help="training time budget (default 15)")
    p.add_argument("--steps", type=int, help="stop after this many steps (also bounded by --minutes)")
    p.add_argument("--out", help="write the drafter here instead of into the export (use: --spec ppd:FILE)")
    p.add_argument("--text", action="append", default=[], help="a UTF-8 text file to add to the training data")
    p.add_argument("--tokens", type=int, default=96, help="answer tokens per training prompt")
    p.add_argument("--samples", type=int, default=1, help="sampled answers per prompt beside the greedy one")
    p.add_argument("--k", type=int, default=3, help="draft depth: ppd prompt tokens, s3d gamma (gamma-1 mask rows)")
    p.add_argument("--threads", type=int, default=0)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("chat", epilog=DEFAULTS, formatter_class=argparse.RawDescriptionHelpFormatter, help="interactive chat in the terminal")
    p.add_argument("model", nargs="?", default=hub.DEFAULT_MODEL)
    p.add_argument("--system", help="system message")
    p.add_argument("--no-stats", action="store_true", help="no stats footer after each answer")
    _add_sampling_args(p)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("serve", help="OpenAI-compatible local server (the [serve] extra)")
    add_serve_arguments(p)
    p.set_defaults(func=cmd_serve)
    return parser


def _add_sampling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default="ort", choices=["ort", "llamacpp", "auto", "reference", "static"],
                   help="ort: int4 ONNX export on onnxruntime (made and cached on first use); llamacpp: the GGUF "
                        "on llama.cpp; auto: the faster of the two here (measured once); reference: numpy fp32; "
                        "static: the static-shape NPU graphs (export --target npu) on --device cpu|qnn|openvino")
    p.add_argument("--device", default="cpu", help="cpu; qnn (QNN HTP) or openvino: static graphs (the [npu] extra); "
                                                   "onnxruntime EPs xnnpack, nnapi, coreml, webgpu, dml, cuda "
                                                   "(if this build has them)")
    p.add_argument("--threads", type=int, default=0, help="compute threads (0 = all physical cores)")
    p.add_argument("--context", type=_positive, default=None,
                   help="context length in tokens: KV cache and memory plan (default 4096, or the model's own "
                        "maximum if smaller; at most the model's own)")
    p.add_argument("--spec", default="auto", help="speculative decoding: auto (default: n-gram and layer-skip drafts "
                                                  "where this machine's measured costs say they pay, else plain; "
                                                  "calibrated once per model and machine), off, ngram (prompt "
                                                  "lookup), layerskip (ort), ppd / s3d (trained with `edgespec "
                                                  "train`; ort), draft:MODEL (a smaller model, same vocabulary)")
    p.add_argument("--draft-budget", type=int, default=8, help="max draft tokens per verify pass")
    p.add_argument("--memory-budget", help="resident memory this process may use, e.g. 1.5G (default: what it "
                                           "uses now + 90%% of the available RAM); context and draft size shrink to "
                                           "fit, and a budget plain decoding cannot fit is refused")
    p.add_argument("--exact", action="store_true", help="bit-identical output with and without --spec: every pass "
                                                        "has >= 2 rows (a plain step costs ~1.1-2x)")
    # sampling defaults are ollama's, which chat users know; --temperature 0 is greedy
    p.add_argument("-n", "--max-tokens", type=_max_tokens, default=None,
                   help="new tokens at most; -1 (default) = until the end of the answer or a full context")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy (default 0.8)")
    p.add_argument("--top-k", type=int, default=40, help="0 = off (default 40)")
    p.add_argument("--top-p", type=float, default=0.9, help="1 = off (default 0.9)")
    p.add_argument("--min-p", type=float, default=0.0, help="0 = off (default)")
    p.add_argument("--repetition-penalty", "--repeat-penalty", type=float, default=1.1,
                   help="1 = off (default 1.1)")
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--seed", type=int, default=None)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: expected a positive number of tokens")
    return value


def _max_tokens(text: str) -> int | None:
    """-1 -> None: until EOS or a full context."""
    value = int(text)
    if value < 1 and value != -1:
        raise argparse.ArgumentTypeError(f"{value}: expected a positive number of tokens, or -1 for no limit")
    return None if value == -1 else value


def _sampling(args):
    from .sampling import SamplingParams
    from .speculative.drafters.select import check_spec

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
    from .bench.costs import cost_markdown, run_cost_curves
    from .bench.runner import markdown, peer_versions, resolve_backends, run_bench
    from .speculative.drafters.select import check_spec
    from .sysinfo import machine_info

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
            from .bench.report import plot

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
    from .memory import parse_size

    preset = TARGETS[args.target]  # flags the user gave win over the target's preset
    chosen = {key: getattr(args, key) for key in ("lm_head", "embed", "accuracy_level")
              if getattr(args, key) is not None}
    options = ExportOptions(precision=args.precision, block_size=args.block_size,
                            **{**preset, **chosen}, max_len=args.max_len,
                            validate_tokens=args.validate_tokens, format=args.format, requantize=args.requantize,
                            gguf_type=args.gguf_type, layer_plans=args.layer_plans,
                            buckets=_int_list(args.buckets, "--buckets"),
                            **({"recipe": args.recipe} if args.recipe else {}),
                            bytes_budget=None if args.bytes_budget is None else parse_size(args.bytes_budget, 1000))
    output = args.output or f"{hub.Path(args.model).stem if hub.Path(args.model).exists() else args.model}-" \
                            f"{args.precision}"
    out = export(args.model, output, options, force=args.force)
    print("\n".join(manage.manifest_lines(out)))
    return 0


def _int_list(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise EdgespecError(f"{flag} '{text}' is not a comma-separated list of integers, e.g. 1,4,8,16") from None


def cmd_info(args) -> int:
    print("\n".join(manage.info_lines(args.model)))
    return 0


def cmd_rm(args) -> int:
    for name in args.name:
        for path in manage.remove(name):
            print(f"removed {path}")
    return 0


def _read_prompt(args) -> str:
    """-p TEXT, -p - (stdin), -f FILE, or stdin when it is a pipe and neither is given."""
    if args.prompt is not None and args.file is not None:
        raise EdgespecError("give the prompt with -p or -f, not both")
    if args.file is not None:
        try:
            return open(args.file, encoding="utf-8").read()
        except (OSError, UnicodeDecodeError) as exc:
            raise EdgespecError(f"-f {args.file}: cannot read the prompt ({exc})") from None
    if args.prompt == "-" or (args.prompt is None and not sys.stdin.isatty()):
        try:
            text = sys.stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EdgespecError(f"the prompt on stdin is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
        if not text.strip():
            raise EdgespecError("the prompt on stdin is empty")
        return text
    if args.prompt is None:
        raise EdgespecError("no prompt: give -p TEXT, -f FILE, or pipe it in (echo hi | edgespec generate)")
    return args.prompt


def cmd_generate(args) -> int:
    sampling = _sampling(args)  # validate before the (slow) load
    text = _read_prompt(args)
    model = load_model(args)
    if args.no_chat_template:
        prompt = model.tokenizer.encode(text)
    else:
        messages = ([{"role": "system", "content": args.system}] if args.system else [])
        prompt = model.chat_prompt(messages + [{"role": "user", "content": text}])
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


def load_model(args, announce: bool = True):
    """edgespec.load with the options of generate / chat."""
    from . import api
    from .memory import default_budget

    model = api.load(args.model, backend=args.backend, spec=args.spec, draft_budget=args.draft_budget,
                     exact=args.exact, memory_budget=args.memory_budget or default_budget(), context=args.context,
                     threads=args.threads, device=args.device)
    if announce:  # the chat says it in its header instead
        log.info("%s on %s, speculation: %s", model.ref.name, model.backend_name, model.spec_name)
    return model


def _stats_dict(model, s) -> dict:
    from .sysinfo import peak_rss

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
    from . import api

    model = api.load(args.model, backend="ort", threads=args.threads)
    record = model.tune(tokens=args.tokens)
    for row in sorted(record["candidates"], key=lambda r: -r["tok_s"]):
        print(f"skip {row['skip']}, chain {row['draft_len']}: {row['tok_s']} tok/s, {row['tokens_per_step']} tok/step")
    verdict = "pays" if record["pays"] else "does not pay here: --spec auto will not use it"
    print(f"plain decoding: {record['plain_tok_s']} tok/s; best layer-skip {record['speedup']}x ({verdict}); "
          f"stored in {model.source}/edgespec.json")
    return 0


def cmd_train(args) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise EdgespecError("`edgespec train` needs torch: pip install 'edgespec[train]'") from None
    from .train.run import train
    from .train.trainer import TrainOptions

    options = TrainOptions(k=args.k, minutes=args.minutes, steps=args.steps, answer_tokens=args.tokens,
                           samples=args.samples)
    try:
        path, record = train(args.kind, args.model, options, args.out, args.text, args.threads)
    except KeyboardInterrupt:
        print("\ninterrupted: the checkpoint is saved; run the same command again to resume", file=sys.stderr)
        return 130
    curve = ", ".join(f"{c['minutes']} min: {c['acceptance']}" for c in record["curve"])
    print(f"\n{args.kind} drafter ({args.k} deep, {record['steps']} steps, {record['minutes']} min) -> {path}")
    print(f"held-out acceptance per depth: {record['acceptance_per_depth']} (over training: {curve})")
    return 0


def cmd_chat(args) -> int:
    return run_chat(args, _sampling(args), lambda chat_args: load_model(chat_args, announce=False))


def cmd_serve(args) -> int:
    from .serve import run as run_server  # the [serve] extra (starlette, uvicorn): only `serve` needs it

    return run_server(args)


if __name__ == "__main__":
    sys.exit(main())
