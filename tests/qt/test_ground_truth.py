"""Ground truth in the Attributions tab (issue 24): a map of a drawn sample is measured against the shape's mask,
and any map against a box a person drags on it (Esc or Clear box forgets the box): the pointing game and the share
of positive attribution inside the object, in the line under the status, beside the curves and in the methods
table. Every number is checked against an independent computation on the map: the argmax of its positive part
on the mask, and its positive sum inside over its positive sum."""

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest

from explorer.core.demo.drawing import draw_images
from explorer.core.demo.samples import SAMPLE_SEED
from explorer.core.demo.task import SHAPE_CLASSES
from explorer.core.graph.capture import CaptureModel
from explorer.core.model.graphs import zoo_block_graph
from explorer.core.model.loading import load_model
from explorer.core.model.zoo import get_spec
from explorer.core.session.state import ExplorerState, ImageInput
from explorer.core.text import fmt_fraction
from explorer.qt.attribution.attribution_evidence import COL_INSIDE, COL_POINTING
from explorer.qt.attribution.attribution_panel import AttributionPanel
from explorer.qt.attribution.ground_truth import HINT

RUN_MS = 60_000
STAR = SHAPE_CLASSES.index("star")


def by_hand(heatmap, mask):
    """(pointing, inside share) without the engine: where the positive part peaks, and its share on the mask."""
    pos = np.where(heatmap > 0, heatmap, 0.0).astype(np.float64)
    peak = np.unravel_index(np.argmax(pos), pos.shape)
    return bool(mask[peak]), float(pos[mask].sum() / pos.sum())


@pytest.fixture(scope="module")
def demo():
    graph = zoo_block_graph("shapes_inception")
    loaded = load_model("shapes_inception")
    assert not loaded.weights.is_random
    return graph, CaptureModel(loaded.module, graph).eval(), list(loaded.categories)


@pytest.fixture(scope="module")
def star():
    drawn = draw_images(len(SHAPE_CLASSES), SAMPLE_SEED)[STAR]  # the generator's own star and mask
    assert drawn.class_name == "star"
    return drawn


@pytest.fixture
def state():
    return ExplorerState()


@pytest.fixture
def panel(qtbot, demo, star, state, job_runner):
    graph, cm, categories = demo
    p = AttributionPanel(runner=job_runner.lanes("images"), explorer_state=state)
    qtbot.addWidget(p)
    p.resize(1100, 600)
    p.show()
    p.set_model(cm, graph, categories)
    pil = Image.fromarray(star.image)
    state.image = ImageInput(pil, "<drawn star>", mask=star.mask)  # the image on screen, as a drawn sample gives it
    x = get_spec("shapes_inception").transforms()(pil)[None]
    p.set_image(x, star.image, top1=STAR)
    yield p
    p.shutdown()


def grad_cam(qtbot, panel, graph):
    panel.set_method("grad_cam")
    panel.set_gradcam_layer(graph.blocks()[-1].name, None)
    with qtbot.waitSignal(panel.attribution_finished, timeout=RUN_MS) as sig:
        panel.run_button.click()
    return sig.args[0]


def cells(panel, row=0):
    return panel.table.item(row, COL_POINTING).text(), panel.table.item(row, COL_INSIDE).text()


def test_a_drawn_samples_map_is_measured_against_its_shape(qtbot, panel, demo, star):
    result = grad_cam(qtbot, panel, demo[0])
    assert result.heatmap.shape == star.mask.shape
    pointing, share = by_hand(result.heatmap, star.mask)
    line = panel.truth.line.text()
    assert "drawn star" in line and fmt_fraction(share) in line
    assert ("✓ the map's maximum lies on the object" in line) == pointing and ("✗" in line) == (not pointing)
    assert fmt_fraction(star.mask.mean()) in line  # the share a map spread evenly would have
    assert panel.evidence_tabs.isVisible()  # the table shows the localisation before any curves
    assert cells(panel) == ("✓" if pointing else "✗", fmt_fraction(share))
    # Beside the faithfulness line, once the curves are computed.
    panel.curve_steps.setValue(4)
    with qtbot.waitSignal(panel.faithfulness_finished, timeout=RUN_MS):
        panel.faithfulness_button.click()
    caption = panel.curve_caption.text()
    assert "deletion" in caption and f"pointing {'✓' if pointing else '✗'} · {fmt_fraction(share)} inside" in caption


def image_pos(panel, x, y) -> QPoint:
    """Where the image's pixel coordinate (x, y) is on the map view's viewport."""
    view = panel.view
    return view.mapFromScene(view.box.mapViewToScene(QPointF(x, y)))


