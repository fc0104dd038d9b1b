"""`edgespec chat`: a multi-turn terminal chat that streams as it decodes.

Commands: /help, /stats, /reset, /system TEXT, /exit. Ctrl-C stops the current answer and
returns to the prompt; the cut answer and its question are dropped from the conversation (as
ollama does: an answer the user stopped is not one to build on, and a kept half-answer is what
the model would continue next turn). Ctrl-D or /exit leaves.
"""

from __future__ import annotations

import io
import logging
import signal
import sys
from dataclasses import dataclass, field

from .errors import EdgespecError

log = logging.getLogger(__name__)

COMMANDS = {
    "/help": "this list",
    "/stats": "this conversation's numbers: tokens in context, speed, tokens per step, which drafter pays",
    "/reset": "start a new conversation (the system message stays)",
    "/system TEXT": "set the system message (no TEXT: clear it) and start a new conversation",
    "/exit": "leave (or Ctrl-D); Ctrl-C stops an answer",
}
HELP = "\n".join(f"  {name:<14} {what}" for name, what in COMMANDS.items())


@dataclass
class Session:
    """Numbers of the conversation since it started or was reset."""

    answers: int = 0
    tokens: int = 0
    decode_seconds: float = 0.0
    steps: int = 0  # verify passes (a plain step is one)
    context_tokens: int = 0  # what the last turn left in the context (prompt + answer)
    drafters: dict = field(default_factory=dict)  # name -> [passes, drafted, kept]

    def add(self, model, s, kept: bool = True) -> None:
        """Count an answer's stats `s`; a cut one (not kept) adds to the speed, not to the context."""
        self.answers += 1
        self.tokens += s.generated_tokens
        self.decode_seconds += s.decode_seconds
        self.steps += s.spec.steps if model.drafter is not None else max(s.generated_tokens - 1, 0)
        if kept:
            self.context_tokens = s.prompt_tokens + s.generated_tokens
        tally = getattr(model.drafter, "tally", None)
        if tally is None and model.drafter is not None:  # one fixed drafter (--spec ngram, ...)
            tally = {model.spec_name: [s.spec.steps, s.spec.drafted, s.spec.accepted]}
        for name, (passes, drafted, kept) in (tally or {}).items():
            total = self.drafters.setdefault(name, [0, 0, 0])
            total[0], total[1], total[2] = total[0] + passes, total[1] + drafted, total[2] + kept

    def lines(self, model) -> list[str]:
        speed = self.tokens / self.decode_seconds if self.decode_seconds else 0.0
        out = [f"context:   {self.context_tokens} of {model.context_length} tokens",
               f"answers:   {self.answers}, {self.tokens} tokens, {speed:.1f} tok/s decoding"
               + (f", {self.tokens / self.steps:.2f} tokens per step" if self.steps else ""),
               f"model:     {model.ref.name} on {model.backend_name}, speculation {model.spec_name}"]
        for name, (passes, drafted, kept) in sorted(self.drafters.items()):
            out.append(f"drafter:   {name}: drafted in {passes} steps, kept {kept} of {drafted} drafted tokens "
                       f"({kept / max(self.tokens, 1):.0%} of the answer tokens came free)")
        if model.spec_name != "off" and not self.drafters:
            out.append("drafter:   none paid yet: every step so far was a plain step")
        return out


def run_chat(args, sampling, load_model) -> int:
    """load_model(args) -> a Model (the CLI's edgespec.load with its options)."""
    # Ctrl-C stops an answer even when a parent started us with SIGINT ignored (background jobs)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    model = load_model(args)
    stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="strict") if hasattr(sys.stdin, "buffer") \
        else sys.stdin
    system = args.system
    history: list[dict] = []
    session = Session()
    print(f"edgespec chat — {model.ref.name} on {model.backend_name}, speculation {model.spec_name}. "
          "/help for commands, Ctrl-C stops an answer, Ctrl-D leaves.", file=sys.stderr)
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
            if command in ("/reset", "/system"):
                system = (rest.strip() or None) if command == "/system" else system
                history.clear()
                session = Session()
                print("(new conversation" + (f"; system message {'set' if system else 'cleared'})"
                                             if command == "/system" else ")"), file=sys.stderr)
            elif command == "/stats":
                print("\n".join(session.lines(model)), file=sys.stderr)
            elif command == "/help":
                print(HELP, file=sys.stderr)
            else:
                print(f"unknown command {command!r}; commands:\n{HELP}", file=sys.stderr)
            continue
        history.append({"role": "user", "content": text})
        answer, stats, cut = _answer(model, system, history, args, sampling)
        if stats is not None:
            session.add(model, stats, kept=not cut)
        if cut:
            history.pop()  # the question goes with the answer it did not get
        else:
            history.append({"role": "assistant", "content": answer})
        if not args.no_stats and stats is not None:
            print(_footer(model, stats), file=sys.stderr)


def _answer(model, system, history, args, sampling):
    """Stream one answer -> (its text, its stats, whether Ctrl-C cut it); Ctrl-C anywhere in it (prompt,
    prefill, decode) stops just this answer."""
    pieces, generation, cut = [], None, False
    try:
        prompt = _fit_prompt(model, system, history)
        generation = model.generate(prompt, max_tokens=args.max_tokens, sampling=sampling, stop=tuple(args.stop))
        for event in generation:
            pieces.append(event.text)
            sys.stdout.write(event.text)
            sys.stdout.flush()
    except KeyboardInterrupt:
        cut = True
        sys.stdout.write(" [stopped; not kept in the conversation]")
    finally:
        if generation is not None:
            generation.close("interrupted")  # now, not at garbage collection: the cache is trimmed before the next turn
    print()
    return "".join(pieces), generation.stats if generation is not None else None, cut


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
    steps = f", {s.spec.tokens_per_step:.2f} tok/step" if model.drafter is not None and s.spec.steps else ""
    return f"[{s.generated_tokens} tokens, {s.decode_tok_s:.1f} tok/s{steps}, stop: {s.stop_reason or '-'}]"
