"""First-run timings (issue 21): wall seconds from process start to the first useful output.

    python benchmarks/scripts/first_run.py [MODEL] [--reps N] [--json OUT]

1. `chat MODEL` from an empty cache (a fresh EDGESPEC_CACHE whose models/ links the pulled GGUF:
   nothing downloads; the export and the --spec auto calibration are made) to the `> ` prompt;
2. in a second empty cache: `generate --spec off` (makes the export), then the first
   `generate --spec auto` (the export cached, its calibration not yet: what the first auto adds),
   then `--spec off` again;
3. `generate MODEL --spec auto` and `--spec off` with everything cached, to the first token, N times;
4. `info MODEL`, N times.
Each row records wall seconds and the process's CPU seconds (user + sys of the child).
Run it on an otherwise idle machine: it measures start-up, and start-up is mostly waiting for a core.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pexpect

from edgespec import hub
from edgespec.sysinfo import machine_info


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def chat_to_prompt(model: str, env: dict) -> dict:
    cpu, t0 = _cpu(), time.monotonic()
    chat = pexpect.spawn(sys.executable, ["-m", "edgespec.cli", "chat", model], env=env, timeout=1800,
                         encoding="utf-8")
    chat.expect("> ")
    wall = time.monotonic() - t0
    chat.sendline("/exit")
    chat.expect(pexpect.EOF)
    chat.close()
    return {"what": "chat, empty cache, to the prompt", "wall_s": round(wall, 2), "cpu_s": round(_cpu() - cpu, 2)}


def first_byte(what: str, args: list[str], env: dict) -> dict:
    """Wall seconds to the first byte on stdout (generate prints the first token as it comes)."""
    cpu, t0 = _cpu(), time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "edgespec.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    proc.stdout.read(1)
    wall = time.monotonic() - t0
    proc.stdout.read()
    assert proc.wait() == 0, f"{args} failed"
    return {"what": what, "wall_s": round(wall, 2), "cpu_s": round(_cpu() - cpu, 2)}


def empty_cache(root: Path, gguf: Path) -> dict:
    cache = root / "cache"
    (cache / "models").mkdir(parents=True)
    (cache / "models" / gguf.name).symlink_to(gguf)
    return {**os.environ, "EDGESPEC_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="smollm2-135m")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    gguf = hub.resolve_model(args.model).path
    rows = []
    generate = ["generate", args.model, "-p", "Write a haiku about CPUs", "-n", "8", "--temperature", "0"]
    with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
        env = empty_cache(Path(first), gguf)
        rows.append(chat_to_prompt(args.model, env))
        env2 = empty_cache(Path(second), gguf)
        first_byte("(export made by a --spec off run, not timed)", generate + ["--spec", "off"], env2)
        rows.append(first_byte("first generate --spec auto (export cached), to the first token", generate, env2))
        rows.append(first_byte("then generate --spec off, to the first token", generate + ["--spec", "off"], env2))
        for _ in range(args.reps):
            rows.append(first_byte("generate --spec auto, cached, to the first token", generate, env))
            rows.append(first_byte("generate --spec off, cached, to the first token", generate + ["--spec", "off"],
                                   env))
            rows.append(first_byte(f"info {args.model}", ["info", args.model], env))
    for row in rows:
        print(f"{row['what']:<55} {row['wall_s']:>7.2f} s wall  {row['cpu_s']:>6.2f} s CPU")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "machine": machine_info(0), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