def test_a_box_dragged_on_the_map_is_the_object_until_esc(qtbot, panel, demo, star, state):
    result = grad_cam(qtbot, panel, demo[0])
    view = panel.view
    start, end = image_pos(panel, 4.3, 6.6), image_pos(panel, 30.2, 25.5)
    QTest.mousePress(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, start)
    QTest.mouseMove(view.viewport(), end)
    QTest.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, end)
    x0, y0, x1, y1 = state.object_box
    # Whole pixels covering the drag (a pixel or so of rounding between the widget and the image is allowed).
    assert abs(x0 - 4) <= 1 and abs(y0 - 6) <= 1 and abs(x1 - 31) <= 1 and abs(y1 - 26) <= 1
    assert view.object_item.isVisible() and panel.truth.clear_button.isVisible()
    box = np.zeros(star.mask.shape, dtype=bool)
    box[y0:y1, x0:x1] = True
    pointing, share = by_hand(result.heatmap, box)
    assert cells(panel) == ("✓" if pointing else "✗", fmt_fraction(share))
    assert "the box you drew" in panel.truth.line.text() and fmt_fraction(share) in panel.truth.line.text()
    # Esc on the map forgets the box: the drawn star's mask is the object again.
    QTest.keyClick(view, Qt.Key.Key_Escape)
    assert state.object_box is None and not view.object_item.isVisible()
    pointing, share = by_hand(result.heatmap, star.mask)
    assert cells(panel) == ("✓" if pointing else "✗", fmt_fraction(share))
    assert "drawn star" in panel.truth.line.text()


def test_clear_box_and_a_click_that_draws_nothing(qtbot, panel, demo, state):
    grad_cam(qtbot, panel, demo[0])
    state.object_box = (0, 0, 10, 10)
    assert panel.view.object_item.isVisible()
    panel.truth.clear_button.click()
    assert state.object_box is None and not panel.view.object_item.isVisible()
    at = image_pos(panel, 20, 20)
    QTest.mouseClick(panel.view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at)
    assert state.object_box is None  # a click is no box


def test_without_a_mask_or_a_box_the_line_says_how_to_give_one(qtbot, panel, demo, state, star):
    state.image = ImageInput(Image.fromarray(star.image), "<pasted image>")  # the same picture, no mask
    x = get_spec("shapes_inception").transforms()(state.image.source)[None]
    panel.set_image(x, star.image, top1=STAR)
    result = grad_cam(qtbot, panel, demo[0])
    assert HINT in panel.truth.line.text()  # how to give one
    assert cells(panel) == ("—", "—")
    state.object_box = (10, 10, 40, 40)
    box = np.zeros(result.heatmap.shape, dtype=bool)
    box[10:40, 10:40] = True
    pointing, share = by_hand(result.heatmap, box)
    assert cells(panel) == ("✓" if pointing else "✗", fmt_fraction(share))


def test_in_the_window_a_drawn_samples_mask_reaches_the_map_through_the_state(make_window, qtbot, star):
    """The demo model on screen: a drawn sample's button, then Grad-CAM; the mask came with the image on screen."""
    w = make_window("shapes_inception", weights="auto", classify_sample=False)
    qtbot.waitUntil(lambda: w.images is not None and w.images.classify.classifier is not None, timeout=RUN_MS)
    panel = w.images.attribution
    button = w.images.classify.drawn_buttons[["triangle", "star", "ring"].index("star")]
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.x is not None and w.state.image is not None and w.state.image.mask is not None,
                    timeout=RUN_MS)
    assert np.array_equal(w.state.image.mask, star.mask)
    result = grad_cam(qtbot, panel, w.state.graph)
    pointing, share = by_hand(result.heatmap, star.mask)
    assert cells(panel) == ("✓" if pointing else "✗", fmt_fraction(share))
    assert "drawn star" in panel.truth.line.text()


def test_another_models_input_gets_the_mask_resized_and_cropped_as_the_image(make_window, qtbot, star):
    """GoogLeNet sees the 64×64 star resized to 256 and cropped to 224: the mask follows the same geometry
    (nearest neighbour: input pixel (r, c) comes from the drawn pixel ((r + 16) // 4, (c + 16) // 4))."""
    w = make_window(classify_sample=False)  # googlenet, random weights: geometry only
    qtbot.waitUntil(lambda: w.images is not None and w.images.classify.classifier is not None, timeout=RUN_MS)
    panel = w.images.attribution
    qtbot.mouseClick(w.images.classify.drawn_buttons[1], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.x is not None and w.state.image is not None and w.state.image.mask is not None,
                    timeout=RUN_MS)
    assert tuple(panel.x.shape[2:]) == (224, 224)
    mask, what = panel.truth.mask_for((224, 224))
    r = (np.arange(224) + 16) // 4
    np.testing.assert_array_equal(mask, star.mask[np.ix_(r, r)])
    assert "resized and cropped" in what
