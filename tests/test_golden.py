"""Replay the golden traces (tests/golden/) through the onnxruntime backend of the default export
and of the `--target web` export (fp32 activations: what the browser computes).

The same JSON is the oracle for every other runtime of the export (the JS engine, the static NPU
graphs, the browser page for the web one); its format and tolerance rule are in tests/golden/README.md.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

import edgespec
from edgespec.models.contract import GRAPH_CONTRACT_VERSION

from .golden.make import TARGET_GOLDEN, export_identity, machine_kind, target_export
from .golden.trace import FORMAT, FORMAT_VERSION, trace

pytestmark = pytest.mark.realmodel


@pytest.fixture(scope="module", params=sorted(TARGET_GOLDEN))
def target(request):
    return request.param


@pytest.fixture(scope="module")
def golden(target):
    data = json.loads(TARGET_GOLDEN[target].read_text(encoding="utf-8"))
    assert data["format"] == FORMAT and data["format_version"] == FORMAT_VERSION
    return data


@pytest.fixture(scope="module")
def model(smollm2_gguf, golden, target):
    directory = target_export(target)
    ours = export_identity(directory, target)
    theirs = golden["export"]
    name = "model.onnx"  # the graph: the same on every machine
    if ours["files"][name]["sha256"] != theirs["files"][name]["sha256"]:
        pytest.fail(f"the {target} export's {name} has sha256 {ours['files'][name]['sha256']} but the golden "
                    f"traces were made from {theirs['files'][name]['sha256']} ({TARGET_GOLDEN[target].name}): if "
                    f"the graph change is intended, regenerate them with `{golden['regenerate']}` and commit it")
    if ours["files"]["model.onnx.data"]["sha256"] != theirs["files"]["model.onnx.data"]["sha256"]:
        # GPTQ's float arithmetic (BLAS and numpy kernels differ per CPU) can round a few int4 levels the
        # other way on another machine: same graph, weights a hair apart; the logit tolerance decides
        logging.getLogger(__name__).warning("the %s export's weights differ in bytes from the golden's (made on %s); "
                                            "comparing under the tolerance", target, golden["produced_by"]["cpu"])
    assert ours["graph_contract_version"] == theirs["graph_contract_version"] == GRAPH_CONTRACT_VERSION
    return edgespec.load(str(directory), backend="ort")


def compare(case: dict, tokens: list[int], rows: list[np.ndarray], tolerance: float) -> int:
    """The golden rule (see the JSON's `tolerance`): returns how many steps were compared."""
    for i, (step, expected) in enumerate(zip(case["steps"], case["tokens"])):
        got = rows[i][step["top_ids"]]
        worst = float(np.abs(got - np.asarray(step["top_logits"])).max())
        assert worst <= tolerance, f"{case['name']} step {i}: top-5 logits differ by {worst:.4f} > {tolerance}"
        if tokens[i] != expected:
            gap = step["top_logits"][0] - step["top_logits"][1]
            assert gap < 2 * tolerance, f"{case['name']} step {i}: token {tokens[i]} != golden {expected} " \
                                        f"(golden top-1/top-2 gap {gap:.4f} is no near-tie)"
            return i + 1
    return len(case["steps"])


@pytest.fixture(scope="module")
def same_kind_of_machine(golden, target) -> bool:
    """The golden's weights and kind of CPU (its int8 kernels): then every token must replay, near-ties too."""
    ours = export_identity(target_export(target), target)["files"]["model.onnx.data"]["sha256"]
    return ours == golden["export"]["files"]["model.onnx.data"]["sha256"] and \
        all(golden["produced_by"].get(k) == v for k, v in machine_kind().items())


def test_golden_traces_replay_on_onnxruntime(model, golden, same_kind_of_machine):
    tolerance = golden["tolerance"]["logit_abs"]
    for case in golden["cases"]:
        ids = model.chat_prompt(case["messages"]) if case["chat_template"] else model.tokenizer.encode(case["text"])
        assert ids == case["prompt_ids"], f"{case['name']}: the tokenizer or chat template changed"
        tokens, rows = trace(model.backend, ids, golden["protocol"]["tokens"])
        compared = compare(case, tokens, rows, tolerance)
        if same_kind_of_machine:
            assert compared == len(case["tokens"]), f"{case['name']}: near-tie flip on the golden's kind of machine"


def test_the_engine_decodes_the_golden_tokens(model, golden):
    """Model.generate (the decode loop users run) gives the traced tokens on this machine: the trace protocol
    is the engine's."""
    for case in golden["cases"]:
        traced, _ = trace(model.backend, case["prompt_ids"], len(case["tokens"]))
        events = model.generate(case["prompt_ids"], max_tokens=len(case["tokens"]), stop_on_eos=False)
        assert [e.token for e in events if e.token >= 0] == traced, case["name"]

