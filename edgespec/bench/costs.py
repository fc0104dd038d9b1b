"""`edgespec bench --cost-curve`: the verify cost curve c(T) of each backend, through the API, one
backend loaded at a time (released before the next, so they do not share the machine)."""

from __future__ import annotations

import gc

from .. import api
from ..progress import Progress
from ..runtimes.timing import SIZES, cost_curve

PROMPT = "def quicksort(items):\n    \"\"\"Sort a list of numbers.\"\"\"\n" * 4


def run_cost_curves(model: str, threads: int, backends=("ort", "llamacpp"), sizes=SIZES, reps: int = 7) -> dict:
    curves = {}
    with Progress(len(backends), "cost curves", unit="backends") as bar:
        for kind in backends:
            loaded = api.load(model, backend=kind, threads=threads, context=1024)
            loaded.settle()
            try:
                prompt = loaded.tokenizer.encode(PROMPT)
                curves[kind] = {"backend": loaded.backend_name, **cost_curve(loaded.backend, prompt, sizes, reps)}
            finally:
                loaded.close()
                del loaded
                gc.collect()
            bar.update(1)
    return curves


def cost_markdown(model: str, curves: dict, machine: dict | None = None, command: str | None = None) -> str:
    sizes = list(next(iter(curves.values()))["c"])
    lines = [f"### {model}: verify cost c(T) = time(T-token pass, logits for every row) / time(1-token step)", ""]
    if machine:
        lines += [f"Machine: {machine['cpu']}, {machine['cores']} cores, AVX-512 {'yes' if machine['avx512'] else 'no'}, "
                  f"VNNI {'yes' if machine['avx512_vnni'] else 'no'}, {machine['threads']} threads."
                  + (f" Command: `{command}`" if command else ""), ""]
    lines += [
             "| backend | t(1) ms | " + " | ".join(f"T={T}" for T in sizes) + " |",
             "|---|---|" + "---|" * len(sizes)]
    for kind, curve in curves.items():
        lines.append(f"| {curve['backend']} | {curve['seconds'][sizes[0]] * 1e3:.2f} | "
                     + " | ".join(f"{curve['c'][T]:.2f}" for T in sizes) + " |")
    return "\n".join(lines)
