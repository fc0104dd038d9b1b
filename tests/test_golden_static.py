"""The golden traces of the default (dynamic) export replayed on smollm2's static (NPU) graphs, CPU EP.

The static export takes the same weights (the GGUF's own levels, the same routes) but other kernels:
MatMulNBits with fp16 activations (the form QNN HTP runs) where the dynamic export rounds activations
to int8 (accuracy level 4). So the golden rule (tests/golden/README.md) is applied with the tolerance
STATIC_LOGIT_TOL instead of 0.05 — measured: the two exports' logits differ by up to ~1.1 — and the
near-tie band is 2 x that, so a case usually ends early: SmolLM2 has many near-ties, and the static
graphs pick the other token at some (the first divergence of the dynamic export's own greedy output
is at a near-tie too, tests/test_static_cpu.py). The static backend runs the golden protocol through
its buckets (the prompt in 16-row passes, then the 1-row graph per token).
"""

from __future__ import annotations

import json

import pytest

import edgespec
from edgespec.export.manifest import read_manifest

from .golden.make import GOLDEN
from .golden.trace import trace
from .test_golden import compare

pytestmark = pytest.mark.realmodel
# measured (2026-12-05, lm_head rows 0-8191 at their Q8_0 levels in both exports): 0.09-0.82 at 121 of 123
# compared steps, 1.05 and 1.09 at two (fp16 against int8 activations). Re-measured 2026-12-06 after the dynamic
# export's offset terms were folded into its weights (its top-20 logits teacher-forced on these cases: mean
# |error| against the fp32 reference 0.286 -> 0.298, max 1.80 -> 2.27; the static graphs keep exact fp32 offset
# terms): 0.12-0.91 at the 46 steps before the cases diverge, 1.34 at chat-capital's step 1, the near-tie (golden
# gap 0.145) where the static graph picks the other token. Re-measured 2026-12-06 (stop 37) after the dynamic
# export's embedding became the GGUF's own int8 levels (the static graphs keep fp16): 0.09-0.96 at the 49 steps
# before the cases diverge, 1.22 at chat-system-haiku's step 5 (golden gap 0.258, where the other token is picked)
STATIC_LOGIT_TOL = 1.5


def test_golden_traces_replay_on_the_static_graphs(smollm2_static):
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    manifest = read_manifest(smollm2_static)
    if manifest["source"].get("sha256") != golden["export"]["source"]["sha256"]:
        pytest.skip("the static export is not made from the golden traces' source weights")
    options = golden["export"]["options"]
    assert manifest["quantization"]["lm_head"] == options["lm_head"] and not options["requantize"]  # same weights
    model = edgespec.load(str(smollm2_static), backend="static")
    compared = {}
    for case in golden["cases"]:
        ids = model.chat_prompt(case["messages"]) if case["chat_template"] else model.tokenizer.encode(case["text"])
        assert ids == case["prompt_ids"], f"{case['name']}: the tokenizer or chat template changed"
        tokens, rows = trace(model.backend, ids, golden["protocol"]["tokens"])
        compared[case["name"]] = compare(case, tokens, rows, STATIC_LOGIT_TOL)
    # measured: {'chat-capital': 2, 'chat-system-haiku': 6, 'raw-code': 28, 'raw-prose': 17} of 32 steps each
    # (stop 35: 32, 26, 32, 9; before the lm_head segments: 1, 15, 7, 9), the cases that end early ending at a
    # golden near-tie (gaps 0.004-0.29) the other kernels flip
    print("golden steps compared on the static graphs:", compared)
    assert all(steps >= 1 for steps in compared.values()), compared
