"""Every model of the zoo draws, expands and retraces in the window (new models included)."""

import pytest

from explorer.core.zoo import model_names
from explorer.qt.layout import fmt_shape


@pytest.mark.parametrize("name", model_names())
def test_model_draws_with_engine_shapes(window, qtbot, name):
    from explorer.core.shapes import trace_shapes
    from explorer.core.zoo import get_spec

    if name != window.model_name:
        with qtbot.waitSignal(window.graph_ready, timeout=180_000):
            window.set_model(name)
    window.expand_all()
    graph = window.graph
    size = get_spec(name).native_size
    trace = trace_shapes(graph, size)
    for node in graph.nodes():
        key = f"{node.name}/join" if node.name in window.expanded else node.name
        assert window.view.boxes[key].box.lines[-1] == fmt_shape(trace.nodes[node.name].output_shape)
        if node.name in window.expanded:
            assert len(window.view.diagram.branch_boxes(node.name)) == len(node.branches)
    window.collapse_all()
    qtbot.waitUntil(lambda: window.loaded is not None and window.loaded.name == name, timeout=120_000)
    assert window.weights_bar.retry.isVisible() == (get_spec(name).weights is not None)
