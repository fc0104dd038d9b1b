"""Bytes per token vs perplexity of export recipes, beside llama.cpp on the source GGUF.

    python benchmarks/scripts/recipes_plot.py MODEL SOURCE.gguf LABEL=EXPORT_DIR ... --out benchmarks/recipes-MODEL

Bytes per token as `edgespec bench` counts them (the weights one decode step reads: every weight but
the embedding table; for the GGUF every tensor but token_embd, plus it again when it is the tied
lm_head). Perplexities are the ones each export's validation measured (same texts, same tokens),
llama.cpp's from the same validation runs. Writes OUT.json, OUT.png and prints markdown rows.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edgespec.bench.runner import export_weights_per_token, gguf_weights_per_token


def export_point(directory: Path) -> dict:
    m = json.loads((directory / "edgespec.json").read_text())
    q, v = m["quantization"], m["validation"]
    return {"bytes_per_token": export_weights_per_token(m),
            "ppl": {t: v[t]["perplexity"] for t in ("stdlib", "prose")},
            "top1": {t: v[t]["top1_agreement"] for t in ("stdlib", "prose")},
            "llamacpp_ppl": {t: v[t].get("llamacpp_perplexity") for t in ("stdlib", "prose")},
            "reference_ppl": {t: v[t]["reference_perplexity"] for t in ("stdlib", "prose")},
            "recipe": q.get("recipe"), "plan": q.get("plan", {}).get("groups_kept_high"),
            "export_seconds": m["timing"]["total_seconds"]}


def recorded_point(text: str) -> dict:
    mb, stdlib, prose = (float(v) for v in text.split(":"))
    return {"bytes_per_token": int(mb * 1e6), "ppl": {"stdlib": stdlib, "prose": prose}, "recorded": True}


def main() -> None:
    model, source = sys.argv[1], sys.argv[2]
    out = Path(sys.argv[sys.argv.index("--out") + 1])
    pairs = [a.split("=", 1) for a in sys.argv[3:] if "=" in a and not a.startswith("--")]
    # LABEL=DIR (an export) or LABEL=MB:PPL_STDLIB:PPL_PROSE (a point recorded elsewhere, e.g. exports.md)
    points = {label: export_point(Path(d)) if Path(d).is_dir() else recorded_point(d) for label, d in pairs}
    llama_ppl = next(p["llamacpp_ppl"] for p in points.values() if "llamacpp_ppl" in p)
    points["llama.cpp (GGUF)"] = {"bytes_per_token": gguf_weights_per_token(Path(source)), "ppl": llama_ppl}
    result = {"model": model, "source": source, "points": points}
    Path(f"{out}.json").write_text(json.dumps(result, indent=1))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, text in zip(axes, ("stdlib", "prose")):
        for label, p in points.items():
            marker = "s" if label.startswith("llama.cpp") else "o"
            ax.scatter(p["bytes_per_token"] / 1e6, p["ppl"][text], marker=marker, s=40)
            ax.annotate(label, (p["bytes_per_token"] / 1e6, p["ppl"][text]), fontsize=8,
                        xytext=(4, 4), textcoords="offset points")
        ax.axhline(llama_ppl[text] * 1.02, color="grey", lw=0.8, ls="--")
        ax.set_title(f"{model}: {text} text (dashed: 1.02x llama.cpp)", fontsize=9)
        ax.set_xlabel("weights read per token (MB)")
        ax.set_ylabel("perplexity (256 tokens)")
    fig.tight_layout()
    fig.savefig(Path(f"{out}.png"), dpi=110)
    for label, p in points.items():
        print(f"| {model} | {label} | {p['bytes_per_token'] / 1e6:.0f} | {p['ppl']['stdlib']:.3f} | "
              f"{p['ppl']['prose']:.3f} |")


if __name__ == "__main__":
    main()
