"""edgespec command line: a thin layer over the Python API.

Errors the user can fix (EdgespecError) print one line and exit non-zero,
without a traceback; `-v` shows debug logging.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from . import cli_args, hub, manage
from .chat import run_chat
from .export.targets import TARGETS
from .errors import EdgespecError

# Commands import what they run, inside them: `info`, `list` and `rm` answer in well under a second,
# and `generate`/`chat` on a cached export pay neither for onnx (the exporter) nor for the bench.

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
    return cli_args.build_parser({"bench": cmd_bench, "chat": cmd_chat, "export": cmd_export, "generate": cmd_generate,
                                  "info": cmd_info, "pull": cmd_pull, "rm": cmd_rm, "serve": cmd_serve,
                                  "train": cmd_train, "tune": cmd_tune})


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
                           backends=backends, modes=modes, budget=args.draft_budget, turns=args.turns)
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
    flags = ("lm_head", "embed", "accuracy_level", "layer_plans", "new_rows")
    chosen = {key: getattr(args, key) for key in flags if getattr(args, key) is not None}
    options = ExportOptions(precision=args.precision, block_size=args.block_size,
                            **{**preset, **chosen}, max_len=args.max_len,
                            validate_tokens=args.validate_tokens, format=args.format, requantize=args.requantize,
                            gguf_type=args.gguf_type,
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
    if not args.name and not args.stale:
        raise EdgespecError("`edgespec rm` needs a NAME from `edgespec list`, or --stale")
    removed = [path for name in args.name for path in manage.remove(name)]
    if args.stale:
        removed += manage.delete(manage.stale_exports())
    for path in removed:
        print(f"removed {path}")
    if args.stale and not removed:
        print("no stale exports")
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
                     threads=args.threads, device=args.device, layer_plans=args.layer_plans)
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

    model = api.load(args.model, backend="ort", threads=args.threads, layer_plans=True)
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
