"""Acceptance per depth of the trained PPD and S3D drafters (and n-gram) on the bench suite, tokens per
step, and a projection onto an accelerator-like cost curve (c(T) = 1 up to T = 16).

    EDGESPEC_CACHE=... python benchmarks/scripts/ppd_acceptance.py smollm2-135m --tokens 96 --json out.json

Per category: PPD drafting a fixed chain of k (every depth measured), its chain acceptance
P(accepted >= d); n-gram's tokens per step (budget 8). Expected tokens per verify pass E follow
from the acceptance; the projected speedup is E / c(rows) with rows = (1+n)^2 for PPD (n drafts,
n prompt rows per row) and c = the measured CPU curve or the accelerator's (1 up to 16 rows).
Greedy, 2 threads; the output is checked against plain decoding (near-ties allowed, counted).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict

from edgespec.api import load
from edgespec.bench.runner import load_prompts
from edgespec.export.trained import load_drafter
from edgespec.sampling import Sampler, SamplingParams
from edgespec.speculative.calibration.costs import CALIBRATION_TEXT, cached_cost_model
from edgespec.speculative.drafters.ngram import NgramDrafter
from edgespec.speculative.drafters.ppd import PPDDrafter
from edgespec.speculative.drafters.s3d import S3DDrafter
from edgespec.speculative.engine import SpecStats, decode
from edgespec.sysinfo import machine_info


def run(model, ids, drafter, tokens, stats):
    model.backend.reset()
    start = time.perf_counter()
    out = [e.token for e in decode(model.backend, ids, Sampler(SamplingParams()), tokens, drafter, 8, stats)]
    return out, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    model = load(args.model, threads=args.threads)  # an export with trained ppd (and s3d) drafters
    rows, record = load_drafter(model.source, "ppd")
    k = len(rows)
    try:
        s3d_rows, s3d_record = load_drafter(model.source, "s3d")
    except Exception as exc:  # noqa: BLE001  (a script: measure what exists)
        print(f"no s3d drafter: {exc}", file=sys.stderr)
        s3d_rows = s3d_record = None
    cost = cached_cost_model(model.backend, model.tokenizer.encode(CALIBRATION_TEXT), model.source, model.ref.name,
                             args.threads)
    c1 = cost.pass_seconds(1)
    per_cat = defaultdict(lambda: {"ppd": SpecStats(), "ngram": SpecStats(), "ppd_sized": SpecStats(),
                                   "s3d": SpecStats(), "seconds": defaultdict(float), "prompts": 0, "diverged": 0})
    drafters = {"ppd": lambda: PPDDrafter(rows), "ngram": NgramDrafter, "ppd_sized": lambda: PPDDrafter(rows, cost=cost)}
    if s3d_rows is not None:
        L = model.config.num_layers
        drafters["s3d"] = lambda: S3DDrafter(model.backend, L, s3d_record["skip"], s3d_rows)
    for row in load_prompts("suite"):
        ids = model.chat_prompt([{"role": "user", "content": row["turns"][0]}])
        entry = per_cat[row["category"]]
        entry["prompts"] += 1
        plain, t = run(model, ids, None, args.tokens, SpecStats())
        entry["seconds"]["off"] += t
        for name, make in drafters.items():
            out, t = run(model, ids, make(), args.tokens, entry[name])
            entry["seconds"][name] += t
            entry["diverged"] += out != plain
        print(row["category"], row["question_id"], {n: entry[n].as_dict()["tokens_per_step"]
                                                     for n in drafters}, file=sys.stderr)
    report = {"model": args.model, "machine": machine_info(args.threads), "k": k, "drafter": {
        key: record[key] for key in ("steps", "minutes", "acceptance_per_depth", "export_hash", "training_data")},
        "s3d": None if s3d_record is None else {key: s3d_record[key] for key in (
            "gamma", "skip", "steps", "minutes", "acceptance_per_depth")},
        "command": "python benchmarks/scripts/ppd_acceptance.py " + " ".join(sys.argv[1:]),
        "cost_curve": {"sizes": cost.sizes, "c": [round(s / c1, 3) for s in cost.seconds]}, "categories": {}}
    for category, entry in per_cat.items():
        ppd = entry["ppd"]
        acc = [round(a / ppd.steps, 4) for a in ppd.accepted_at_depth] + [0.0] * (k - len(ppd.accepted_at_depth))
        projection = {}
        for n in range(1, k + 1):
            expected = 1 + sum(acc[:n])
            projection[n] = {"E_tokens": round(expected, 3),
                             "cpu": round(expected / (cost.pass_seconds((1 + n) ** 2) / c1), 3),
                             "accelerator": round(expected, 3) if (1 + n) ** 2 <= 16 else None}
        ngram = entry["ngram"]
        report["categories"][category] = {
            "prompts": entry["prompts"], "ppd_acceptance_per_depth": acc, "ppd_tokens_per_step": ppd.tokens_per_step,
            "ppd_projection": projection, "ngram_tokens_per_step": round(ngram.tokens_per_step, 3),
            "ngram_accelerator": round(ngram.tokens_per_step, 3),
            "ngram_cpu": round(ngram.tokens_per_step / (cost.pass_seconds(round(1 + ngram.drafted / ngram.steps)) / c1), 3)
            if ngram.steps else None,
            "measured_speedup": {n: round(entry["seconds"]["off"] / entry["seconds"][n], 3) for n in drafters},
            "ppd_sized_tokens_per_step": round(entry["ppd_sized"].tokens_per_step, 3),
            "outputs_differing_from_plain": entry["diverged"]}
        if s3d_rows is not None:
            s3d = entry["s3d"]
            gamma = len(s3d_rows) + 1
            s_acc = [round(a / s3d.steps, 4) for a in s3d.accepted_at_depth] + [0.0] * (gamma - len(s3d.accepted_at_depth))
            share = 1 - len(s3d_record["skip"]) / model.config.num_layers  # the draft pass's share of the layers
            report["categories"][category].update({
                "s3d_acceptance_per_depth": s_acc, "s3d_tokens_per_step": round(s3d.tokens_per_step, 3),
                # accelerator: verify of gamma+1 rows costs 1, the draft pass ~ its share of the layers
                "s3d_accelerator": round(s3d.tokens_per_step / (1 + share), 3)})
    print(json.dumps(report["categories"], indent=1))
    print(markdown(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


def markdown(report: dict) -> str:
    """Per category: acceptance per depth (P(accepted >= d)), tokens per step, measured and projected speedups."""
    k = report["k"]
    lines = [f"| category | PPD P(acc>=d), d=1..{k} | PPD tok/step (chain {k}) | PPD sized: tok/step, CPU x | "
             "PPD accel. x (n=3, 16 rows) | S3D P(acc>=d) | S3D tok/step, CPU x, accel. x | "
             "n-gram tok/step, CPU x, accel. x |", "|---|---|---|---|---|---|---|---|"]
    for name, c in report["categories"].items():
        m = c["measured_speedup"]
        s3d = (f"{c['s3d_acceptance_per_depth']}", f"{c['s3d_tokens_per_step']}, {m.get('s3d')}, "
               f"{c['s3d_accelerator']}") if "s3d_acceptance_per_depth" in c else ("-", "-")
        accel = c["ppd_projection"].get(min(3, k)) or c["ppd_projection"].get(str(min(3, k)))
        lines.append(f"| {name} | {c['ppd_acceptance_per_depth']} | {round(c['ppd_tokens_per_step'], 3)} | "
                     f"{c['ppd_sized_tokens_per_step']}, {m['ppd_sized']} | {accel['accelerator']} | {s3d[0]} | "
                     f"{s3d[1]} | {c['ngram_tokens_per_step']}, {m['ngram']}, {c['ngram_accelerator']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
