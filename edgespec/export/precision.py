"""Precision chosen by measured sensitivity, under a bytes-per-token budget (see quant/recipe.py).

One pass over the layers of the fp32 reference (the dequantized source) on calibration text:
  1. the inputs of every projection give its Hessian H = X^T X; every requantizable weight
     (a GGUF level other than Q4_0/Q4_1/Q4_K, or a float weight) is quantized to int4 by GPTQ when the
     calibration has at least as many tokens as the weight has inputs, else by round-to-nearest:
     with fewer tokens than inputs H is singular and GPTQ fits the calibration text, not the
     model (measured on held-out text: smollm2's ffn_down, 1536 inputs, 512-1024 tokens: output
     error 0.085-0.115 with GPTQ vs 0.077-0.080 round-to-nearest; q, 576 inputs: 0.035 vs 0.077);
  2. group g = one layer's requantizable weights (or the lm_head; see group_of): a copy of the first
     kl_tokens hidden states (held out of the Hessians, so GPTQ's fit to them is not measured) goes through layer g with its int4 weights and through every
     later layer in fp32; at the end, KL(reference || that copy) is group g's int4 cost;
  3. every group starts at int4; groups are raised to their GGUF levels (or int8 for float
     sources) by KL saved per extra byte, while the budget holds.
The lm_head is planned in row segments (Recipe.lm_head_rows): BPE vocabularies number tokens in merge
order, most frequent first, so a prefix of the rows carries most of the probability mass. Raised segments
always form a prefix (the graph computes the two parts and concatenates them). Measured on
qwen2.5-coder-0.5b's stdlib text (256 tokens): int4 lm_head 8.750 perplexity, fp32 8.657, the first 2048 rows
at full precision 8.665 (0.9 MB more than int4; the whole lm_head at int8 costs 68 MB more).
Only one layer's float weights are held at a time. Calibration text is derived at run time from
the stdlib (heapq source and pydoc's topics from the end), apart from the validation texts.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import time
from collections import ChainMap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from ..errors import EdgespecError
from ..formats import LazyWeights
from ..formats.quants import is_block_format
from ..models import reference_model_class
from ..models.llama.reference import KVCache, causal_mask, rms_norm
from ..progress import Progress
from ..quant.gptq import gptq_int4, hessian, output_error
from ..quant.int4 import PackedInt4, dequantize, quantize, take_rows
from ..quant.recipe import Recipe, int4_bytes, norm_bias_bytes, packed_bytes, peer_int4_bytes, rope_bytes

log = logging.getLogger(__name__)

ALIGNMENT_PER_WEIGHT = 4096  # page-alignment padding per weight in model.onnx.data (measured 2.4-3.9 KB)
PROJECTIONS = {"q": "attn_in", "k": "attn_in", "v": "attn_in", "o": "o_in", "gate": "ffn_in", "up": "ffn_in",
               "down": "down_in"}


def calibration_tokens(tokenizer, n: int, piece: int = 32) -> list[int]:
    """n tokens alternating `piece`-token runs of Python source and English prose (not the validation texts)."""
    import heapq

    from pydoc_data import topics

    code = tokenizer.encode(inspect.getsource(heapq), add_bos=False)
    prose = tokenizer.encode("\n\n".join(topics.topics[k] for k in sorted(topics.topics, reverse=True)[:40]),
                             add_bos=False)
    out: list[int] = []
    for start in range(0, n, piece):
        src = code if (start // piece) % 2 == 0 else prose
        out += src[start // 2: start // 2 + piece]
    return out[:n]


class BudgetBelowLeastError(EdgespecError):
    def __init__(self, message: str, least: int):
        super().__init__(message)
        self.least = least  # bytes per token of the smallest plan


@dataclass
class Plan:
    """Per weight: the GPTQ int4 form (in `int4`) or None = the high route (GGUF levels / int8)."""

    int4: dict = field(default_factory=dict)  # canonical -> PackedInt4 chosen
    high_rows: dict = field(default_factory=dict)  # canonical -> rows [0, n) on the high route, the rest int4
    tensors: dict = field(default_factory=dict)  # canonical -> manifest record
    summary: dict = field(default_factory=dict)


def plan_precision(source, tokens, recipe: Recipe, high_linear, lm_head_linear, bytes_budget: int | None = None,
                   block: int = 32, cache_file: Path | None = None, split_lm_head: bool = True,
                   max_len: int = 4096) -> Plan:
    """tokens: calibration text (calibration_tokens); high_linear / lm_head_linear: QuantizedLinear
    strategies whose pack() is the high route. cache_file: the calibration (int4 weights, KL per group)
    is saved there and reused, so another budget or recipe of the same source costs no new calibration.
    split_lm_head=False: the lm_head is one group (a tied embedding reads its rows from one int4 table).
    max_len: the export's context asked for (its RoPE tables, cut to the model's, count in its bytes per token)."""
    started = time.monotonic()
    config = source.config
    lm_name = "lm_head" if "lm_head" in LazyWeights(source) else "embed"

    groups: dict[str, list[str]] = {}  # group -> requantizable weights
    fixed_bytes, all_int4 = 0, 0
    shapes = []  # [n, k] of every projection and the lm_head
    least = 0  # the least any plan reads: every requantizable weight int4 (known before calibrating)
    records: dict[str, dict] = {}
    for i in range(config.num_layers):
        for kind in PROJECTIONS:
            name = f"layers.{i}.{kind}"
            shape = _shape(source, name)
            shapes.append(shape)
            all_int4 += int4_bytes(*shape)
            if _requantizable(source, name):
                groups.setdefault(group_of(i, PROJECTIONS[kind]), []).append(name)
                least += int4_bytes(*shape, block, not recipe.symmetric)
            else:
                fixed_bytes += _record_high(records, high_linear, name, group_of(i, PROJECTIONS[kind]))
    shape = _shape(source, lm_name)
    shapes.append(shape)
    all_int4 += int4_bytes(*shape)
    segments = lm_head_segments(config.vocab_size, recipe.lm_head_rows)
    if _requantizable(source, lm_name):
        groups.update({g: [lm_name] for g in segments})
        least += int4_bytes(*shape, block, not recipe.symmetric)
    else:
        fixed_bytes += _record_high(records, lm_head_linear, lm_name, "lm_head")
        segments = {}
    least += fixed_bytes

    if bytes_budget is not None and bytes_budget < least:
        raise BudgetBelowLeastError(
            f"--bytes-budget {bytes_budget / 1e6:.1f} MB is below the least this model can read per token "
            f"({least / 1e6:.1f} MB: every requantizable weight int4, the 4-bit GGUF levels kept); ask for at "
            f"least {math.ceil(least / 1e6)}M", least)
    cached = _load(cache_file) if cache_file is not None and cache_file.is_file() else None
    if cached is not None and not _covers(cached, groups):
        log.warning("precision: the cached calibration %s holds other groups than this plan needs (made by "
                    "another version); calibrating again", cache_file)
        cached = None
    if cached is not None:
        int4, kl, measured, kl_vocab = cached
        log.info("precision: calibration reused from %s", cache_file)
    else:
        with threadpool_limits(1):  # 2 BLAS threads spin when the other core is busy: one is faster here
            int4, kl, measured, kl_vocab = _calibrate(source, tokens, recipe, groups, block, lm_name, segments)
        if cache_file is not None:
            _save(cache_file, int4, kl, measured, kl_vocab)
    records.update(measured)
    if segments and not split_lm_head:  # one group; the calibration measured both ways (one cache for both)
        for g in segments:
            del groups[g]
        groups["lm_head"], segments = [lm_name], {"lm_head": segments["lm_head"]}
    elif "lm_head" in segments and len(segments) > 1:
        del groups["lm_head"], segments["lm_head"]

    # the recipe's budget is relative to onnxruntime-genai's int4 model as the bench counts bytes, so what the
    # bench counts beside the planned weights comes off it: our RoPE tables, norms and biases, and the data
    # file's page alignment
    genai_bytes = peer_int4_bytes(shapes, config)
    beside = 2 * rope_bytes(config, min(max_len, config.max_position_embeddings)) + norm_bias_bytes(config) \
        + ALIGNMENT_PER_WEIGHT * len(shapes)
    budget = bytes_budget if bytes_budget is not None else int(recipe.budget * genai_bytes) - beside
    low_bytes, high_bytes = {}, {}  # (group, weight) -> bytes of that weight's rows in the group
    groups_of: dict[str, list[str]] = {}  # weight -> its groups (the lm_head: one per segment)
    for g, names in groups.items():
        for n in names:
            groups_of.setdefault(n, []).append(g)
    for n, in_groups in groups_of.items():  # the high route converted once per weight, one weight at a time
        linear = lm_head_linear if n == lm_name else high_linear
        packed, offset = linear.pack(n, record=False, planned=False)
        for g in in_groups:
            rows = slice(*segments[g]) if g in segments else slice(None)
            low_bytes[g, n] = packed_bytes(take_rows(int4[n], rows))
            high_bytes[g, n] = packed_bytes(take_rows(packed, rows), None if offset is None else offset[rows],
                                            fold=linear.folds(packed))
    low = {g: sum(low_bytes[g, n] for n in names) for g, names in groups.items()}
    high = {g: sum(high_bytes[g, n] for n in names) for g, names in groups.items()}
    total = fixed_bytes + sum(low.values())
    if total > budget:  # a recipe's budget (an explicit one was refused above): the least plan, said so
        log.warning("precision: recipe %s's budget (%.1f MB per token) is below the least this model reads "
                    "(%.1f MB: every requantizable weight int4, its 4-bit GGUF levels kept exact); exporting that",
                    recipe.name, budget / 1e6, total / 1e6)
    raised = _raise(groups, kl, low, high, budget - total, _prefix_order(segments))
    total += sum(high[g] - low[g] for g in raised)

    plan = Plan()
    for g, names in groups.items():
        if g in segments:
            continue
        for name in names:
            records[name]["group_int4_kl"] = round(kl[g], 6)
            if g in raised:
                records[name].update(choice="high", bytes=high_bytes[g, name])
            else:
                records[name].update(choice="int4", bytes=low_bytes[g, name])
                plan.int4[name] = int4[name]
    if segments:
        n_high = max((segments[g][1] for g in raised if g in segments), default=0)
        choice = "high" if n_high == config.vocab_size else "int4" if n_high == 0 else "split"
        records[lm_name].update(choice=choice, high_rows=n_high, bytes=sum(
            (high if g in raised else low)[g] for g in segments),
            group_int4_kl=round(sum(kl[g] for g in segments), 6))
        if choice != "high":
            plan.int4[lm_name] = int4[lm_name]
        if choice == "split":
            plan.high_rows[lm_name] = n_high
    plan.tensors = records
    plan.summary = {"recipe": recipe.name, "budget_bytes": budget, "all_int4_bytes": all_int4,
                    "genai_int4_bytes": genai_bytes, "bytes_beside_plan": beside,
                    "bytes_per_token": total, "bytes_vs_all_int4": round(total / all_int4, 4),
                    "groups_kept_high": raised, "groups_int4": [g for g in groups if g not in raised],
                    "group_int4_kl": {g: round(kl[g], 6) for g in groups},
                    "calibration_tokens": len(tokens), "kl_tokens": min(recipe.kl_tokens, len(tokens)),
                    "kl_vocab": kl_vocab,
                    "seconds": round(time.monotonic() - started, 1)}
    log.info("precision plan (%s): %.0f MB/token (%.3fx all-int4; budget %.0f MB), raised to GGUF levels: %s",
             recipe.name, total / 1e6, total / all_int4, budget / 1e6, ", ".join(raised) or "none")
    return plan


def lm_head_segments(vocab: int, boundaries) -> dict[str, tuple[int, int]]:
    """group name -> lm_head rows [start, end): 'lm_head' (all rows) and, when the vocabulary is longer than
    the first boundary, 'lm_head rows a-b' per segment between the boundaries."""
    cuts = [0] + [b for b in boundaries if 0 < b < vocab] + [vocab]
    segments = {"lm_head": (0, vocab)}
    if len(cuts) > 2:
        segments.update({f"lm_head rows {a}-{b - 1}": (a, b) for a, b in zip(cuts, cuts[1:])})
    return segments


def _prefix_order(segments: dict) -> dict[str, str]:
    """segment -> the segment before it (which must be raised first: raised rows form a prefix)."""
    ordered = sorted(segments, key=lambda g: segments[g][0])
    return dict(zip(ordered[1:], ordered))


def _raise(groups: dict, kl: dict, low: dict, high: dict, spare: int, after: dict) -> list[str]:
    """Greedy: the group with the most KL saved per extra byte that fits in `spare` bytes is raised next
    (a segment only once the one before it is)."""
    order = sorted(groups, key=lambda g: kl[g] / max(high[g] - low[g], 1), reverse=True)
    raised: list[str] = []
    while True:
        fits = [g for g in order if g not in raised and high[g] > low[g] and high[g] - low[g] <= spare
                and (g not in after or after[g] in raised)]
        if not fits:
            return raised
        raised.append(fits[0])
        spare -= high[fits[0]] - low[fits[0]]


def _calibrate(source, tokens, recipe: Recipe, groups: dict, block: int, lm_name: str, segments: dict):
    """-> (int4 weights, KL per group, per-weight measurements, size of the KL vocabulary)."""
    config = source.config
    lazy = LazyWeights(source)
    model_cls = reference_model_class(config.architecture)
    tokens = np.asarray(tokens)
    T, t_kl = len(tokens), min(recipe.kl_tokens, len(tokens))
    positions = np.arange(T)
    bias = np.where(causal_mask(0, T), 0.0, -np.inf).astype(np.float32)
    int4: dict = {}
    kl: dict[str, float] = {}
    measured: dict[str, dict] = {}
    reference = model_cls(config, lazy, materialize=False)
    h = reference._rows("embed", tokens)
    variants: dict[str, np.ndarray] = {}
    with Progress(config.num_layers + 1, f"calibrating {recipe.name} precision (GPTQ, KL per layer)",
                  unit="layers") as progress:
        for i in range(config.num_layers):
            layer_w = {n: source.tensor(n) for n in lazy if n.startswith(f"layers.{i}.")}
            seen: dict[str, np.ndarray] = {}
            fp32 = model_cls(config, ChainMap(layer_w, lazy), materialize=False)
            fp32.observe = lambda point, x: seen.__setitem__(point.rsplit(".", 1)[1], x)
            h_next = fp32._layer(i, h, positions, bias, _cache(i), True)
            fp32.observe = None
            for g in variants:  # copies that left the reference at an earlier layer go on in fp32
                variants[g] = _layer(fp32, i, variants[g])
            hessians: dict[str, np.ndarray] = {}
            for group in dict.fromkeys(group_of(i, point) for point in PROJECTIONS.values()):
                quantized = {}
                for name in groups.get(group, []):
                    point = PROJECTIONS[name.rsplit(".", 1)[1]]
                    int4[name], method = _int4(layer_w[name], seen[point][t_kl:], hessians, point, block,
                                               recipe.symmetric)
                    quantized[name] = dequantize(int4[name])
                    measured[name] = {"group": group, "int4_method": method, "int4_output_error":
                                     round(output_error(seen[point][:t_kl], layer_w[name], quantized[name]), 5)}
                if quantized:
                    variants[group] = _layer(model_cls(config, ChainMap(quantized, layer_w, lazy),
                                                       materialize=False), i, h[:t_kl])
            h = h_next
            progress.update(1)
        normed = rms_norm(h, source.tensor("final_norm"), config.rms_norm_eps)
        lm = source.tensor(lm_name)
        ref_logits = normed[:t_kl] @ lm.T
        vocab = np.unique(np.argsort(ref_logits, axis=1)[:, -recipe.top_k:])
        ref_logits = ref_logits[:, vocab]
        final_norm = source.tensor("final_norm")
        for g, state in variants.items():
            kl[g] = _kl(ref_logits, rms_norm(state, final_norm, config.rms_norm_eps) @ lm[vocab].T)
        if segments:
            int4[lm_name], method = _int4(lm, normed[t_kl:], {}, "lm_in", block, recipe.symmetric)
            rows = dequantize(take_rows(int4[lm_name], vocab))
            for g, (start, end) in segments.items():  # this segment's rows int4, the others fp32
                inside = ((vocab >= start) & (vocab < end))[:, None]
                kl[g] = _kl(ref_logits, normed[:t_kl] @ np.where(inside, rows, lm[vocab]).T)
            measured[lm_name] = {"group": "lm_head", "int4_method": method, "int4_output_error":
                                round(output_error(normed[:t_kl], lm[vocab], rows), 5)}
        del lm
        progress.update(1)

    return int4, kl, measured, int(len(vocab))


def _save(path: Path, int4: dict, kl: dict, measured: dict, kl_vocab: int) -> None:
    """npz without pickles: each weight's packed arrays, and the measurements as JSON text."""
    arrays = {"meta": np.array(json.dumps({"kl": kl, "measured": measured, "kl_vocab": kl_vocab}))}
    for name, p in int4.items():
        arrays[f"{name}|blob"], arrays[f"{name}|scales"] = p.blob, p.scales
        if p.zero_points is not None:  # symmetric int4 has none (None would be a pickled object array)
            arrays[f"{name}|zero_points"] = p.zero_points
        arrays[f"{name}|shape"] = np.array([p.N, p.K, p.block, p.bits])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / (path.name + ".partial.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def _load(path: Path):
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["meta"]))
        int4 = {}
        for key in f.files:
            if key.endswith("|shape"):
                name = key[:-6]
                n, k, block, bits = (int(v) for v in f[key])
                zero_points = f[f"{name}|zero_points"] if f"{name}|zero_points" in f.files else None
                int4[name] = PackedInt4(n, k, block, f[f"{name}|blob"], f[f"{name}|scales"], zero_points, bits)
    return int4, meta["kl"], meta["measured"], meta["kl_vocab"]


