"""Perplexity of exports, llama.cpp on the source GGUF and onnxruntime-genai's own int4 model, on the export
validation's two texts, at several lengths.

    python benchmarks/scripts/perplexity_peers.py SOURCE.gguf [--tokens 256,1024] [--genai GENAI_DIR] \
        LABEL=EXPORT_DIR ... --out benchmarks/perplexity-MODEL.json

Every engine sees the same token ids (edgespec's tokenizer of the GGUF, which equals llama.cpp's; onnxruntime-genai's
builder was given a tokenizer written from the same GGUF) and computes all positions teacher-forced in one pass
from an empty cache; perplexity is `export/validate.py::perplexity`. The first 256 tokens are the ones every
export's own validation measures; longer runs continue the same texts (never the calibration's, which are heapq's
source and pydoc topics from the other end), so they resolve a ratio that 256 tokens leave at +-2%. The
genai model runs on plain onnxruntime with the session options its genai_config.json gives (the graph is the
model; genai adds only the decode loop), so its kernels and accuracy level are the ones its engine uses.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from edgespec.bench.runner import export_weights_per_token, genai_weights_per_token, gguf_weights_per_token
from edgespec.export.manifest import manifest_config, read_manifest
from edgespec.export.validate import LlamaCppLogits, perplexity, prose_text, stdlib_text
from edgespec.formats import open_weights
from edgespec.tokenizer import Tokenizer

TEXT_CHARS = 40000  # enough characters for > 1024 tokens of each text


def texts(gguf: Path, n: int) -> dict[str, list[int]]:
    tokenizer = Tokenizer.from_gguf(open_weights(gguf).metadata)
    out = {"stdlib": tokenizer.encode(stdlib_text(TEXT_CHARS), add_bos=False)[:n],
           "prose": tokenizer.encode(prose_text(TEXT_CHARS), add_bos=False)[:n]}
    short = [name for name, ids in out.items() if len(ids) < n]
    if short:
        raise SystemExit(f"the {short} text has fewer than {n} tokens; raise TEXT_CHARS")
    return out


def export_logits(directory: Path, tokens: list[int]) -> np.ndarray:
    from edgespec.runtimes.ort import OrtBackend

    manifest = read_manifest(directory)
    backend = OrtBackend(str(directory / manifest["graph"]["file"]), manifest_config(manifest), len(tokens) + 8, 2)
    return backend.forward(tokens)


def genai_logits(directory: Path, tokens: list[int]) -> np.ndarray:
    import onnxruntime as ort

    decoder = json.loads((directory / "genai_config.json").read_text())["model"]["decoder"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(directory / decoder["filename"]), options, providers=["CPUExecutionProvider"])
    feeds = {"input_ids": np.asarray([tokens], np.int64), "attention_mask": np.ones((1, len(tokens)), np.int64)}
    for i in session.get_inputs():
        if i.name.startswith("past_key_values"):
            feeds[i.name] = np.zeros((1, decoder["num_key_value_heads"], 0, decoder["head_size"]), np.float32)
    return session.run(["logits"], feeds)[0][0]


def main(argv: list[str]) -> None:
    gguf = Path(argv[0])
    out = Path(argv[argv.index("--out") + 1])
    lengths = [int(x) for x in (argv[argv.index("--tokens") + 1] if "--tokens" in argv else "256,1024").split(",")]
    genai = Path(argv[argv.index("--genai") + 1]) if "--genai" in argv else None
    exports = dict(a.split("=", 1) for a in argv[1:] if "=" in a and not a.startswith("--"))
    by_text = texts(gguf, max(lengths))
    engines = {label: (lambda ids, d=Path(d): export_logits(d, ids)) for label, d in exports.items()}
    engines["llama.cpp (GGUF)"] = lambda ids: LlamaCppLogits(gguf, len(ids) + 8).forward(ids)
    if genai is not None:
        engines["onnxruntime-genai int4"] = lambda ids: genai_logits(genai, ids)
    bytes_per_token = {label: export_weights_per_token(read_manifest(Path(d), verify=False))
                       for label, d in exports.items()}
    bytes_per_token["llama.cpp (GGUF)"] = gguf_weights_per_token(gguf)
    if genai is not None:
        bytes_per_token["onnxruntime-genai int4"] = genai_weights_per_token(genai)
    result = {"source": str(gguf), "lengths": lengths, "points": {}}
    for label, run in engines.items():
        started, point = time.perf_counter(), {"bytes_per_token": bytes_per_token[label], "ppl": {}}
        for name, ids in by_text.items():
            logits = run(ids)  # one pass over the longest length; shorter lengths are its prefixes
            for n in lengths:
                point["ppl"][f"{name}@{n}"] = perplexity(logits[:n], ids[:n])
            del logits
        result["points"][label] = point
        print(f"{label:28s} {bytes_per_token[label] / 1e6:7.1f} MB/token  " +
              "  ".join(f"{k} {v:.3f}" for k, v in point["ppl"].items()) + f"  ({time.perf_counter() - started:.0f} s)",
              flush=True)
    out.write_text(json.dumps(result, indent=1))
    plot(result, out.with_suffix(".png"))


def plot(result: dict, path: Path) -> None:
    """Bytes per token against perplexity, one panel per text and length; the issue's bar (1.02x llama.cpp's
    perplexity, 1.1x onnxruntime-genai's bytes) dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points, keys = result["points"], list(next(iter(result["points"].values()))["ppl"])
    fig, axes = plt.subplots(1, len(keys), figsize=(4.6 * len(keys), 4.2))
    for ax, key in zip(axes, keys):
        for label, p in points.items():
            ax.scatter(p["bytes_per_token"] / 1e6, p["ppl"][key], s=36,
                       marker="s" if label.startswith(("llama.cpp", "onnxruntime-genai")) else "o")
            ax.annotate(label, (p["bytes_per_token"] / 1e6, p["ppl"][key]), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")
        if "llama.cpp (GGUF)" in points:
            ax.axhline(1.02 * points["llama.cpp (GGUF)"]["ppl"][key], color="grey", lw=0.8, ls="--")
        if "onnxruntime-genai int4" in points:
            ax.axvline(1.1 * points["onnxruntime-genai int4"]["bytes_per_token"] / 1e6, color="grey", lw=0.8, ls="--")
        ax.set_title(key.replace("@", ", ") + " tokens", fontsize=9)
        ax.set_xlabel("MB read per token")
    axes[0].set_ylabel("perplexity")
    fig.suptitle(Path(result["source"]).name, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)



if __name__ == "__main__":
    main(sys.argv[1:])
