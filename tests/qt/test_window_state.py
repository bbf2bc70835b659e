"""The window over its ExplorerState: each defect a new user met, driven through the window and asserted on
the state (pytest-qt, offscreen, the default window size 1280×860)."""

import time

import pytest
import torch
from PIL import Image
from PySide6.QtCore import QEvent, QMimeData, QObject, QSettings, Qt, QUrl
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication

from explorer.core.session.state import InputSize
from tests.netutil import synthetic_batch

TIMEOUT_MS = 180_000


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for i, img in enumerate(synthetic_batch(3, 96, torch.Generator().manual_seed(3))):
        Image.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(d / f"p{i}.png")
    return d


def ready(window) -> bool:
    docks = window.images
    return docks is not None and docks.classify.classifier is not None and not docks.classify.busy


def wait_ready(qtbot, window) -> None:
    qtbot.waitUntil(lambda: ready(window), timeout=TIMEOUT_MS)


def run_batch(qtbot, window, paths) -> list:
    with qtbot.waitSignal(window.images.classify.batch_finished, timeout=TIMEOUT_MS) as blocker:
        window.images.classify.classify_paths(paths)
    return blocker.args[0]


# 1. -----------------------------------------------------------------------------------------------


def test_batch_results_belong_to_the_model_that_made_them(make_window, qtbot, folder):
    w = make_window()
    wait_ready(qtbot, w)
    panel = w.images.classify
    results = run_batch(qtbot, w, [folder])
    assert len(results) == 3 and w.state.batch.model == "googlenet" and w.state.batch.status == "done"
    assert panel.model.rowCount() == 3

    w.models.set_model("googlenet_paper")
    # At once, while the new model loads: no row, banner or chart of the old model; the panel names the new one.
    assert w.state.batch is None and panel.model.rowCount() == 0 and not panel.batch_box.isVisible()
    assert w.state.previous_batch.model == "googlenet" and len(w.state.previous_batch.results) == 3
    assert "googlenet" in panel.previous_label.text() and panel.previous_bar.isVisible()
    assert "loading googlenet_paper" in panel.device_label.text().lower()
    assert "loading googlenet_paper" in panel.result_view.image.text().lower()
    assert panel.result_view.chart.predictions == []

    qtbot.waitUntil(lambda: ready(w) and w.images.classify.classifier.loaded.name == "googlenet_paper",
                    timeout=TIMEOUT_MS)
    # "Classify them again" runs the same inputs with the new model.
    with qtbot.waitSignal(panel.batch_finished, timeout=TIMEOUT_MS) as blocker:
        panel.previous_button.click()
    assert len(blocker.args[0]) == 3 and w.state.batch.model == "googlenet_paper"
    assert {r.source for r in blocker.args[0]} == {r.source for r in results}
    assert not panel.previous_bar.isVisible()


# 2. -----------------------------------------------------------------------------------------------


class _LayoutCounter(QObject):
    def __init__(self):
        super().__init__()
        self.count = 0

    def eventFilter(self, obj, event) -> bool:  # noqa: N802
        if event.type() in (QEvent.Type.LayoutRequest, QEvent.Type.Resize):
            self.count += 1
        return False


def test_an_idle_window_does_no_layout_work_after_classifying_its_sample(make_window, qtbot):
    """The classify panel's layout flipped between two sizes forever after the first sample (65–99 % CPU)."""
    w = make_window(classify_sample=True)
    w.resize(1280, 860)
    qtbot.waitUntil(lambda: ready(w) and w.state.shown_image is not None, timeout=TIMEOUT_MS)
    qtbot.wait(1500)  # the last repaints and the docks' settling
    counter = _LayoutCounter()
    app = QApplication.instance()
    app.installEventFilter(counter)
    cpu0, t0 = time.process_time(), time.monotonic()
    try:
        qtbot.wait(2500)
    finally:
        app.removeEventFilter(counter)
    cpu = (time.process_time() - cpu0) / (time.monotonic() - t0)
    # Before the fix: ~350 layout requests and resizes in 2.5 s (and 60–80 % of a core).
    assert counter.count <= 4, f"{counter.count} layout events in 2.5 s of idleness (CPU {cpu:.0%})"


# 3. -----------------------------------------------------------------------------------------------


def test_a_batch_shows_its_table_at_a_useful_height(make_window, qtbot, tmp_path):
    w = make_window()
    w.resize(1280, 860)
    wait_ready(qtbot, w)
    d = tmp_path / "many"
    d.mkdir()
    img = Image.new("RGB", (40, 40), (120, 30, 200))
    for i in range(12):
        img.save(d / f"{i:02d}.png")
    run_batch(qtbot, w, [d])
    qtbot.wait(50)
    table = w.images.classify.table
    row = table.verticalHeader().defaultSectionSize()
    # What can be seen of it in the dock (its scroll area clips it), not its own size.
    seen = table.viewport().visibleRegion().boundingRect().height()
    assert table.isVisible() and seen >= 6 * row, f"{seen} px of the table can be seen, rows are {row} px"
    scroll = w.images.classify_dock.widget()
    assert not scroll.verticalScrollBar().isVisible(), "the classify panel does not fit its dock"


