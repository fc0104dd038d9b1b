"""Exact mode with the export's trained drafters: speculative output == plain output, bit for bit.

    python benchmarks/scripts/trained_exact.py qwen2.5-coder-0.5b --tokens 64 --json out.json

For every suite prompt: plain greedy decoding in exact mode (every pass >= 2 rows, see
speculative/engine.py) against `--spec ppd`, `--spec s3d` and `--spec auto` in exact mode on the same
export. The tests do this with oracle and untrained rows on smollm2 (tests/test_ppd.py); this script
runs the trained drafters of a model CI does not train.
"""

from __future__ import annotations

import argparse
import json
import sys

from edgespec.api import load
from edgespec.bench.runner import load_prompts
from edgespec.sampling import Sampler, SamplingParams
from edgespec.speculative.drafters.select import check_spec
from edgespec.speculative.engine import SpecStats, decode


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--spec", default="ppd,s3d,auto")
    parser.add_argument("--json")
    args = parser.parse_args()
    report = {"model": args.model, "tokens": args.tokens, "command": " ".join(sys.argv), "results": {}}
    models = {}  # per export variant: S3D lives in the one with layer plans, PPD in the default (graph 6)
    for spec in args.spec.split(","):
        plans = check_spec(spec)[0].layer_plans
        if plans not in models:
            models[plans] = load(args.model, threads=args.threads, layer_plans=plans)
        model = models[plans]
        model.set_spec(spec, exact=True)
        drafter = model.drafter
        same, drafted, accepted, prompts = 0, 0, 0, 0
        for row in load_prompts("suite"):
            ids = model.chat_prompt([{"role": "user", "content": row["turns"][0]}])
            # decode() rolls the cache back to empty and resets the drafter itself
            plain = [e.token for e in decode(model.backend, ids, Sampler(SamplingParams()), args.tokens, exact=True)]
            stats = SpecStats()
            spec_out = [e.token for e in decode(model.backend, ids, Sampler(SamplingParams()), args.tokens, drafter, 8,
                                                stats, exact=True)]
            prompts += 1
            same += spec_out == plain
            drafted, accepted = drafted + stats.drafted, accepted + stats.accepted
            print(spec, row["question_id"], spec_out == plain, stats.as_dict()["tokens_per_step"], file=sys.stderr)
        report["results"][spec] = {"prompts": prompts, "identical_to_plain": same, "drafted": drafted,
                                   "accepted": accepted}
    print(json.dumps(report["results"], indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0 if all(r["identical_to_plain"] == r["prompts"] for r in report["results"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
