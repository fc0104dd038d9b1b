"""What the trained drafters add to --spec auto: plain vs auto without them vs auto with them (the export's
PPD and S3D), on the bench suite, greedy, one process, the three Models taking turns prompt by prompt
(order rotating), `--reps` rounds. Prints per category tok/s, ratios and auto's tally (passes each drafter
drafted for, tokens drafted, tokens kept).

    python benchmarks/scripts/auto_trained_ab.py qwen2.5-coder-0.5b --tokens 128 --reps 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

import edgespec
from edgespec.bench.runner import load_prompts
from edgespec.sampling import SamplingParams
from edgespec.sysinfo import machine_info


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    models = {name: edgespec.load(args.model, backend="ort", spec=spec, threads=args.threads, context=4096)
              for name, spec in (("off", "off"), ("auto_untrained", "auto"), ("auto", "auto"))}
    untrained = models["auto_untrained"].drafter
    trained = sorted(k for k in models["auto"].drafter.drafters if k in ("ppd", "s3d"))
    if not trained:
        raise SystemExit(f"{args.model}'s export has no trained drafter: run `edgespec train ppd {args.model}` first")
    for kind in trained:
        del untrained.drafters[kind]
        untrained.controller.pass_rows.pop(kind, None)
    out = defaultdict(lambda: defaultdict(lambda: [0, 0.0]))
    tally = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))
    turn = 0
    for rep in range(args.reps):
        for row in load_prompts("suite"):
            ids = models["off"].chat_prompt([{"role": "user", "content": row["turns"][0]}])
            names = list(models)
            names = names[turn % 3:] + names[:turn % 3]
            turn += 1
            for name in names:
                g = models[name].generate(ids, max_tokens=args.tokens, sampling=SamplingParams(), stop_on_eos=False)
                for _ in g:
                    pass
                out[row["category"]][name][0] += g.stats.generated_tokens
                out[row["category"]][name][1] += g.stats.decode_seconds
                for drafter, counts in getattr(models[name].drafter, "tally", {}).items():
                    t = tally[(row["category"], name)][drafter]
                    for i in range(3):
                        t[i] += counts[i]
            print(rep, row["category"], row["question_id"], file=sys.stderr, flush=True)
    report = {"model": args.model, "machine": machine_info(args.threads), "tokens": args.tokens, "reps": args.reps,
              "trained": trained, "command": "python benchmarks/scripts/auto_trained_ab.py " + " ".join(sys.argv[1:]),
              "categories": {}}
    for category, engines in out.items():
        rates = {name: n / s for name, (n, s) in engines.items()}
        report["categories"][category] = {
            "tok_s": {k: round(v, 2) for k, v in rates.items()},
            "auto_untrained_vs_plain": round(rates["auto_untrained"] / rates["off"], 3),
            "auto_vs_plain": round(rates["auto"] / rates["off"], 3),
            "auto_vs_auto_untrained": round(rates["auto"] / rates["auto_untrained"], 3),
            "tally": {name: dict(tally[(category, name)]) for name in ("auto_untrained", "auto")}}
    print(json.dumps(report["categories"], indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
