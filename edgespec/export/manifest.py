"""`edgespec.json`: what an export contains, where it came from, and how well it matched.

Loading an export reads the manifest first and checks its schema version and
every file's size and sha256 before anything runs (a file's sha256 is computed once
per size and mtime, see hub.hashed).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .. import hub
from ..config import ModelConfig
from ..errors import ModelFormatError

MANIFEST = "edgespec.json"
SCHEMA_VERSION = 1


def file_entry(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    files = {p.name: file_entry(p) for p in sorted(directory.iterdir()) if p.is_file() and p.name != MANIFEST}
    manifest = {"schema_version": SCHEMA_VERSION, **manifest, "files": files}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")


def read_manifest(directory: str | Path, verify: bool = True) -> dict[str, Any]:
    """The manifest of an export directory; with verify, every listed file's size and sha256 are checked."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise ModelFormatError(f"'{directory}' is not an edgespec export: it has no {MANIFEST}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ModelFormatError(f"'{path}' is not valid JSON ({exc})") from None
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ModelFormatError(f"'{path}' has schema version {version}; this edgespec reads version "
                               f"{SCHEMA_VERSION} — export the model again")
    if verify:
        for name, expected in manifest.get("files", {}).items():
            file = directory / name
            if not file.is_file():
                raise ModelFormatError(f"export '{directory}' is missing {name}, which its manifest lists")
            # hashed once per size and mtime (hub.hashed): a cached export loads without re-reading its weights
            if file.stat().st_size != expected["size"] or hub.hashed(file) != expected["sha256"]:
                raise ModelFormatError(f"export '{directory}': {name} does not match its manifest (sha256 "
                                       f"{expected['sha256'][:16]}...); the export is corrupt — export it again")
    return manifest


def manifest_config(manifest: dict[str, Any]) -> ModelConfig:
    return ModelConfig.from_dict(manifest["config"])


def update_drafters(directory: str | Path, entry: dict[str, Any], same=("kind", "machine", "threads")) -> None:
    """Record a drafter's calibration in an export's manifest (replacing one for the same kind and
    machine). Written to a temp file and renamed; the listed files and their hashes are untouched."""
    directory = Path(directory)
    manifest = read_manifest(directory, verify=False)
    drafters = [d for d in manifest.get("drafters", []) if any(d.get(k) != entry.get(k) for k in same)]
    manifest["drafters"] = drafters + [entry]
    tmp = directory / (MANIFEST + ".partial")
    tmp.write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(directory / MANIFEST)