# 4. -----------------------------------------------------------------------------------------------


def test_ctrl_v_with_an_image_on_the_clipboard_classifies_it_even_from_the_size_field(make_window, qtbot):
    w = make_window()
    wait_ready(qtbot, w)
    w.graph_page.set_input_size(300)
    box = w.size_control.height_box
    box.setFocus()
    box.selectAll()
    image = QImage(64, 48, QImage.Format.Format_RGB888)
    image.fill(Qt.GlobalColor.darkCyan)
    mime = QMimeData()
    mime.setImageData(image)
    QApplication.clipboard().setMimeData(mime)
    try:
        with qtbot.waitSignal(w.images.classify.image_classified, timeout=TIMEOUT_MS) as blocker:
            qtbot.keyClick(box, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
        assert blocker.args[0].source == "<pasted image>"
        assert w.state.input_size == InputSize(300, 300, 1) and box.value() == 300  # the size is untouched
        # Text only on the clipboard: Ctrl+V in the field pastes the text there.
        QApplication.clipboard().setText("288")
        box.setFocus()
        box.selectAll()
        qtbot.keyClick(box, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
        qtbot.waitUntil(lambda: w.state.input_size.height == 288, timeout=5000)
    finally:
        QApplication.clipboard().clear()


# 5. -----------------------------------------------------------------------------------------------


def test_a_size_message_goes_as_soon_as_the_size_is_valid_and_stale_numbers_are_marked(window, qtbot):
    window.view.select("inception4a")
    window.graph_page.set_input_size(2)
    assert window.state.trace_error and "2×2" in window.state.trace_error
    assert window.banner.text() == window.state.trace_error
    assert window.status_line.text() == window.state.trace_error
    # The numbers on screen are the last valid size's, and say so.
    assert "shapes shown for 224×224" in window.totals_label.text()
    assert "224×224, the last size that fits" in window.details.toPlainText()
    window.graph_page.set_input_size(299)
    assert window.state.trace_error is None and window.state.trace.input_shape[2:] == (299, 299)
    assert not window.banner.isVisible() and window.status_line.text() == ""  # not seconds later: now
    assert "does not fit" not in window.totals_label.text() and "299×299" in window.totals_label.text()
    assert "last size that fits" not in window.details.toPlainText()


def test_an_error_about_something_else_stays_when_the_size_becomes_valid(window):
    window.show_error("weights file broken.pth: not a state dict")
    window.graph_page.set_input_size(256)
    assert window.banner.text() == "weights file broken.pth: not a state dict"


def test_status_messages_never_run_into_the_permanent_texts(window):
    window.show_status("x" * 400)
    line, totals = window.status_line.geometry(), window.totals_label.geometry()
    assert line.right() < totals.left()


# 6. -----------------------------------------------------------------------------------------------


def test_the_preview_is_drawn_before_any_worker_starts(qtbot, settings_path):
    """The shipped preview is on screen when the constructor returns; torch's import (the graph worker)
    starts only after the window has painted."""
    from explorer.qt.window.main_window import MainWindow

    w = MainWindow(None, weights="none", allow_download=False, settings=QSettings(settings_path,
                   QSettings.Format.IniFormat), classify_sample=False)
    qtbot.addWidget(w)
    try:
        assert getattr(w.state.graph, "is_preview", False) and "inception4a" in w.view.boxes
        assert w.runner.running("graph") is None
        with qtbot.waitSignal(w.graph_ready, timeout=TIMEOUT_MS):
            w.show()
        assert not getattr(w.state.graph, "is_preview", False)
    finally:
        w.jobs.cancel_all()
        w.jobs.wait(30000)
        if w.images is not None:
            w.images.shutdown()


# 8. -----------------------------------------------------------------------------------------------


def test_the_paper_table_has_the_central_area(window, qtbot):
    """It was squeezed into the Details dock (four rows, columns cut): now a tab of the central area."""
    window.resize(1280, 860)
    window.show_paper_tab()
    qtbot.wait(50)
    view = window.paper_table.view
    assert window.tabs.currentIndex() == 1 and view.isVisible() and view.rowCount() > 10
    row = view.verticalHeader().defaultSectionSize()
    assert view.viewport().height() >= 8 * row, (view.viewport().height(), row)
    assert view.viewport().width() >= 800


# 9. -----------------------------------------------------------------------------------------------


def test_find_zooms_to_the_match(window, qtbot):
    from explorer.qt.graph.graph_view import NATURAL_ZOOM

    window.view.set_zoom(0.3)
    assert window.graph_page.find("inception4c") == "inception4c"
    assert window.view.zoom() >= NATURAL_ZOOM
    item = window.view.boxes["inception4c"]
    visible = window.view.mapToScene(window.view.viewport().rect()).boundingRect()
    assert visible.contains(item.sceneBoundingRect().center())
    assert window.state.selection == "inception4c"


# 10 (sample strip). -------------------------------------------------------------------------------


def test_the_classify_panel_fits_its_dock_at_the_default_size(make_window, qtbot):
    """Samples and captions were clipped, and the panel scrolled with room to spare."""
    w = make_window(classify_sample=True)
    w.resize(1280, 860)
    qtbot.waitUntil(lambda: ready(w) and w.state.shown_image is not None, timeout=TIMEOUT_MS)
    qtbot.wait(100)
    scroll = w.images.classify_dock.widget()
    assert not scroll.verticalScrollBar().isVisible() and not scroll.horizontalScrollBar().isVisible()
    timings = w.images.classify.result_view.timings
    assert timings.visibleRegion().boundingRect().height() == timings.height() > 0  # the last line, whole
    buttons = w.images.classify.sample_buttons
    assert buttons
    for b in buttons:
        assert b.height() >= b.sizeHint().height() and b.width() >= b.sizeHint().width(), (b.size(), b.sizeHint())


# 12. ----------------------------------------------------------------------------------------------


def test_an_opened_model_is_restored_and_marked(make_window, qtbot, settings_path):
    w = make_window()
    with qtbot.waitSignals([w.model_opened, w.model_loaded], timeout=TIMEOUT_MS):
        w.models.open_model("torchvision:resnet18")
    assert w.state.model_ref == "torchvision:resnet18"
    assert w.model_combo.isEnabled()
    checked = [a.data() for a in w.model_actions.actions() if a.isChecked()]
    assert checked == ["torchvision:resnet18"]
    w.close()

    w2 = make_window(wait_weights=False)
    qtbot.waitUntil(lambda: w2.state.model_ref == "torchvision:resnet18" and w2.state.loaded is not None,
                    timeout=TIMEOUT_MS)
    assert [a.data() for a in w2.model_actions.actions() if a.isChecked()] == ["torchvision:resnet18"]
    assert w2.model_combo.isEnabled()
    # Back to a zoo model: its entry is the checked one, and that is what the next start opens.
    with qtbot.waitSignal(w2.model_loaded, timeout=TIMEOUT_MS):
        w2.models.set_model("googlenet")
    assert [a.data() for a in w2.model_actions.actions() if a.isChecked()] == ["googlenet"]
    assert QSettings(settings_path, QSettings.Format.IniFormat).value("model/ref") == "googlenet"


def test_help_lists_the_shortcuts_from_the_action_table(window):
    from explorer.qt.window.actions import ACTIONS, shortcuts_html

    help_menu = window.menus["&Help"]
    texts = [a.text() for a in help_menu.actions()]
    assert "&Keyboard shortcuts" in texts and "Where &weights are looked for" in texts and "&About" in texts
    html = shortcuts_html(window.actions)
    for spec in ACTIONS:
        act = window.actions[spec.key]
        for seq in act.shortcuts():
            assert seq.toString() in html or seq.toString(seq.SequenceFormat.NativeText) in html
    assert "Ctrl+Shift+M" in html and "F5" in html and "Esc" in html


def test_every_action_names_a_method_of_its_owner(window, qtbot):
    """The table's dotted paths reach a callable once the window's parts exist (the image docks come later)."""
    from explorer.qt.window.actions import ACTIONS, _resolve

    qtbot.waitUntil(lambda: window.images is not None, timeout=10_000)
    for spec in ACTIONS:
        assert callable(_resolve(window, spec.method)), spec.method


def test_open_model_takes_a_bare_name_like_the_command_line(window, qtbot):
    """File → Open model… with 'resnet18' opens torchvision's resnet18 (the CLI resolves it the same way)."""
    import torchvision

    with qtbot.waitSignal(window.model_opened, timeout=TIMEOUT_MS) as opened:
        window.models.open_model("resnet18")
    assert opened.args == ["torchvision:resnet18"] and window.state.model_ref == "torchvision:resnet18"
    real = torchvision.models.resnet18(weights=None)
    assert window.graph.total_params == sum(p.numel() for p in real.parameters())
    with qtbot.waitSignal(window.error_shown, timeout=TIMEOUT_MS) as failed:
        window.models.open_model("resnt18")
    assert "did you mean" in failed.args[0] and "resnet18" in failed.args[0]
    assert window.state.model_ref == "torchvision:resnet18"  # the opened model stays


def test_presentation_shows_the_graph_without_the_tab_bar(window, qtbot):
    window.show_paper_tab()
    window.presentation.enter()
    try:
        assert window.tabs.currentIndex() == 0 and not window.tabs.tabBar().isVisible()
        assert window.state.presenting
    finally:
        window.presentation.leave()
    assert window.tabs.tabBar().isVisible() and not window.state.presenting
