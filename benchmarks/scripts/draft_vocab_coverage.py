"""How many of the target's greedy tokens a draft lm_head over only the first N vocabulary rows could propose
(issue 18's "draft lm_head over the most frequent tokens": BPE ids run in merge order, most frequent first).

    python benchmarks/scripts/draft_vocab_coverage.py EXPORT_DIR OUT.json

Greedy, 128 new tokens per suite prompt (chat template), stopping at EOS; per category the share of generated
tokens whose id is below each cut.
"""
import json
import sys

import numpy as np

import edgespec
from edgespec.bench.runner import load_prompts
from edgespec.sampling import SamplingParams

CUTS = (2048, 4096, 8192, 16384, 32768)

model = edgespec.load(sys.argv[1], backend="ort", threads=1)
by_category: dict[str, list[int]] = {}
for row in load_prompts("suite"):
    ids = model.chat_prompt([{"role": "user", "content": row["turns"][0]}])
    generated = [e.token for e in model.generate(ids, max_tokens=128, sampling=SamplingParams()) if e.token >= 0]
    by_category.setdefault(row["category"], []).extend(generated)
by_category["all"] = sum(by_category.values(), [])
report = {}
for category, tokens in by_category.items():
    ids = np.asarray(tokens)
    report[category] = {"tokens": len(ids), **{f"below_{c}": round(float(np.mean(ids < c)), 3) for c in CUTS}}
    print(category, report[category])
json.dump({"export": sys.argv[1], "vocab_size": model.config.vocab_size, "coverage": report}, open(sys.argv[2], "w"),
          indent=1)
