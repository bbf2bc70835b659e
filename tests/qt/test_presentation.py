"""Presentation mode gives the window back as it was, and its overview's text is as large as a slide's."""

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontInfo
from PySide6.QtWidgets import QDockWidget, QTabBar


def layout_of(w) -> dict:
    """The size of every dock on screen (a tab behind another keeps a stale size), each dock tab bar's
    raised tab, and where the window is."""
    docks = {d.objectName(): d.geometry().getRect() for d in w.findChildren(QDockWidget)
             if d.isVisible() and not d.visibleRegion().isEmpty()}
    tabs = sorted(t.tabText(t.currentIndex()) for t in w.findChildren(QTabBar)
                  if t.parent() is w and t.isVisible())
    return {"docks": docks, "tabs": tabs, "window": w.geometry().getRect(), "view": w.view.size().toTuple()}


def text_px(view) -> float:
    return view.transform().m11() * QFontInfo(view.theme.font).pixelSize()


def test_leaving_restores_the_layout_from_before(window, qtbot):
    w = window
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow, timeout=5000)
    # A layout of the user's own: not the first tab raised, docks dragged to other sizes.
    w.images.attribution_dock.raise_()
    w.resizeDocks([w.details_dock], [240], Qt.Orientation.Horizontal)
    w.resizeDocks([w.images.attribution_dock], [280], Qt.Orientation.Vertical)
    qtbot.wait(100)
    before = layout_of(w)
    assert "Attributions" in before["tabs"]
    with qtbot.waitSignal(w.presentation.entered):
        qtbot.keyClick(w.view, Qt.Key.Key_F5)
    qtbot.keyClick(w.view, Qt.Key.Key_Right)
    qtbot.keyClick(w.view, Qt.Key.Key_Right)
    with qtbot.waitSignal(w.presentation.left):
        qtbot.keyClick(w.view, Qt.Key.Key_Escape)
    qtbot.wait(100)
    assert layout_of(w) == before


def test_the_overview_text_is_as_large_as_the_block_slides(window, qtbot):
    w = window
    normal = text_px(w.view) / w.view.transform().m11()  # the font's pixel size outside presentation
    with qtbot.waitSignal(w.presentation.entered):
        w.presentation.enter()
    overview = text_px(w.view)
    assert QFontInfo(w.view.theme.font).pixelSize() > normal  # the theme grew with the screen
    slides = []
    for _ in w.presentation.blocks():
        w.presentation.next()
        slides.append(text_px(w.view))
    assert overview >= max(slides)
    # The overview starts at the network's input.
    w.presentation.first()
    w.presentation.previous()
    visible = w.view.mapToScene(w.view.viewport().rect()).boundingRect()
    assert visible.contains(w.view.boxes["input"].sceneBoundingRect())
    w.presentation.leave()


def test_the_overlay_legend_is_said_under_the_slide_not_over_its_boxes(window, qtbot):
    """On the graph slides the overlay's legend is a line of the caption (lecture-hall size there), not a box over
    the drawing, where it hid aux1; the window's legend comes back after."""
    w = window
    w.overlay_menu.actions["macs"].trigger()
    lw = w.view.legend_widget
    normal_pt, normal_w = QFontInfo(lw.font()).pointSizeF(), lw.width()
    assert lw.isVisible()
    low, high = lw.texts()
    with qtbot.waitSignal(w.presentation.entered):
        w.presentation.enter()
    assert not lw.isVisible() and lw.title() in w.caption.text()  # the overview says it too
    w.presentation.next()
    assert not lw.isVisible()
    caption = w.caption.text()
    assert lw.title() in caption and low in caption and high in caption
    assert QFontInfo(w.caption.font()).pointSizeF() >= 18
    w.presentation.leave()
    assert lw.isVisible() and QFontInfo(lw.font()).pointSizeF() == normal_pt and lw.width() == normal_w


def test_an_image_or_a_folder_dropped_while_presenting_leaves_the_docks_hidden(make_window, qtbot, tmp_path):
    """A drop (or paste) raised the classify dock, and a batch gave it half the window: over the slides,
    in the middle of a talk. The docks stay hidden; the slides take the image."""
    from PySide6.QtCore import QMimeData, QPointF, QUrl
    from PySide6.QtGui import QDropEvent

    from tests.qt.test_presentation_dataflow import TIMEOUT_MS, ready, write_picture

    w = make_window()
    qtbot.waitUntil(lambda: ready(w), timeout=TIMEOUT_MS)
    folder = tmp_path / "photos"
    folder.mkdir()
    first, second = write_picture(folder / "a.png", 3), write_picture(folder / "b.png", 5)
    with qtbot.waitSignal(w.presentation.entered):
        w.presentation.enter()
    docks = w.images.docks()
    assert not any(d.isVisible() for d in docks)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(first))])
    drop = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(w.images.classify.image_shown, timeout=TIMEOUT_MS):
        w.dropEvent(drop)
    qtbot.waitUntil(lambda: w.presentation.showing_dataflow(), timeout=TIMEOUT_MS)
    assert not any(d.isVisible() for d in docks)
    with qtbot.waitSignal(w.images.classify.batch_finished, timeout=TIMEOUT_MS):
        w.images.classify.classify_paths([str(folder)])
    assert not any(d.isVisible() for d in docks)
    assert w.presentation.active and w.presentation.slide_view.isVisible()
    w.presentation.leave()
    assert w.images.classify_dock.isVisible()


def test_another_model_while_presenting_starts_at_its_own_overview(window, qtbot):
    """Switching model mid-talk kept the previous model's caption ("GoogLeNet · 9 Inception blocks", or
    its block) over the new graph, and the next key skipped to the old index in the new model's blocks."""
    w = window
    with qtbot.waitSignal(w.presentation.entered):
        w.presentation.enter()
    w.presentation.next()
    w.presentation.next()
    assert "inception3b" in w.caption.text()
    with qtbot.waitSignal(w.graph_ready, timeout=120_000):
        w.models.set_model("inception_v3")
    assert w.presentation.active and w.presentation.index == -1
    assert w.spec_title() in w.caption.text() and "GoogLeNet" not in w.caption.text()
    assert f"{len(w.presentation.blocks())} Inception blocks" in w.caption.text()
    w.presentation.next()
    assert w.presentation.index == 0 and "Mixed_5b" in w.caption.text()
    w.presentation.leave()


def test_the_caption_under_a_graph_slide_is_at_least_18_points(window, qtbot):
    """The caption was the application font × 1.65: 16.5 pt from a 10 pt font (14.9 from 9) at 720 lines."""
    w = window
    with qtbot.waitSignal(w.presentation.entered):
        w.presentation.enter()
    w.presentation.next()
    assert w.caption.isVisible() and QFontInfo(w.caption.font()).pointSizeF() >= 18
    w.presentation.leave()
