"""Per-category results of a bench run, their markdown table and a PNG plot (matplotlib, `[plot]` extra)."""

from __future__ import annotations

import numpy as np

from ..errors import MissingDependencyError

PLAIN_PEERS = ("llama.cpp", "onnxruntime-genai")
PEER_GREYS = {"llama.cpp": "0.45", "onnxruntime-genai": "0.72"}  # one shade per peer family


def by_category(runs: dict[str, list], rows: list[dict]) -> dict:
    """category -> engine -> decode tok/s (median over repetitions), speedups, outputs equal to plain greedy.

    A speedup over plain is paired: the median over repetitions of (engine / plain in the same repetition),
    so that the machine's slow minutes, which hit both runs of one repetition, cancel."""
    categories = sorted({r.get("category", "default") for r in rows}, key=[r.get("category", "default")
                                                                           for r in rows].index)
    out = {}
    for category in categories:
        idx = [i for i, r in enumerate(rows) if r.get("category", "default") == category]
        per_rep = {engine: [sum(run["results"][i]["steps"] for i in idx) /
                            sum(run["results"][i]["decode_s"] for i in idx) for run in reps]
                   for engine, reps in runs.items()}
        speeds = {engine: float(np.median(values)) for engine, values in per_rep.items()}
        peers = [speeds[p] for p in PLAIN_PEERS if p in speeds]
        fastest_peer = max(peers) if peers else None
        table = {}
        for engine, tok_s in speeds.items():
            plain = engine.split("+")[0]
            entry = {"decode_tok_s": round(tok_s, 2)}
            if plain != engine and plain in speeds:
                ratios = [a / b for a, b in zip(per_rep[engine], per_rep[plain])]
                entry["vs_plain"] = round(float(np.median(ratios)), 3)
                first = runs[engine][0]["results"]
                entry["equal_to_plain"] = f"{sum(first[i]['token_ids'] == runs[plain][0]['results'][i]['token_ids'] for i in idx)}/{len(idx)}"
            if fastest_peer:
                entry["vs_fastest_plain_peer"] = round(tok_s / fastest_peer, 3)
            table[engine] = entry
        out[category] = {"prompts": len(idx), "engines": table}
    return out


def category_markdown(categories: dict) -> str:
    engines = list(next(iter(categories.values()))["engines"])
    lines = ["| category | " + " | ".join(engines) + " |", "|---|" + "---|" * len(engines)]
    for category, c in categories.items():
        cells = []
        for engine in engines:
            e = c["engines"][engine]
            cell = f"{e['decode_tok_s']:.1f}"
            if "vs_plain" in e:
                cell += f" ({e['vs_plain']:.2f}x plain, {e['equal_to_plain']} equal)"
            cells.append(cell)
        lines.append(f"| {category} ({c['prompts']}) | " + " | ".join(cells) + " |")
    return "Decode tok/s per prompt category (speculative engines: speedup over the same backend's plain " \
           "decoding, prompts whose output equals plain greedy):\n\n" + "\n".join(lines)


def plot(report: dict, path: str) -> None:
    """Grouped bars: decode tok/s per category and engine, plain engines hatched, peers grey."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("--plot needs matplotlib: pip install 'edgespec[plot]'") from None
    categories = report["categories"]
    names = list(categories)
    engines = list(next(iter(categories.values()))["engines"])
    width = 0.8 / len(engines)
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(names) + 2), 5.6), dpi=120)
    colours = plt.get_cmap("tab10")
    for k, engine in enumerate(engines):
        entries = [categories[c]["engines"][engine] for c in names]
        values = [entry["decode_tok_s"] for entry in entries]
        peer = not engine.startswith("edgespec")
        bars = ax.bar(np.arange(len(names)) + (k - (len(engines) - 1) / 2) * width, values, width,
                      label=engine, color=PEER_GREYS.get(engine.split("+")[0], "0.6") if peer else colours(k),
                      hatch="//" if "+" not in engine else None,
                      edgecolor="white" if peer else None)
        # a speculative bar says its speedup over plain (the number the plot is for), a plain one its tok/s
        labels = [f"{entry['vs_plain']:.2f}x" if "vs_plain" in entry else f"{entry['decode_tok_s']:.1f}"
                  for entry in entries]
        for bar, value, label in zip(bars, values, labels):
            ax.annotate(label, (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom", fontsize=6)
    m = report["machine"]
    ax.set_xticks(np.arange(len(names)), [f"{c}\n({categories[c]['prompts']} prompts)" for c in names])
    ax.set_ylabel("decode tokens / s (higher is better)")
    ax.set_title(f"{report['model']}: {report['tokens']} new tokens, {m['cpu']}, {m['threads']} threads\n"
                 "hatched = plain decoding, labelled tok/s; speculative bars labelled with their speedup over plain; "
                 "grey = peers (dark llama.cpp, light onnxruntime-genai)", fontsize=8)
    # below the axes: inside, it hid the tallest bars' labels
    ax.legend(fontsize=7, ncol=min(len(engines), 5), loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
