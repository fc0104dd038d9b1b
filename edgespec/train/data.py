"""Self-distillation data: the target's own greedy and sampled answers to shipped prompts.

The prompts (prompts.txt beside this file) were written for edgespec; the user may add text
files, whose pieces are continued as plain text. Answers are generated with the fast ONNX export
on onnxruntime (edgespec.load), not with torch. A data set is a list of token sequences with the
index where the model's own answer starts; its hash goes into the drafter's record.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import EdgespecError
from ..progress import Progress
from ..sampling import SamplingParams

log = logging.getLogger(__name__)
PROMPTS = Path(__file__).with_name("prompts.txt")
PIECE_CHARS = 600  # a user text file is continued from pieces of this many characters


@dataclass
class Sequence:
    ids: list[int]
    start: int  # ids[start:] is the model's own answer
    category: str
    greedy: bool


def shipped_prompts() -> list[tuple[str, str]]:
    out = []
    for line in PROMPTS.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            category, _, text = line.partition("\t")
            out.append((category, text))
    return out


def text_pieces(paths) -> list[str]:
    pieces = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise EdgespecError(f"training text '{path}' is not a file; expected UTF-8 text files")
        text = path.read_text(encoding="utf-8", errors="replace")
        pieces += [text[i:i + PIECE_CHARS] for i in range(0, len(text), PIECE_CHARS) if text[i:i + PIECE_CHARS].strip()]
    return pieces


def generate(model, max_tokens: int = 96, samples: int = 1, texts=(), seed: int = 0) -> list[Sequence]:
    """For every shipped prompt its greedy answer and `samples` sampled ones (temperature 0.8, top-p 0.95);
    for every piece of the user's texts its greedy continuation."""
    jobs = []
    for category, text in shipped_prompts():
        prompt = model.chat_prompt([{"role": "user", "content": text}])
        jobs.append((prompt, category, SamplingParams()))
        jobs += [(prompt, category, SamplingParams(temperature=0.8, top_p=0.95, seed=seed + i + 1000 * len(jobs)))
                 for i in range(samples)]
    jobs += [(model.tokenizer.encode(piece)[-256:], "text", SamplingParams()) for piece in text_pieces(texts)]
    model.set_spec("ngram")  # the same tokens as plain decoding (greedy) / the same distribution, sooner
    out = []
    with Progress(len(jobs), "generating training answers", unit="answers") as progress:
        for prompt, category, params in jobs:
            answer = [e.token for e in model.generate(prompt, max_tokens=max_tokens, sampling=params) if e.token >= 0]
            out.append(Sequence(list(prompt) + answer, len(prompt), category, params.greedy))
            progress.update(1)
    return out


def data_hash(sequences: list[Sequence]) -> str:
    digest = hashlib.sha256()
    for s in sequences:
        digest.update(np.asarray(s.ids, np.int64).tobytes() + f"|{s.start}|{s.category}|{s.greedy};".encode())
    return digest.hexdigest()[:16]


def save(path: Path, sequences: list[Sequence]) -> None:
    tmp = path.with_name(f".{path.name}.partial.npz")
    np.savez(tmp, ids=np.concatenate([np.asarray(s.ids, np.int64) for s in sequences]),
             lengths=np.array([len(s.ids) for s in sequences]), starts=np.array([s.start for s in sequences]),
             categories=np.array([s.category for s in sequences]), greedy=np.array([s.greedy for s in sequences]))
    tmp.replace(path)


def load(path: Path) -> list[Sequence]:
    with np.load(path) as data:
        ends = np.cumsum(data["lengths"])
        return [Sequence(data["ids"][end - n:end].tolist(), int(start), str(category), bool(greedy))
                for end, n, start, category, greedy in zip(ends, data["lengths"], data["starts"], data["categories"],
                                                           data["greedy"])]
