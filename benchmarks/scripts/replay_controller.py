"""`--spec auto`'s n-gram controller replayed offline over plain greedy outputs: no timing noise, so two
policies are compared on the same tokens and the same cost curve.

    python benchmarks/scripts/replay_controller.py generate EXPORT_DIR TOKENS OUT.json [PROMPTS.jsonl ...]
    python benchmarks/scripts/replay_controller.py replay OUT.json [COST_CURVE.json ...]

generate: greedy plain outputs of the shipped default and suite prompts (and any extra prompt files) with the
chat template, as `edgespec bench` feeds them. replay: for every output, step by step as the engine does, the
controller plans (drafter, K) from the context, the n-gram drafter proposes its tree, and the verify pass keeps
the longest tree path equal to the output's next tokens (greedy verification, near-ties aside); a step costs the
curve's t(rows). Prints the modelled speed-up over plain decoding per prompt set and category for the shipped
policy (measured priors per match-length bucket) and without priors (every bucket starts at 0.5, worth one
draft), plus a per-step oracle that knows each draft's outcome (an upper bound no policy reaches). Cost curves:
JSON files {"sizes": [...], "seconds": [...]} (EDGESPEC_CACHE/costs holds the measured ones); default, the
curve measured for qwen2.5-coder-0.5b's default export on a 2-core Zen 4 (2026-12-05).
"""
import json
import statistics
import sys

from edgespec.speculative.controller import Controller, CostModel
from edgespec.speculative.drafters.ngram import NgramDrafter
from edgespec.speculative.verify import verify_greedy

BUDGET = 8  # auto's draft budget (speculative/drafters/select.py)
DEFAULT_CURVE = {"sizes": [1, 2, 3, 4, 6, 8, 12, 16],
                 "seconds": [0.014028, 0.017311, 0.022192, 0.026138, 0.034973, 0.0438, 0.060728, 0.079442]}


def generate(export: str, tokens: int, out: str, extra: list[str]) -> None:
    import edgespec
    from edgespec.bench.runner import load_prompts
    from edgespec.sampling import SamplingParams

    model = edgespec.load(export, backend="ort", spec="off", threads=0, context=4096)
    rows = []
    for source in ["default", "suite", *extra]:
        for row in load_prompts(source):
            ids = model.chat_prompt([{"role": "user", "content": row["turns"][0]}])
            output = [e.token for e in model.generate(ids, max_tokens=tokens, sampling=SamplingParams(),
                                                      stop_on_eos=False)]
            rows.append({"set": source.rsplit("/", 1)[-1], "category": row.get("category"), "prompt": ids,
                         "output": output})
            print(f"{source} {row.get('category')}: {len(output)} tokens", flush=True)
    with open(out, "w") as f:
        json.dump(rows, f)


def kept(tree, future: list[int]) -> int:
    """Drafted tokens the engine's greedy verification keeps when the target's next tokens are `future`: its
    prediction at row r (after the root-to-r path) is the output's token at that path's depth."""
    def target_token(row: int) -> int:
        depth = len(tree.path(row - 1)) if row else 0
        return future[depth] if depth < len(future) else -1
    return len(verify_greedy(tree, target_token)[0])


def replay(rows: list[dict], cost: CostModel, priors: dict | None, oracle: bool = False) -> list[float]:
    """Per row, the modelled speed-up over plain decoding. One controller for all rows (a loaded Model keeps
    its controller across generations, as the bench runs its prompts)."""
    controller = Controller(CostModel(cost.sizes, cost.seconds), max_budget=BUDGET, free={"ngram"},
                            priors=dict(priors or {}))
    speedups, drafter = [], NgramDrafter.for_auto()  # one per loaded model, reset per generation, as the engine's
    for row in rows:
        drafter.reset()
        prompt, out = row["prompt"], row["output"]
        t, seconds = 1, 0.0  # out[0] comes from the prefill
        while t < len(out):
            context = prompt + out[:t]
            bucket = drafter.bucket(context)
            if oracle:
                best = (1 / cost.pass_seconds(1), 0, 1)  # (tokens per second, kept, rows)
                for k in range(1, BUDGET + 1) if bucket else ():
                    tree = drafter.propose(context, k)
                    n = min(kept(tree, out[t:]), len(out) - t - 1)
                    best = max(best, ((n + 1) / cost.pass_seconds(len(tree) + 1), n, len(tree) + 1))
                _, n, rows_ = best
            else:
                name, k = controller.plan(["ngram"] if bucket else [], {"ngram": bucket} if bucket else {})
                if name is None:
                    n, rows_ = 0, 1
                else:
                    tree = drafter.propose(context, min(k, BUDGET))
                    n, rows_ = min(kept(tree, out[t:]), len(out) - t - 1), len(tree) + 1
                    controller.observe(name, tree.depth(), n, 0.0, rows_, cost.pass_seconds(rows_), bucket)
            seconds += cost.pass_seconds(rows_)
            t += n + 1
        speedups.append((len(out) - 1) * cost.pass_seconds(1) / seconds)
    return speedups


def report(rows: list[dict], cost: CostModel) -> None:
    policies = (("shipped priors", NgramDrafter.priors, False), ("no priors", None, False), ("oracle", None, True))
    for name, priors, oracle in policies:
        for subset in dict.fromkeys(r["set"] for r in rows):
            chosen = [r for r in rows if r["set"] == subset]
            speedups = replay(chosen, cost, priors, oracle)
            by = {}
            for row, s in zip(chosen, speedups):
                by.setdefault(row["category"], []).append(s)
            cells = ", ".join(f"{c} {statistics.mean(v):.3f}" for c, v in by.items())
            print(f"{name:15s} {subset:12s} all {statistics.mean(speedups):.3f} ({cells})", flush=True)


def main(argv: list[str]) -> None:
    if argv[:1] == ["generate"]:
        generate(argv[1], int(argv[2]), argv[3], argv[4:])
        return
    if argv[:1] != ["replay"] or len(argv) < 2:
        raise SystemExit(__doc__)
    rows = json.load(open(argv[1]))
    for path in argv[2:] or [None]:
        curve = DEFAULT_CURVE if path is None else json.load(open(path))
        print(f"cost curve {path or 'default'}: t(T)/t(1) =",
              [round(s / curve["seconds"][0], 2) for s in curve["seconds"]])
        report(rows, CostModel(curve["sizes"], curve["seconds"]))


if __name__ == "__main__":
    main(sys.argv[1:])
