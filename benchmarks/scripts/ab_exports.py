"""Exports A/B: plain and `--spec auto` on each export, greedy, the bench's default prompts with the chat template.

    python benchmarks/scripts/ab_exports.py TOKENS REPS EXPORT_DIR ...            # one process, turns
    python benchmarks/scripts/ab_exports.py --fresh TOKENS REPS EXPORT_DIR ...    # a fresh process per turn

One process (the first form): every export is loaded once and they take turns prompt by prompt (order
alternating). Between two different graphs it does not reproduce: on qwen 0.5b default / --layer-plans gave
0.934x with the default loaded first, 1.093x and 1.048x with it second, while two copies of one export agreed to
1.00x (2026-12-05); on 1.5b two copies differed by 1.076x (plain-decode.md, stop 28).
--fresh: each repetition runs every export in a process of its own, one after the other (order alternating per
repetition), so no export runs beside another one's weights; the ratio is the median over repetitions of the
per-repetition ratios to the first export, which cancels the machine's drift between repetitions.

Prints decode tok/s (all prompts' tokens over their decode seconds) and tokens per step per export and mode.
"""
import json
import statistics
import subprocess
import sys
from collections import defaultdict

import edgespec
from edgespec.bench.runner import load_prompts
from edgespec.sampling import SamplingParams

MODES = ("off", "auto")


def decode_all(models: dict, tokens: int, rep: int, totals: dict, steps: dict) -> None:
    """One repetition: every prompt on every (export, mode), in turns whose order alternates."""
    for i, row in enumerate(load_prompts("default")):
        for key in (list(models) if (i + rep) % 2 == 0 else list(reversed(models))):
            model = models[key]
            ids = model.chat_prompt([{"role": "user", "content": row["turns"][0]}])
            generation = model.generate(ids, max_tokens=tokens, sampling=SamplingParams(), stop_on_eos=False)
            for _ in generation:
                pass
            totals[key][0] += generation.stats.generated_tokens
            totals[key][1] += generation.stats.decode_seconds
            steps[key].append(generation.stats.spec.tokens_per_step)


def summary(totals: dict, steps: dict) -> dict:
    return {f"{d}/{spec}": (round(n / s, 2), round(sum(steps[d, spec]) / len(steps[d, spec]), 3))
            for (d, spec), (n, s) in totals.items()}


def load(directories) -> dict:
    return {(d.rstrip("/").split("/")[-1], spec): edgespec.load(d, backend="ort", spec=spec, threads=0, context=4096)
            for d in directories for spec in MODES}


def one_process(tokens: int, directories: list[str]) -> None:
    models = load(directories)
    totals, steps = defaultdict(lambda: [0, 0.0]), defaultdict(list)
    decode_all(models, tokens, 0, totals, steps)
    print(json.dumps(summary(totals, steps)))


def fresh(tokens: int, reps: int, directories: list[str]) -> None:
    names = [d.rstrip("/").split("/")[-1] for d in directories]
    runs = []  # per repetition: export/mode -> (tok/s, tokens per step)
    for rep in range(reps):
        order = directories if rep % 2 == 0 else list(reversed(directories))
        row = {}
        for d in order:
            out = subprocess.run([sys.executable, __file__, "--one", str(tokens), d], check=True, capture_output=True,
                                 text=True).stdout
            row.update(json.loads(out.strip().splitlines()[-1]))
        runs.append(row)
        print(f"repetition {rep + 1}:", row, flush=True)
    for mode in MODES:
        base = f"{names[0]}/{mode}"
        for name in names[1:]:
            ratios = [r[f"{name}/{mode}"][0] / r[base][0] for r in runs]
            print(f"{mode}: {name} / {names[0]} = {statistics.median(ratios):.3f}x (median of "
                  f"{', '.join(f'{x:.3f}' for x in ratios)})")


def main(argv: list[str]) -> None:
    if argv[0] == "--one":
        return one_process(int(argv[1]), argv[2:])
    if argv[0] == "--fresh":
        return fresh(int(argv[1]), int(argv[2]), argv[3:])
    tokens, reps, directories = int(argv[0]), int(argv[1]), argv[2:]
    models = load(directories)
    totals, steps = defaultdict(lambda: [0, 0.0]), defaultdict(list)
    for rep in range(reps):
        decode_all(models, tokens, rep, totals, steps)
        print(f"after repetition {rep + 1}:", summary(totals, steps), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
