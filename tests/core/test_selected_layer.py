"""A box inside an expanded block, as Details names it: in words, 1-based, with the layer's own numbers,
checked against the real module (its parameters, and its output by a forward hook)."""

from __future__ import annotations

import pytest
import torch

from explorer.core.shapes.layers import selected_layer
from explorer.core.shapes.trace import trace_shapes


def _real(graph, name: str, size: int):
    module = graph.model.get_submodule(name)
    out = {}
    handle = module.register_forward_hook(lambda m, i, o: out.update(shape=tuple(o.shape[1:])))
    with torch.no_grad():
        graph.model.eval()(torch.zeros(1, 3, size, size, device="meta"))  # built on the meta device
    handle.remove()
    return sum(p.numel() for p in module.parameters()), out["shape"]


def test_a_layer_of_googlenet_in_words_with_its_numbers(graph_of):
    # Old behaviour: Details said "selected: inception3a/b1/l1" (a 0-based branch index, a layer index).
    graph = graph_of("googlenet")
    sel = selected_layer(graph, trace_shapes(graph, (224, 224)), "inception3a/b1/l1")
    assert sel.title == "branch 2 of 4 (#3×3 reduce → #3×3), layer 2 of 2"
    rows = dict(sel.rows)
    params, shape = _real(graph, "inception3a.branch2.1.conv", 224)
    assert rows["layer"] == "3×3 conv, 128 (inception3a.branch2.1.conv)"
    assert rows["parameters"] == f"{params:,}" and rows["output"] == "×".join(map(str, shape)) == "128×28×28"
    assert rows["multiply-adds"] == f"86.7 M ({128 * 28 * 28 * 96 * 9:,})"  # 128×28×28 outputs × 96·3·3


def test_inception_v3s_split_paths_and_joins(graph_of):
    graph = graph_of("inception_v3")
    trace = trace_shapes(graph, (299, 299))
    sel = selected_layer(graph, trace, "Mixed_7b/b1/p1/l0")
    assert sel.title == "branch 2 of 4 (#1×1 reduce → (1×3 ‖ 3×1)), parallel path 2 of 2, layer 1 of 1"
    params, shape = _real(graph, "Mixed_7b.branch3x3_2b.conv", 299)
    assert dict(sel.rows)["parameters"] == f"{params:,}" and dict(sel.rows)["output"] == "×".join(map(str, shape))
    assert selected_layer(graph, trace, "Mixed_7b/b1/join").title.endswith("the concatenation of its parallel paths")
    assert selected_layer(graph, trace, "Mixed_7b/join").title == "the concatenation of its 4 branches"
    assert selected_layer(graph, trace, "Mixed_7b/b0").title == "branch 1 of 4 (#1×1)"


@pytest.mark.parametrize("key", ["Mixed_7b", "Mixed_7b/b4", "Mixed_7b/b1/x0", "Mixed_7b/b0/l0/l0", "nope/b0"])
def test_keys_that_name_no_layer(graph_of, key):
    assert selected_layer(graph_of("inception_v3"), None, key) is None
