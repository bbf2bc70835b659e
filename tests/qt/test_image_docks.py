"""The image docks of a window: the classify panel's forward is also the activation view's capture.

Forwards are counted where every way of running a network passes: its first convolution (the only
one that takes the three colour channels), patched on the class, so that a forward of any copy of
any network on any thread is seen — the classifier's, ImageDocks' CPU capture model, a test's.
"""

import threading

import numpy as np
import pytest
import torch
from PIL import Image
from PySide6.QtCore import QMimeData, QUrl

from tests.netutil import synthetic_batch

TIMEOUT_MS = 180_000


@pytest.fixture
def picture(tmp_path):
    img = synthetic_batch(2, 240, torch.Generator().manual_seed(8))[1]
    path = tmp_path / "smooth.jpg"
    Image.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(path, quality=92)
    return path


@pytest.fixture
def forwards(monkeypatch):
    """(thread name, batch size) of every network forward from now on."""
    calls = []
    real = torch.nn.Conv2d.forward

    def counting(self, x):
        if self.in_channels == 3:
            calls.append((threading.current_thread().name, int(x.shape[0])))
        return real(self, x)

    monkeypatch.setattr(torch.nn.Conv2d, "forward", counting)
    return calls


def ready(window) -> bool:
    docks = window.images
    return (docks is not None and docks.network_key is not None and docks.classify.classifier is not None
            and not docks.classify.busy)


def url_mime(path) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    return mime


def test_a_dropped_image_is_classified_and_captured_by_one_forward(make_window, qtbot, monkeypatch, picture,
                                                                   forwards):
    w = make_window()
    qtbot.waitUntil(lambda: ready(w), timeout=TIMEOUT_MS)
    docks = w.images
    forwards.clear()
    started = []
    real_start = docks.runner.start

    def spy(slot, *args, **kwargs):
        started.append(slot)
        return real_start(slot, *args, **kwargs)

    monkeypatch.setattr(docks.runner, "start", spy)
    w.view.select("inception4c")

    with qtbot.waitSignal(docks.classify.image_shown, timeout=TIMEOUT_MS) as sig:
        assert docks.classify.handle_drop(url_mime(picture))
    shown = sig.args[0]
    qtbot.waitUntil(lambda: docks.activations.capture is shown.capture, timeout=5000)
    qtbot.wait(200)  # anything queued after the image (a job ImageDocks would start) has had its turn
    assert len(forwards) == 1 and forwards[0][1] == 1, forwards  # one forward, of that image
    assert forwards[0][0] != threading.main_thread().name
    assert started == []  # ImageDocks runs no capture of its own
    view = docks.activations
    assert view.state.block == "inception4c" and w.graph_page.selected_block() == "inception4c"
    assert shown.result.top[0].index == int(shown.capture.logits.argmax(1)[0])
    view.select_channel(1, 17)
    np.testing.assert_array_equal(view.detail_map(), shown.capture.branch("inception4c", 1)[0, 17].numpy())
    # The gradient panels got that forward's input, on the CPU, as a tensor of their own.
    assert torch.equal(docks.attribution.x, shown.x.contiguous()) and docks.attribution.x is not shown.x
    assert docks.shares.x is docks.attribution.x
    np.testing.assert_array_equal(docks.attribution.image_rgb, shown.rgb)

    # Another block comes from the same capture: no forward, no job.
    w.view.select("inception5a")
    assert view.state.block == "inception5a"
    assert len(view.grid.titles) == 4
    view.select_channel(2, 5)
    np.testing.assert_array_equal(view.detail_map(), shown.capture.branch("inception5a", 2)[0, 5].numpy())
    view.next_block()
    assert view.state.block == "inception5b"
    qtbot.wait(100)
    assert len(forwards) == 1 and "capture" not in started


def test_a_late_image_of_the_previous_model_is_dropped(make_window, qtbot, picture):
    w = make_window()
    qtbot.waitUntil(lambda: ready(w), timeout=TIMEOUT_MS)
    docks = w.images
    with qtbot.waitSignal(docks.classify.image_shown, timeout=TIMEOUT_MS) as old:
        docks.classify.classify_paths([picture])
    old_shown = old.args[0]
    assert old_shown.capture.graph_name == "googlenet"
    # The switch classifies the image on screen again, with the new model.
    with qtbot.waitSignal(docks.classify.image_shown, timeout=TIMEOUT_MS) as new:
        w.models.set_model("inception_v3")
    new_shown = new.args[0]
    assert new_shown.model == "inception_v3" and new_shown.capture.graph_name == "inception_v3"
    qtbot.waitUntil(lambda: ready(w) and docks.network_key.model == "inception_v3", timeout=TIMEOUT_MS)
    assert docks.activations.capture is new_shown.capture
    assert docks.attribution.x.shape[-1] == 299

    docks.classify.image_shown.emit(old_shown)  # the old model's image, arriving late
    assert w.state.shown_image is new_shown
    assert docks.activations.capture is new_shown.capture and docks.activations.graph.name == "inception_v3"
    assert docks.attribution.x.shape[-1] == 299 and torch.equal(docks.attribution.x, new_shown.x.contiguous())
    assert docks.activations.state.block in {b.name for b in docks.graph.blocks()}


def test_the_curves_run_on_the_classifiers_network_and_go_with_the_model(make_window, qtbot, picture):
    """In the window: the faithfulness curves use the classifier's own (folded) network, and the methods
    table, kept in the window's state, empties when the model changes."""
    w = make_window()
    qtbot.waitUntil(lambda: ready(w), timeout=TIMEOUT_MS)
    docks = w.images
    with qtbot.waitSignal(docks.classify.image_shown, timeout=TIMEOUT_MS):
        docks.classify.classify_paths([picture])
    panel = docks.attribution
    qtbot.waitUntil(lambda: panel.x is not None, timeout=TIMEOUT_MS)
    panel.set_method("saliency")
    with qtbot.waitSignal(panel.attribution_finished, timeout=TIMEOUT_MS):
        panel.run()
    clf = docks.classify.classifier
    asked = []
    real = clf.capture_model
    clf.capture_model = lambda device=None: asked.append(device) or real(device)
    panel.curve_steps.setValue(2)
    with qtbot.waitSignal(panel.faithfulness_finished, timeout=TIMEOUT_MS):
        panel.run_faithfulness()
    assert asked == ["cpu"] and real("cpu") is not w.session.captures.on("cpu")
    assert len(w.state.attributions) == 1 and panel.table.rowCount() == 1
    w.models.set_model("inception_v3")
    assert w.state.attributions == () and panel.table.rowCount() == 0
