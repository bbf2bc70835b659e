"""Shipped graph previews are exactly what the engine builds now, and load without torch."""

import subprocess
import sys
from dataclasses import fields, replace

import pytest

from explorer.core.graph.blockgraph import BlockNode
from explorer.core.shapes.preview import load_preview, preview_from_json, preview_json
from explorer.core.shapes.trace import trace_shapes
from explorer.core.model.zoo import model_names

_VOLATILE = {f.name: f.default for f in fields(BlockNode) if f.name in ("steps", "output_step", "join_step",
                                                                        "branch_steps")}


@pytest.mark.parametrize("name", model_names())
def test_shipped_preview_matches_the_live_graph(graph_of, name):
    shipped = load_preview(name)
    assert shipped is not None, f"run `python -m explorer.core.shapes.preview` to write resources/graphs/{name}.json"
    preview, trace = shipped
    graph = graph_of(name)
    assert [replace(n, **_VOLATILE) for n in graph.nodes()] == preview.nodes()
    assert set(graph.graph.edges) == set(preview.graph.edges)
    assert trace == trace_shapes(graph, graph.native_size)
    assert (preview.total_params, preview.total_params_inference) == (graph.total_params,
                                                                      graph.total_params_inference)


def test_round_trip(graph_of):
    graph = graph_of("inception_v3")
    trace = trace_shapes(graph, (320, 256), batch=2)
    preview, back = preview_from_json(preview_json(graph, trace))
    assert back == trace and preview.node("Mixed_7b").branches == graph.node("Mixed_7b").branches


def test_loading_a_preview_imports_no_torch():
    code = ("import sys; from explorer.core.shapes.preview import load_preview; g, t = load_preview('googlenet');"
            "assert len(g.blocks()) == 9 and t.nodes['fc'].output_shape == (1000,); assert 'torch' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
