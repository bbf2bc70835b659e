"""The weights bar offers the demo model while the weights are random (issue 24): a click opens
shapes_inception with its shipped, trained weights."""

from PySide6.QtCore import Qt

from tests.qt.conftest import GRAPH_TIMEOUT_MS

DEMO_TEXT = "Open the demo model (trained on shapes, works offline)"


def test_random_weights_offer_the_demo_model_and_a_click_opens_it_trained(make_window, qtbot):
    w = make_window()  # googlenet with random weights (weights="none", no downloads)
    bar = w.weights_bar
    assert w.state.loaded.weights.is_random and bar.isVisible()
    assert bar.demo.isVisible() and bar.demo.text() == DEMO_TEXT
    with qtbot.waitSignal(w.model_loaded, timeout=GRAPH_TIMEOUT_MS) as blocker:
        qtbot.mouseClick(bar.demo, Qt.MouseButton.LeftButton)
    assert blocker.args == ["shapes_inception"]
    assert w.state.model == "shapes_inception" and w.state.model_ref is None
    loaded = w.state.loaded
    # Its shipped weights, although the window was started with --weights none: not random.
    assert loaded.name == "shapes_inception" and not loaded.weights.is_random
    assert not bar.isVisible() and "random" not in w.weights_label.text()


def test_the_demo_model_is_not_offered_to_itself(make_window):
    w = make_window("shapes_inception")  # weights="none": the demo model itself with random weights
    bar = w.weights_bar
    assert w.state.loaded.weights.is_random and bar.isVisible()
    assert not bar.demo.isVisible() and not bar.demo_offered
    assert bar.open.isVisible()  # the usual buttons stay


def test_the_offer_hides_while_weights_load(make_window):
    w = make_window()
    bar = w.weights_bar
    assert bar.demo.isVisible()
    bar.show_loading("Loading weights…")
    assert not bar.demo.isVisible()
    bar.show_random("offline")
    assert bar.demo.isVisible()
