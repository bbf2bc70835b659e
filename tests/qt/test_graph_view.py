"""Fit to window and zoom-to-box keep box text readable (GoogLeNet's graph is much taller than wide)."""

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QFontInfo

from explorer.qt.graph.graph_view import MIN_TEXT_PX, READABLE_TEXT_PX


def text_px(view) -> float:
    """On-screen pixel size of box text: the font's pixel size times the view's scale."""
    return view.transform().m11() * QFontInfo(view.theme.font).pixelSize()


def on_screen(view, key) -> bool:
    visible = view.mapToScene(view.viewport().rect()).boundingRect()
    return visible.contains(view.boxes[key].sceneBoundingRect())


def test_fit_to_window_at_the_default_size_keeps_text_readable(window, qtbot):
    window.resize(1280, 860)
    qtbot.waitUntil(lambda: window.width() == 1280)
    view = window.view
    qtbot.keyClick(window, Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)  # View → Fit to window
    assert text_px(view) >= READABLE_TEXT_PX
    line = view.transform().m11() * view.theme.line_height(False)
    assert line >= MIN_TEXT_PX  # boxes are painted with their text, not as bare rectangles
    # The drawing is shown from its top and across its whole width.
    assert on_screen(view, "input")
    visible = view.mapToScene(view.viewport().rect()).boundingRect()
    drawing = view.scene().itemsBoundingRect()
    assert visible.left() <= drawing.left() and visible.right() >= drawing.right()
    # A drawing that fits readably is fitted whole, as before.
    rect = view.boxes["inception4a"].sceneBoundingRect()
    view.fit(rect, max_zoom=1.5)
    assert on_screen(view, "inception4a") and view.zoom() == pytest.approx(1.5)


def test_zoom_to_box_centres_it_at_a_readable_zoom(window, qtbot):
    view = window.view
    view.fit(min_zoom=0)  # the whole drawing: text far too small
    assert text_px(view) < READABLE_TEXT_PX
    assert view.zoom_to_box("inception5b")
    assert text_px(view) >= READABLE_TEXT_PX and on_screen(view, "inception5b")
    centre = view.mapToScene(view.viewport().rect().center())
    box = view.boxes["inception5b"].sceneBoundingRect()
    assert abs(centre.y() - box.center().y()) < 2  # across, the scene's edge may stop the scroll
    # Already readable: the zoom is kept, the box still centred.
    view.set_zoom(1.3)
    assert view.zoom_to_box("inception3a") and view.zoom() == pytest.approx(1.3) and on_screen(view, "inception3a")
    assert not view.zoom_to_box("no such box")
