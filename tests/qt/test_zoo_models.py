"""Every model of the zoo draws, expands and retraces in the window (new models included)."""

import pytest

from explorer.core.model.zoo import model_names
from explorer.core.text import fmt_shape


@pytest.mark.parametrize("name", model_names())
def test_model_draws_with_engine_shapes(window, qtbot, name):
    from explorer.core.shapes.trace import trace_shapes
    from explorer.core.model.zoo import get_spec

    if name != window.state.model:
        with qtbot.waitSignal(window.graph_ready, timeout=180_000):
            window.models.set_model(name)
    window.graph_page.expand_all()
    graph = window.state.graph
    size = get_spec(name).native_size
    trace = trace_shapes(graph, size)
    for node in graph.nodes():
        key = f"{node.name}/join" if node.name in window.state.expanded else node.name
        assert window.view.boxes[key].box.lines[-1] == fmt_shape(trace.nodes[node.name].output_shape)
        if node.name in window.state.expanded:
            assert len(window.view.diagram.branch_boxes(node.name)) == len(node.branches)
    window.graph_page.collapse_all()
    qtbot.waitUntil(lambda: window.state.loaded is not None and window.state.loaded.name == name, timeout=120_000)
    spec = get_spec(name)  # published weights: torchvision's, or timm's on the Hugging Face Hub (v4, IR-v2)
    assert window.weights_bar.retry.isVisible() == (spec.weights is not None or spec.hub_weights is not None)
    assert window.weights_bar.retry.isVisible() == (name not in ("googlenet_paper", "bn_inception",
                                                                  "inception_resnet_v1", "shapes_inception"))


@pytest.mark.parametrize("name", ["bn_inception", "googlenet_paper"])
def test_family_model_classifies_a_dropped_image_and_shows_its_branches(make_window, qtbot, name):
    """No published weights: random weights (badge), yet the window classifies with ImageNet's names
    and the activation view shows that forward's branches."""
    import torchvision.models

    from explorer.core.model.samples import sample_images

    w = make_window(name)
    docks = w.images
    qtbot.waitUntil(lambda: docks.network_key is not None, timeout=120_000)
    assert w.weights_bar.isVisible() and w.state.loaded.weights.is_random
    panel = docks.classify
    with qtbot.waitSignal(panel.image_shown, timeout=120_000) as shown:
        panel.classify_paths([sample_images()[0].path])
    result = shown.args[0].result
    assert result.ok and len(result.top) == 5
    assert {p.label for p in result.top} <= set(torchvision.models._meta._IMAGENET_CATEGORIES)
    assert panel.message.text() == ""
    qtbot.waitUntil(lambda: docks.activations.capture is shown.args[0].capture, timeout=10_000)
    blocks = [n.name for n in w.state.graph.nodes() if n.is_block]
    assert set(docks.activations.capture.branches) == set(blocks)
