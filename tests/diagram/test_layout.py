"""The Qt-free diagram layout: nothing overlaps, the main path is one straight line, edges point down.

Runs without Qt, as the benchmarks do."""

import itertools
import sys
from pathlib import Path

import pytest

from explorer.diagram.layout import Style, build_diagram, build_diagram_from, layout_diagram


def measure(text, bold):
    return len(text) * (7.5 if bold else 7.0), 15.0


def overlaps(a, b):
    return a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.y + b.h and b.y < a.y + a.h


@pytest.fixture(scope="module")
def googlenet():
    from explorer.core.graph.blockgraph import build_block_graph
    from explorer.core.shapes.trace import trace_shapes
    from explorer.core.model.zoo import get_spec

    graph = build_block_graph(get_spec("googlenet"))
    return graph, trace_shapes(graph, (224, 224))


@pytest.mark.parametrize("expand", [False, True])
def test_googlenet_layout_is_clean(googlenet, expand):
    graph, trace = googlenet
    expanded = [n.name for n in graph.blocks()] if expand else []
    d = layout_diagram(build_diagram(graph, trace, expanded, measure), Style())
    boxes = list(d.boxes.values())
    for a, b in itertools.combinations(boxes, 2):
        assert not overlaps(a, b), (a.key, b.key)
    for e in d.edges:
        assert d.boxes[e.dst].y > d.boxes[e.src].bottom, (e.src, e.dst)
    main = [n.name for n in graph.nodes() if not n.training_only]
    centres = {round(d.boxes[d.entry[n]].cx, 3) for n in main}
    assert len(centres) == 1  # the inference path runs down one line
    aux = d.boxes["aux1"]
    assert aux.x > d.boxes[d.entry["inception4b"]].x  # auxiliary heads on the side
    for f in d.frames.values():  # every box of an expanded block lies inside its frame
        for b in boxes:
            if b.node == f.node:
                assert f.x <= b.x and b.x + b.w <= f.x + f.w and f.y <= b.y and b.bottom <= f.y + f.h


def test_synthetic_thousand_layer_layout_is_fast():
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    try:
        from bench_layout import synthetic_graph
    finally:
        sys.path.pop(0)
    import time

    nodes, preds, succs, trace, layers = synthetic_graph(110)
    assert layers >= 990
    t = time.perf_counter()
    d = build_diagram_from(nodes, preds, succs, trace, [n.name for n in nodes if n.branches], measure)
    layout_diagram(d)
    assert time.perf_counter() - t < 1.0  # target 0.3 s; slack for a loaded test machine
    assert len(d.boxes) > 1000



def test_expanded_googlenet_block_shows_every_branch_label_once(googlenet):
    """The drawing shows the engine's branch labels: branch 3 names the paper's #5×5 column and the 3×3
    kernel torchvision really uses, so no two branch captions of a block read the same."""
    graph, trace = googlenet
    d = build_diagram(graph, trace, ["inception3a"], measure)
    captions = [" ".join(b.lines[:b.bold_lines]) for b in d.boxes.values()
                if b.role == "branch" and b.node == "inception3a"]
    assert captions == [b.label for b in graph.node("inception3a").branches]
    assert captions[2] == "#5×5 reduce → #5×5 (3×3 kernel)"
    assert len(set(captions)) == 4
