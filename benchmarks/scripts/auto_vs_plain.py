"""--spec auto (the default) vs plain decoding on the bench suite, greedy, one process, the two Models taking turns
prompt by prompt (order alternating). Usage: python benchmarks/scripts/auto_vs_plain.py TOKENS EXPORT_DIR"""
import json
import sys
from collections import defaultdict
import edgespec
from edgespec.bench.runner import load_prompts
from edgespec.sampling import SamplingParams
TOKENS = int(sys.argv[1])
export = sys.argv[2]
plain = edgespec.load(export, backend="ort", spec="off", threads=0, context=4096)
auto = edgespec.load(export, backend="ort", spec="auto", threads=0, context=4096)
rows = load_prompts("suite")
out = defaultdict(lambda: {"off": [0, 0.0], "auto": [0, 0.0]})
for i, r in enumerate(rows):
    ids = plain.chat_prompt([{"role": "user", "content": r["turns"][0]}])
    order = (("off", plain), ("auto", auto)) if i % 2 == 0 else (("auto", auto), ("off", plain))
    for name, m in order:
        g = m.generate(ids, max_tokens=TOKENS, sampling=SamplingParams(), stop_on_eos=False)
        for _ in g:
            pass
        s = g.stats
        out[r["category"]][name][0] += s.generated_tokens
        out[r["category"]][name][1] += s.decode_seconds
        print(r["category"], name, s.generated_tokens, round(s.decode_tok_s, 2), round(s.spec.tokens_per_step, 2), flush=True)
res = {c: {"off_tok_s": v["off"][0] / v["off"][1], "auto_tok_s": v["auto"][0] / v["auto"][1]} for c, v in out.items()}
for c, v in res.items():
    v["ratio"] = v["auto_tok_s"] / v["off_tok_s"]
print(json.dumps(res, indent=1))
