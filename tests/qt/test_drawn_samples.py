"""The classify panel's drawn samples (issue 24): shapes of the demo task beside the sample photos, drawn with
a fixed seed; the demo model classifies each as the generator labelled it, and the image on screen carries the
generator's mask (the ground truth of its maps) in the session's state."""

import numpy as np
import pytest
from PySide6.QtCore import Qt

from explorer.core.demo.drawing import draw_images
from explorer.core.demo.samples import SAMPLE_CLASSES, SAMPLE_SEED
from explorer.core.demo.task import SHAPE_CLASSES
from explorer.core.model.loading import load_model
from explorer.qt.classify.classify_panel import ClassifyPanel
from explorer.qt.workers import JobRunner

TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def demo():
    loaded = load_model("shapes_inception")
    assert not loaded.weights.is_random  # the shipped, trained weights
    return loaded


@pytest.fixture
def panel(qtbot, demo):
    p = ClassifyPanel(runner=JobRunner(None))  # the default gallery: photos, then the drawn shapes
    qtbot.addWidget(p)
    p.resize(900, 600)
    p.show()
    p.set_model(demo, device="cpu")
    qtbot.waitUntil(lambda: p.classifier is not None and not p.busy, timeout=TIMEOUT_MS)
    yield p
    assert p.shutdown(30000)


def test_drawn_samples_sit_among_the_sample_buttons(panel):
    buttons = panel.drawn_buttons
    assert len(buttons) == len(SAMPLE_CLASSES) >= 3
    bar = panel.toolbar.samples_row
    places = [bar.indexOf(b) for b in panel.sample_buttons + buttons]
    assert places == sorted(places) and min(places) >= 0  # in the row, after the photos
    for b, name in zip(buttons, SAMPLE_CLASSES, strict=True):
        assert b.isVisible() and not b.icon().isNull() and name in b.toolTip()


def test_each_drawn_sample_is_classified_as_the_generator_labelled_it(panel, qtbot):
    # The generator itself, not the samples module: the first six images of the seed hold each class once.
    truth = {SHAPE_CLASSES[d.label]: d for d in draw_images(len(SHAPE_CLASSES), SAMPLE_SEED)}
    results, shown_images = [], []
    panel.image_classified.connect(results.append)
    panel.image_shown.connect(shown_images.append)
    for b, name in zip(panel.drawn_buttons, SAMPLE_CLASSES, strict=True):
        results.clear()
        shown_images.clear()
        qtbot.mouseClick(b, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: bool(results and shown_images), timeout=TIMEOUT_MS)
        result = results[0]
        drawn = truth[name]
        assert result.top[0].index == drawn.label and result.top[0].label == name
        given = panel.state.image  # what the session holds as the image on screen
        assert given.name == f"<drawn {name}>" and result.source == given.name
        assert given.mask is not None and np.array_equal(given.mask, drawn.mask)
        assert np.array_equal(np.asarray(given.source), drawn.image)  # the pixels classified are the generator's
        shown = shown_images[0]
        assert shown.rgb.shape == drawn.image.shape  # the demo model sees the 64×64 image as drawn


def test_a_panel_given_its_own_samples_gets_no_drawn_ones(qtbot):
    p = ClassifyPanel(runner=JobRunner(None), samples=[])
    qtbot.addWidget(p)
    assert p.drawn_buttons == [] and p.sample_buttons == []
    assert p.shutdown(30000)
