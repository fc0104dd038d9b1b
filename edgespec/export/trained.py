"""Trained drafters (PPD prompt tokens) stored beside an export, bound to the export they were trained for.

A drafter file `<kind>.npz` holds the trained rows and a JSON record: kind, the export hash it was
trained for, training data hash, steps, minutes and acceptance per depth. The export's manifest lists
the same record under `drafters`. Loading refuses a drafter trained for another export (naming both
hashes): prompt rows are tuned to one set of weights and quantization.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFormatError
from .manifest import file_entry, read_manifest, update_drafters


def export_hash(manifest: dict[str, Any]) -> str:
    """16 hex digits naming an ONNX export's graph and weights (from its manifest's file hashes)."""
    files = manifest.get("files", {})
    graph = manifest.get("graph", {}).get("file", "model.onnx")
    parts = [f"{name}:{files[name]['sha256']}" for name in sorted(files) if name.startswith(graph)]
    if not parts:
        raise ModelFormatError("this export's manifest lists no graph files: it cannot carry a trained drafter")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def save_drafter(path: Path, rows: np.ndarray, record: dict[str, Any]) -> None:
    """Write rows + record to `path` (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}.npz")
    np.savez(tmp, rows=np.asarray(rows, np.float32), record=np.array(json.dumps(record)))
    tmp.replace(path)


def register_in_export(export_dir: Path, path: Path, record: dict[str, Any]) -> None:
    """List the drafter file (with its sha256) in the export's manifest, replacing one of the same kind."""
    update_drafters(export_dir, {**record, "file": Path(path).name, **file_entry(Path(path))}, same=("kind",))


def load_drafter(export_dir: Path, kind: str, path: str | Path | None = None) -> tuple[np.ndarray, dict]:
    """(rows, record) of the `kind` drafter of this export, or of the file `path`; refused when missing,
    corrupt or trained for another export."""
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir, verify=False)
    if path is None:
        entry = next((d for d in manifest.get("drafters", []) if d.get("kind") == kind and "file" in d), None)
        if entry is None:
            raise ModelFormatError(f"export '{export_dir}' has no trained {kind} drafter; train one with "
                                   f"`edgespec train {kind} {export_dir}`")
        path = export_dir / entry["file"]
        if not path.is_file() or file_entry(path)["sha256"] != entry["sha256"]:
            raise ModelFormatError(f"the {kind} drafter file '{path}' is missing or does not match the manifest's "
                                   f"sha256 {entry['sha256'][:16]}...; train it again")
    try:
        with np.load(path) as data:
            rows, record = data["rows"], json.loads(str(data["record"]))
    except (OSError, KeyError, ValueError) as exc:
        raise ModelFormatError(f"'{path}' is not an edgespec drafter file ({exc})") from None
    if record.get("kind") != kind:
        raise ModelFormatError(f"'{path}' holds a {record.get('kind')} drafter, not {kind}")
    here = export_hash(manifest)
    if record.get("export_hash") != here:
        raise ModelFormatError(f"the {kind} drafter '{path}' was trained for export {record.get('export_hash')}, "
                               f"but this export is {here}; train it for this export")
    if rows.ndim != 2 or rows.shape[1] != manifest["config"]["hidden_size"]:
        raise ModelFormatError(f"'{path}' has rows of shape {rows.shape}; this model needs [k, "
                               f"{manifest['config']['hidden_size']}]")
    return rows, record
