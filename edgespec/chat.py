"""`edgespec chat`: a multi-turn terminal chat that streams as it decodes.

Commands: /reset, /stats, /system TEXT, /exit. Ctrl-C stops the current
answer and returns to the prompt; Ctrl-D or /exit leaves.
"""

from __future__ import annotations

import io
import logging
import signal
import sys

from .errors import EdgespecError

log = logging.getLogger(__name__)

HELP = "commands: /reset  /stats  /system TEXT  /exit   (Ctrl-C stops an answer)"


def run_chat(args, sampling, load_model) -> int:
    """load_model(args) -> a Model (the CLI's edgespec.load with its options)."""
    # Ctrl-C stops an answer even when a parent started us with SIGINT ignored (background jobs)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    model = load_model(args)
    stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="strict") if hasattr(sys.stdin, "buffer") \
        else sys.stdin
    system = args.system
    history: list[dict] = []
    stats = None  # the last answer's
    print(f"edgespec chat — {model.ref.name} on {model.backend_name}. {HELP}", file=sys.stderr)
    while True:
        try:
            sys.stdout.write("> ")
            sys.stdout.flush()
            line = stdin.readline()
        except UnicodeDecodeError as exc:
            raise EdgespecError(f"input is not valid UTF-8 ({exc.reason} at byte {exc.start}); "
                                "the chat reads UTF-8 text") from None
        except KeyboardInterrupt:
            print()
            continue
        if not line:  # EOF
            print()
            return 0
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            command, _, rest = text.partition(" ")
            if command == "/exit":
                return 0
            if command == "/reset":
                history.clear()
                print("(conversation cleared)", file=sys.stderr)
            elif command == "/system":
                system = rest.strip() or None
                history.clear()
                print(f"(system message {'set' if system else 'cleared'}; conversation cleared)", file=sys.stderr)
            elif command == "/stats":
                print(_footer(model, stats) if stats else "(no answer yet)", file=sys.stderr)
            else:
                print(f"unknown command {command!r}; {HELP}", file=sys.stderr)
            continue
        history.append({"role": "user", "content": text})
        answer, stats = _answer(model, system, history, args, sampling)
        history.append({"role": "assistant", "content": answer})
        if not args.no_stats and stats is not None:
            print(_footer(model, stats), file=sys.stderr)


def _answer(model, system, history, args, sampling):
    """Stream one answer -> (its text, its stats); Ctrl-C anywhere in it (prompt, prefill, decode) stops
    just this answer."""
    pieces, generation = [], None
    try:
        prompt = _fit_prompt(model, system, history)
        generation = model.generate(prompt, max_tokens=args.max_tokens, sampling=sampling, stop=tuple(args.stop))
        for event in generation:
            pieces.append(event.text)
            sys.stdout.write(event.text)
            sys.stdout.flush()
    except KeyboardInterrupt:
        sys.stdout.write(" [stopped]")
    finally:
        if generation is not None:
            generation.close("interrupted")  # now, not at garbage collection: the cache is trimmed before the next turn
    print()
    return "".join(pieces), generation.stats if generation is not None else None


def _fit_prompt(model, system, history) -> list[int]:
    """The chat prompt, dropping the oldest turns (and saying so) until it fits the context."""
    while True:
        messages = ([{"role": "system", "content": system}] if system else []) + history
        prompt = model.chat_prompt(messages)
        if len(prompt) + 16 <= model.context_length or len(history) <= 1:
            return prompt
        del history[:2]  # the oldest user + assistant pair
        print("(context full: dropped the oldest turn)", file=sys.stderr)


def _footer(model, s) -> str:
    reused = f" ({s.reused_tokens} cached)" if s.reused_tokens else ""
    return (f"[{s.generated_tokens} tokens, prefill{reused} {s.prefill_tok_s:.1f} tok/s, decode {s.decode_tok_s:.1f} tok/s, "
            f"{model.backend_name}{_acceptance(model, s.spec)}, stop: {s.stop_reason or '-'}]")


def _acceptance(model, spec) -> str:
    if model.drafter is None or not spec.steps:
        return ""
    return f", spec {model.spec_name}: {spec.tokens_per_step:.2f} tok/step ({spec.accepted}/{spec.drafted} drafts kept)"
