"""edgespec's command-line arguments: one parser for every subcommand (the commands are in cli.py).

Kept apart from the commands so that each file reads on its own: this one says what can be asked,
cli.py what is done with it.
"""

from __future__ import annotations

import argparse
from typing import Callable

from . import hub, manage
from .export.targets import TARGETS
from ._version import __version__
from .arg_types import count, draft_budget, int_at_least, positive_tokens, threads
from .bench import TURNS
from .serve import add_arguments as add_serve_arguments

DEFAULTS = f"""defaults of chat and generate (override with the flags; see `edgespec chat -h`):
  model {hub.DEFAULT_MODEL} (a 491 MB download, exported once on first use; smollm2-135m is smaller
        and faster but answers poorly), --spec auto, --temperature 0.8 (0 = greedy), --top-k 40,
        --top-p 0.9, --repeat-penalty 1.1, -n -1 (until the answer ends), --context 4096"""


def build_parser(commands: dict[str, Callable]) -> argparse.ArgumentParser:
    """The parser of every subcommand; `commands` maps a subcommand to the function that runs it."""
    parser = argparse.ArgumentParser(prog="edgespec", epilog=DEFAULTS, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="edgespec: small LLMs, fast, with self-speculative decoding")
    parser.add_argument("--version", action="version", version=f"edgespec {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    p = sub.add_parser("pull", help="fetch a known model into the local cache")
    p.add_argument("name", nargs="?", help="known model name (see --list)")
    p.add_argument("--list", action="store_true", help="list the known models")
    p.add_argument("--force", action="store_true", help="fetch again even if cached and valid")
    p.set_defaults(func=commands["pull"])

    p = sub.add_parser("info", help="describe a model or an export (its manifest and validation); never downloads")
    p.add_argument("model", help="known name, .gguf file, HF directory or export directory")
    p.set_defaults(func=commands["info"])

    p = sub.add_parser("list", help="the pulled models and the exports in the cache: sizes and sources")
    p.set_defaults(func=lambda args: print("\n".join(manage.list_rows())))

    p = sub.add_parser("rm", help="delete a pulled model (with its exports) or one export (a name from `list`)")
    p.add_argument("name", nargs="*")
    p.add_argument("--stale", action="store_true",
                   help="delete every export made on first use by another edgespec version (`list` marks them)")
    p.set_defaults(func=commands["rm"])

    p = sub.add_parser("export", help="export a model to ONNX (int4 by default), validated, with a manifest")
    p.add_argument("model", nargs="?", default=hub.DEFAULT_MODEL)
    p.add_argument("-o", "--output", help="output directory (default: ./<model>-<precision>)")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--int4", dest="precision", action="store_const", const="int4")
    precision.add_argument("--fp32", dest="precision", action="store_const", const="fp32")
    precision.add_argument("--fp16", dest="precision", action="store_const", const="fp16")
    p.add_argument("--format", default="onnx", choices=["onnx", "gguf"],
                   help="gguf: a GGUF for llama.cpp (Q4_0 for --int4, F32 for --fp32, or --gguf-type)")
    p.add_argument("--gguf-type", help="Q8_0 | Q4_0 | F16 | F32 (with --format gguf)")
    p.add_argument("--block-size", type=int, default=32, help="int4 block for requantized weights (16/32/64/128)")
    p.add_argument("--accuracy-level", type=int, default=None,
                   help="MatMulNBits accuracy level for int4 weights: 4 = int8 activations (fast, like llama.cpp), "
                        "0/1 = fp32 activations on every weight (exact; 0.6-0.9x speed on int4, far slower on int8 "
                        "weights; --target web uses 1: the browser computes fp32)")
    p.add_argument("--recipe", default=None,
                   help="int4: faithful (every GGUF level kept) | balanced (default: GPTQ int4 where the measured "
                        "KL cost per byte is lowest, the GGUF's levels elsewhere, within 1.0975x the bytes per token "
                        "of onnxruntime-genai's int4 model) | fast (GPTQ int4 but the exact 4-bit GGUF levels) | "
                        "compact (fast with symmetric int4, genai's format, within its bytes per token)")
    p.add_argument("--bytes-budget", default=None,
                   help="bytes per token for balanced/fast/compact instead of the recipe's own (e.g. 350M)")
    p.add_argument("--lm-head", default=None, help="int8 | int4 | fp32 (with --recipe faithful or --requantize)")
    p.add_argument("--embed", help="fp16 | fp32 | fp16-widened (fp16 values stored as fp32) | quantized (the GGUF's "
                                   "own levels as int8 + fp32 scales) | tied (rows read from the lm_head's quantized "
                                   "weight: one table, the smallest file) (default: quantized for --int4 on the cpu "
                                   "target, fp16 for --target npu and the float precisions; --target web: tied)")
    p.add_argument("--max-len", type=int, help="context length of the KV buffers (default 4096; 1024 for --target npu)")
    p.add_argument("--target", default="cpu", choices=sorted(TARGETS),
                   help="cpu (default): dynamic shapes for onnxruntime; npu: static shapes, one graph per row bucket, "
                        "KV window on the host (QNN HTP, OpenVINO, CPU); web: the phone/browser demo's preset "
                        "(android_demo/): the embedding tied to the int4 lm_head (one quantized table, dequantized in "
                        "fp32, which WebGPU without shader-f16 can read) and fp32 activations; explicit flags override a preset")
    p.add_argument("--buckets", default="1,4,8,16", help="--target npu: rows per graph, comma-separated")
    p.add_argument("--validate-tokens", type=int, default=256)
    p.add_argument("--requantize", action="store_true",
                   help="requantize GGUF weights to plain int4 (asymmetric, --block-size) instead of keeping "
                        "their own levels: smaller and faster, lossy")
    p.add_argument("--layer-plans", action=argparse.BooleanOptionalAction, default=None,
                   help="an If per middle layer, so --spec layerskip / s3d can skip layers (every plain step pays for "
                        "them: ~2%% on qwen 0.5b, 2 cores; default: every layer inlined, except --target web)")
    p.add_argument("--new-rows", action=argparse.BooleanOptionalAction, default=None,
                   help="outputs new_key.i / new_value.i, the rows each pass wrote, for the JS engine on "
                        "onnxruntime-node (its faster 'appended' KV scheme); every pass pays for them (~2%% of a "
                        "plain step on 2 cores), so they are off by default")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.set_defaults(func=commands["export"], precision="int4")

    p = sub.add_parser("bench", help="plain decode: our export vs llama.cpp on the same GGUF")
    p.add_argument("model", nargs="?", default=hub.DEFAULT_MODEL)
    p.add_argument("--tokens", type=positive_tokens, default=128, help="new tokens per prompt")
    p.add_argument("--threads", type=threads, default=2)
    p.add_argument("--reps", type=count, default=3, help="interleaved repetitions")
    p.add_argument("--prompts", help="a question.jsonl file (question_id, category, turns), or a shipped set: "
                                     "default (5 prompts), suite (chat, code, code_edit, summarisation, "
                                     "long_context_qa)")
    p.add_argument("--plot", help="write a PNG plot of decode speed per category and engine (needs matplotlib)")
    p.add_argument("--json", dest="json_out", help="write the full report here")
    p.add_argument("--markdown", help="append the markdown table to this file")
    p.add_argument("--ortgenai", help="also run onnxruntime-genai on this model dir (built by its builder)")
    p.add_argument("--peers-python", help="the Python that has onnxruntime-genai (default: this one)")
    p.add_argument("--backend", default="ort,llamacpp",
                   help="our backends to run, comma-separated: ort, llamacpp, auto, static (the NPU graphs on the "
                        "CPU EP) (default: ort,llamacpp)")
    p.add_argument("--spec", default="off", help="decoding modes, comma-separated: off, ngram, layerskip, ppd, "
                                                 "s3d, auto, draft:MODEL (default: off)")
    p.add_argument("--draft-budget", type=draft_budget, default=8, help="max draft tokens per verify pass")
    p.add_argument("--turns", choices=TURNS, default="all",
                   help="all: every engine loaded at once, taking turns prompt by prompt (ratios between any two "
                        "compare runs seconds apart; every engine in memory at once: ~10 GB on qwen 1.5b with both "
                        "peers and --spec off,auto); family: one engine and its speculative variants at a time "
                        "(less memory) (default: all)")
    p.add_argument("--cost-curve", action="store_true",
                   help="measure the verify cost curve c(T) on each backend instead of decoding")
    p.set_defaults(func=commands["bench"])

    p = sub.add_parser("generate", epilog=DEFAULTS, formatter_class=argparse.RawDescriptionHelpFormatter, help="complete one prompt")
    p.add_argument("model", nargs="?", default=hub.DEFAULT_MODEL)
    p.add_argument("-p", "--prompt", help="the prompt; '-' reads it from stdin, as does a pipe without -p")
    p.add_argument("-f", "--file", help="read the prompt from this file")
    p.add_argument("--system", help="system message (chat template)")
    p.add_argument("--no-chat-template", action="store_true", help="feed the prompt as raw text")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end instead of streaming")
    _add_sampling_args(p)
    p.set_defaults(func=commands["generate"])

    p = sub.add_parser("tune", help="find this device's fastest layer-skip drafter and store it in the export")
    p.add_argument("model", nargs="?", default=hub.DEFAULT_MODEL)
    p.add_argument("--threads", type=threads, default=0)
    p.add_argument("--tokens", type=positive_tokens, default=48, help="new tokens per calibration prompt")
    p.set_defaults(func=commands["tune"])

    p = sub.add_parser("train", help="train a self-drafter for a model's export ([train] extra: torch): ppd "
                                     "(prompt tokens) or s3d (mask tokens, middle layers skipped)")
    p.add_argument("kind", choices=["ppd", "s3d"])
    p.add_argument("model", nargs="?", default=hub.DEFAULT_MODEL)
    p.add_argument("--minutes", type=_minutes, default=15.0, help="training time budget (default 15)")
    p.add_argument("--steps", type=count, help="stop after this many steps (also bounded by --minutes)")
    p.add_argument("--out", help="write the drafter here instead of into the export (use: --spec ppd:FILE)")
    p.add_argument("--text", action="append", default=[], help="a UTF-8 text file to add to the training data")
    p.add_argument("--tokens", type=positive_tokens, default=96, help="answer tokens per training prompt")
    p.add_argument("--samples", type=_samples, default=1, help="sampled answers per prompt beside the greedy one")
    p.add_argument("--k", type=count, default=3, help="draft depth: ppd prompt tokens, s3d gamma (gamma-1 mask rows)")
    p.add_argument("--threads", type=threads, default=0)
    p.set_defaults(func=commands["train"])

    p = sub.add_parser("chat", epilog=DEFAULTS, formatter_class=argparse.RawDescriptionHelpFormatter, help="interactive chat in the terminal")
    p.add_argument("model", nargs="?", default=hub.DEFAULT_MODEL)
    p.add_argument("--system", help="system message")
    p.add_argument("--no-stats", action="store_true", help="no stats footer after each answer")
    _add_sampling_args(p)
    p.set_defaults(func=commands["chat"])

    p = sub.add_parser("serve", help="OpenAI-compatible local server (the [serve] extra)")
    add_serve_arguments(p)
    p.set_defaults(func=commands["serve"])
    return parser


def _add_sampling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default="ort", choices=["ort", "llamacpp", "auto", "reference", "static"],
                   help="ort: int4 ONNX export on onnxruntime (made and cached on first use); llamacpp: the GGUF "
                        "on llama.cpp; auto: the faster of the two here (measured once); reference: numpy fp32; "
                        "static: the static-shape NPU graphs (export --target npu) on --device cpu|qnn|openvino")
    p.add_argument("--device", default="cpu", help="cpu; qnn (QNN HTP) or openvino: static graphs (the [npu] extra); "
                                                   "onnxruntime EPs xnnpack, nnapi, coreml, webgpu, dml, cuda "
                                                   "(if this build has them)")
    p.add_argument("--threads", type=threads, default=0, help="compute threads (0 = all physical cores)")
    p.add_argument("--context", type=positive_tokens, default=None,
                   help="context length in tokens: KV cache and memory plan (default 4096, or the model's own "
                        "maximum if smaller; at most the model's own)")
    p.add_argument("--spec", default="auto", help="speculative decoding: auto (default: n-gram drafts, trained ones "
                                                  "and, with --layer-plans, layer-skip drafts where this machine's "
                                                  "measured costs say they pay, else plain; "
                                                  "calibrated once per model and machine), off, ngram (prompt "
                                                  "lookup), layerskip (ort), ppd / s3d (trained with `edgespec "
                                                  "train`; ort), draft:MODEL (a smaller model, same vocabulary)")
    p.add_argument("--draft-budget", type=draft_budget, default=8, help="max draft tokens per verify pass")
    p.add_argument("--layer-plans", action="store_true", default=None,
                   help="run a model's export variant with an If per middle layer (made once), so --spec auto may "
                        "try layer-skip drafts; --spec layerskip / s3d imply it. Each plain step pays for them (~2%%)")
    p.add_argument("--memory-budget", help="resident memory this process may use, e.g. 1.5G (default: what it "
                                           "uses now + 90%% of the available RAM); context and draft size shrink to "
                                           "fit, and a budget plain decoding cannot fit is refused")
    p.add_argument("--exact", action="store_true", help="bit-identical output with and without --spec: every pass "
                                                        "has >= 2 rows (a plain step costs ~1.1-2x)")
    # sampling defaults are ollama's, which chat users know; --temperature 0 is greedy
    p.add_argument("-n", "--max-tokens", type=_max_tokens, default=None,
                   help="new tokens at most; -1 (default) = until the end of the answer or a full context")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy (default 0.8)")
    p.add_argument("--top-k", type=int, default=40, help="0 = off (default 40)")
    p.add_argument("--top-p", type=float, default=0.9, help="1 = off (default 0.9)")
    p.add_argument("--min-p", type=float, default=0.0, help="0 = off (default)")
    p.add_argument("--repetition-penalty", "--repeat-penalty", type=float, default=1.1,
                   help="1 = off (default 1.1)")
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--seed", type=_seed, default=None, help="for reproducible sampling (-1 = random, as llama.cpp)")


_samples = int_at_least(0, "a number of sampled answers, >= 0")


def _minutes(text: str) -> float:
    value = float(text)
    if not value > 0:  # also NaN
        raise argparse.ArgumentTypeError(f"{value}: expected a positive number of minutes")
    return value


def _seed(text: str) -> int | None:
    value = int(text)
    if value < -1:
        raise argparse.ArgumentTypeError(f"{value}: expected a seed >= 0, or -1 for a random one")
    return None if value == -1 else value


def _max_tokens(text: str) -> int | None:
    """-1 -> None: until EOS or a full context."""
    value = int(text)
    if value < 1 and value != -1:
        raise argparse.ArgumentTypeError(f"{value}: expected a positive number of tokens, or -1 for no limit")
    return None if value == -1 else value