def _covers(cached, groups: dict) -> bool:
    """Whether a loaded calibration has a KL for every group and an int4 form for every weight planned."""
    int4, kl = cached[0], cached[1]
    return set(groups) <= set(kl) and all(n in int4 for names in groups.values() for n in names)


def _int4(w: np.ndarray, x: np.ndarray, hessians: dict, point: str, block: int, symmetric: bool = False):
    """(PackedInt4, method): GPTQ with the Hessian of x (shared per input point) when x has at least as
    many rows as w has inputs, else round-to-nearest (min/max, or symmetric: the largest magnitude)."""
    if len(x) < w.shape[1]:
        return quantize(w, block, symmetric), "rtn"
    if point not in hessians:
        hessians[point] = hessian(x)
    return gptq_int4(w, hessians[point], block, symmetric=symmetric), "gptq"


def _layer(model, i: int, h: np.ndarray) -> np.ndarray:
    T = len(h)
    return model._layer(i, h, np.arange(T), np.where(causal_mask(0, T), 0.0, -np.inf).astype(np.float32),
                        _cache(i), True)


def _cache(i: int) -> KVCache:
    """An empty cache for running layer i alone (the reference indexes the cache by layer)."""
    return KVCache([None] * i, [None] * i)


def _kl(ref_logits: np.ndarray, logits: np.ndarray) -> float:
    """Mean over rows of KL(softmax(ref) || softmax(logits)) on the same vocabulary subset."""
    def log_softmax(z):
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    lp, lq = log_softmax(ref_logits.astype(np.float64)), log_softmax(logits.astype(np.float64))
    return float(np.mean(np.sum(np.exp(lp) * (lp - lq), axis=-1)))


