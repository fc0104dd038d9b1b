"""The graph contract (edgespec/models/contract.py) is what the builder really produces, and
loading refuses an export of another contract version, naming both."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import helper

import edgespec
from edgespec.export.manifest import MANIFEST, read_manifest
from edgespec.models.contract import GRAPH_CONTRACT_VERSION, graph_inputs, graph_outputs
from edgespec.models.llama.graph import build_graph

from .tiny import TINY_CONFIGS, random_weights


def _described(values) -> list[tuple]:
    out = []
    for v in values:
        t = v.type.tensor_type
        dims = tuple(d.dim_param or d.dim_value for d in t.shape.dim)
        out.append((v.name, np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).name, dims))
    return out


def _stated(specs) -> list[tuple]:
    return [(s.name, s.dtype, tuple(s.shape)) for s in specs]


@pytest.mark.parametrize("layer_plans", [True, False])
@pytest.mark.parametrize("extra", [False, True])
@pytest.mark.parametrize("new_rows", [False, True])
def test_the_builder_produces_exactly_the_contract(layer_plans, extra, new_rows):
    config = TINY_CONFIGS["llama"]
    graph = build_graph(config, random_weights(config), 64, layer_plans=layer_plans, extra_embeds=extra,
                        new_rows=new_rows).graph
    assert _described(graph.input) == _stated(graph_inputs(config, layer_plans, extra))
    assert _described(graph.output) == _stated(graph_outputs(config, new_rows))
    # without the new-row outputs nothing computes them (onnxruntime runs every node, fetched or not)
    assert sum(n.op_type == "Slice" for n in graph.node) == (2 * config.num_layers if new_rows else 0)


@pytest.fixture(scope="module")
def default_export(smollm2_gguf):
    return edgespec.load("smollm2-135m").source


@pytest.mark.realmodel
@pytest.mark.parametrize("layer_plans", [False, True])
def test_the_default_export_matches_its_manifests_contract(smollm2_gguf, layer_plans):
    """onnx.load of the real cached export (the default, and its variant with layer plans): its inputs and
    outputs are the ones its manifest states."""
    export_dir = edgespec.load("smollm2-135m", layer_plans=layer_plans).source
    manifest = read_manifest(export_dir, verify=False)
    stated = manifest["graph_contract"]
    assert stated["version"] == GRAPH_CONTRACT_VERSION
    graph = onnx.load(str(export_dir / "model.onnx"), load_external_data=False).graph
    assert _described(graph.input) == [(s["name"], s["dtype"], tuple(s["shape"])) for s in stated["inputs"]]
    assert _described(graph.output) == [(s["name"], s["dtype"], tuple(s["shape"])) for s in stated["outputs"]]
    optional = ["layer_mask", "extra_embeds"] if layer_plans else ["extra_embeds"]
    assert [s["name"] for s in stated["inputs"] if s["optional"]] == optional
    assert ("skippable_layers" in stated) == layer_plans


@pytest.mark.realmodel
@pytest.mark.parametrize("version", [None, GRAPH_CONTRACT_VERSION + 1])
def test_an_export_of_another_contract_version_is_refused(default_export, tmp_path, version):
    source = default_export
    copy = tmp_path / "export"
    copy.mkdir()
    for file in source.iterdir():  # links: the manifest's sha256 checks still read the real files
        (copy / file.name).symlink_to(file)
    manifest = json.loads((source / MANIFEST).read_text())
    if version is None:
        del manifest["graph_contract"]
    else:
        manifest["graph_contract"]["version"] = version
    (copy / MANIFEST).unlink()
    (copy / MANIFEST).write_text(json.dumps(manifest))
    expected = "no graph contract" if version is None else f"graph contract version {version}"
    with pytest.raises(edgespec.errors.ModelFormatError,
                       match=f"{expected}.*runs graph contract version {GRAPH_CONTRACT_VERSION}"):
        edgespec.load(str(copy))
