"""Exports A/B in one process: plain and `--spec auto` on each export, taking turns prompt by prompt (order
alternating), greedy, the bench's default prompts with the chat template.

    python benchmarks/scripts/ab_exports.py TOKENS REPS EXPORT_DIR ...

Prints decode tok/s (all prompts' tokens over their decode seconds) and tokens per step per export and mode
after each repetition. Used for the layer-plan If nodes (plain-decode.md, 2026-12-05), where the variant with
an If on every layer was exported with `edgespec.models.llama.graph.skippable_layers` patched to all layers.

Turns alternate, but the load order does not: on qwen 1.5b two copies of one export differed by 1.076x and one
A/B gave 1.033x one way and 0.977x with the directories swapped (plain-decode.md, stop 28). Run it both ways
and with a copy of one export as a control before believing a few percent.
"""
import sys
from collections import defaultdict

import edgespec
from edgespec.bench.runner import load_prompts
from edgespec.sampling import SamplingParams

TOKENS, REPS, DIRS = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
models = {(d.rstrip("/").split("/")[-1], spec): edgespec.load(d, backend="ort", spec=spec, threads=0, context=4096)
          for d in DIRS for spec in ("off", "auto")}
totals, steps = defaultdict(lambda: [0, 0.0]), defaultdict(list)
for rep in range(REPS):
    for i, row in enumerate(load_prompts("default")):
        for key in (list(models) if (i + rep) % 2 == 0 else list(reversed(models))):
            model = models[key]
            ids = model.chat_prompt([{"role": "user", "content": row["turns"][0]}])
            generation = model.generate(ids, max_tokens=TOKENS, sampling=SamplingParams(), stop_on_eos=False)
            for _ in generation:
                pass
            totals[key][0] += generation.stats.generated_tokens
            totals[key][1] += generation.stats.decode_seconds
            steps[key].append(generation.stats.spec.tokens_per_step)
    print(f"after repetition {rep + 1}:", {f"{d}/{spec}": (round(n / s, 2), round(sum(steps[d, spec]) / len(steps[d, spec]), 3))
                                         for (d, spec), (n, s) in totals.items()}, flush=True)