def _shape(source, name: str) -> tuple[int, int]:
    raw = source.raw(name) if hasattr(source, "raw") else None
    return tuple(raw.shape) if raw is not None else tuple(source.tensor(name).shape)


EXACT_INT4 = ("Q4_0", "Q4_1", "Q4_K")  # GGUF levels MatMulNBits holds exactly at about int4's bytes


def _requantizable(source, name: str) -> bool:
    """Everything but the 4-bit GGUF formats: their levels go over exactly (Q4_0 in fewer bytes than
    asymmetric int4, Q4_1 / Q4_K with an int8 offset term in 1.03x), and requantizing them only adds error
    (qwen2.5-coder-0.5b's 12 Q4_K ffn_down kept: perplexity 9.226 -> 9.162 / 10.522 -> 10.424 for +1.1 MB)."""
    raw = source.raw(name) if hasattr(source, "raw") else None
    return raw is None or not is_block_format(raw.qtype) or raw.qtype.name not in EXACT_INT4


def group_of(layer: int, point: str) -> str:
    """The planner's unit: one layer's requantizable weights. A group per projection input (q/k/v, o,
    gate/up, down) was tried: its plans measured worse on the validation texts at the same bytes (qwen 0.5b
    9.110 / 10.461 vs 9.064 / 10.321; 1.5b 5.031 / 5.390 vs 4.973 / 5.354): KL on 64 tokens per small
    group is too noisy to rank 97 groups by."""
    return f"layer {layer}"


def _record_high(records: dict, linear, name: str, group: str) -> int:
    packed, offset = linear.pack(name, record=False)
    records[name] = {"group": group, "choice": "high",
                     "bytes": packed_bytes(packed, offset, fold=linear.folds(packed))}
    return records[name]["bytes"]
