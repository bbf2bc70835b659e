"""The explorer window, driven through its public API and simulated input (pytest-qt, offscreen)."""

import xml.etree.ElementTree as ET

import pytest
from PySide6.QtCore import QPoint, QSettings, Qt
from PySide6.QtGui import QImage

from explorer.core.session.state import InputSize
from explorer.core.text import fmt_shape


def engine_trace(window, size, batch=1):
    from explorer.core.shapes.trace import trace_shapes

    return trace_shapes(window.state.graph, size, batch=batch)


def drawn_shapes(window):
    """node name -> the shape line of its drawn box (collapsed nodes) or concat box (expanded ones)."""
    out = {}
    for name in (n.name for n in window.state.graph.nodes()):
        if name in window.state.expanded:
            out[name] = window.view.boxes[f"{name}/join"].box.lines[-1]
        else:
            out[name] = window.view.boxes[name].box.lines[-1]
    return out


def assert_labels_match(window, size, batch=1):
    trace = engine_trace(window, size, batch)
    expected = {name: fmt_shape(ns.output_shape) for name, ns in trace.nodes.items()}
    assert drawn_shapes(window) == expected


def double_click(qtbot, view, key):
    item = view.boxes[key]
    view.centerOn(item)
    pos = view.mapFromScene(item.sceneBoundingRect().center())
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=pos)


def test_window_opens_with_googlenet(window):
    assert window.state.model == "googlenet"
    assert window.model_combo.currentData() == "googlenet"
    assert window.isVisible()
    names = [n.name for n in window.state.graph.nodes()]
    assert {"inception3a", "inception5b", "aux1", "aux2", "fc"} <= set(names)
    assert all(n in window.view.boxes for n in names)
    assert_labels_match(window, (224, 224))
    # Edges carry the tensor shape: the edge out of maxpool2 says 192×28×28.
    labels = {(e.edge.src, e.edge.label) for e in window.view.edges if e.edge.label}
    assert ("maxpool2", "192×28×28") in labels
    # Auxiliary heads are dimmed and say they run in training only.
    aux = window.view.boxes["aux1"]
    assert aux.opacity() < 1 and "training only" in " ".join(aux.box.lines)


def test_weights_badge_when_random(window):
    from explorer.core.model.weights import RANDOM_WARNING

    assert window.state.loaded is not None and window.state.loaded.weights.is_random
    assert window.weights_bar.isVisible()
    assert RANDOM_WARNING in window.weights_bar.text()
    assert window.weights_bar.retry.isVisible() and window.weights_bar.open.isVisible()


def test_size_control_retraces_every_label(window, qtbot):
    ctl = window.size_control
    with qtbot.waitSignal(window.trace_updated):
        ctl.height_box.setValue(320)
    assert window.state.input_size.hw == (320, 320)  # linked by default
    assert_labels_match(window, (320, 320))
    ctl.link.setChecked(False)
    with qtbot.waitSignal(window.trace_updated):
        ctl.width_box.setValue(480)
    assert window.state.input_size.hw == (320, 480)
    assert_labels_match(window, (320, 480))
    with qtbot.waitSignal(window.trace_updated):
        ctl.batch_box.setValue(4)
    assert window.state.input_size == InputSize(320, 480, 4) and window.state.trace.input_shape == (4, 3, 320, 480)
    assert window.state.trace.total_macs == engine_trace(window, (320, 480), 4).total_macs


def test_changing_model_updates_labels(window, qtbot):
    idx = window.model_combo.findData("inception_v3")
    with qtbot.waitSignal(window.graph_ready, timeout=120_000) as blocker:
        window.model_combo.setCurrentIndex(idx)
    assert blocker.args == ["inception_v3"]
    assert window.state.input_size.hw == (299, 299)  # the model's native size
    assert "Mixed_7c" in window.view.boxes and "inception3a" not in window.view.boxes
    assert_labels_match(window, (299, 299))
    window.graph_page.set_input_size(400, 333)
    assert_labels_match(window, (400, 333))
    qtbot.waitUntil(lambda: window.state.loaded is not None and window.state.loaded.name == "inception_v3",
                    timeout=60_000)


def test_expand_inception3a_shows_its_branches(window, qtbot):
    node = window.state.graph.node("inception3a")
    double_click(qtbot, window.view, "inception3a")
    assert "inception3a" in window.state.expanded
    captions = window.view.diagram.branch_boxes("inception3a")
    assert len(captions) == 4
    # Caption text: the engine's label (wrapped at arrows), then the channel count.
    assert [" ".join(c.lines[:-1]) for c in captions] == [b.label for b in node.branches]
    assert [c.lines[-1] for c in captions] == [f"→ {b.out_channels} channels" for b in node.branches]
    for i, branch in enumerate(node.branches):
        layers = [b.lines[0] for k, b in window.view.diagram.boxes.items() if k.startswith(f"inception3a/b{i}/l")]
        assert layers == [l.describe() for l in branch.all_layers()]
    assert [b.lines[0] for k, b in window.view.diagram.boxes.items() if k.startswith("inception3a/b1/l")] == [
        "1×1 conv, 96", "3×3 conv, 128"]
    pool = [b.lines[0] for k, b in window.view.diagram.boxes.items() if k.startswith("inception3a/b3/l")]
    assert pool[0].startswith("3×3 max pool") and pool[1] == "1×1 conv, 32"
    join = window.view.boxes["inception3a/join"].box
    assert join.lines[1] == "64 + 128 + 32 + 32 = 256" and join.lines[2] == "256×28×28"
    # Double-clicking the block's header folds it back.
    double_click(qtbot, window.view, "inception3a")
    assert "inception3a" not in window.state.expanded
    assert not window.view.diagram.branch_boxes("inception3a")


def test_nested_branches_of_inception_v3(make_window):
    w = make_window("inception_v3")
    w.graph_page.expand("Mixed_7b")
    boxes = w.view.diagram.boxes
    # Branch 2 splits into 1×3 ‖ 3×1, joined by a concat of 384 + 384.
    assert boxes["Mixed_7b/b1/p0/l0"].lines[0] == "1×3 conv, 384"
    assert boxes["Mixed_7b/b1/p1/l0"].lines[0] == "3×1 conv, 384"
    assert boxes["Mixed_7b/b1/join"].lines[1] == "384 + 384 = 768"
    a, b = boxes["Mixed_7b/b1/p0/l0"], boxes["Mixed_7b/b1/p1/l0"]
    assert a.y == b.y and a.x + a.w <= b.x  # side by side


def test_expand_all_and_collapse_all(window):
    window.graph_page.expand_all()
    assert window.state.expanded == {n.name for n in window.state.graph.blocks()}
    assert_labels_match(window, (224, 224))
    window.graph_page.collapse_all()
    assert not window.state.expanded and not window.view.frames


def test_too_small_input_marks_failing_node(window, qtbot):
    from explorer.core.shapes.trace import InputTooSmallError, trace_shapes

    with pytest.raises(InputTooSmallError) as err:
        trace_shapes(window.state.graph, (10, 10))
    with qtbot.waitSignal(window.trace_failed) as blocker:
        window.graph_page.set_input_size(10)
    assert blocker.args == [err.value.node, str(err.value)]
    assert window.view.boxes[err.value.node].failed
    assert sum(item.failed for item in window.view.boxes.values()) == 1
    assert str(err.value) in window.banner.text()
    assert_labels_match(window, (224, 224))  # the previous valid drawing stays
    window.graph_page.set_input_size(224)
    assert not any(item.failed for item in window.view.boxes.values())
    assert window.banner.text() == ""


def test_details_panel_shows_block_numbers(window):
    window.view.select("inception3a")
    text = window.details.toPlainText()
    ns = window.state.trace.nodes["inception3a"]
    assert "256×28×28" in text and "192×28×28" in text  # output and input
    assert f"{ns.params:,}" in text and f"{ns.macs:,}" in text
    assert "#3×3 reduce → #3×3" in text and "3×3 max pool → pool proj" in text
    assert "#5×5 reduce → #5×5 (3×3 kernel)" in text  # branch 3: the paper's column, the real kernel
    assert "paper has 5×5" in text
    window.view.select("avgpool")
    assert "whole input" in window.details.toPlainText()


def test_find_jumps_to_node(window, qtbot):
    window.find_edit.setText("4E")
    qtbot.keyClick(window.find_edit, Qt.Key.Key_Return)
    assert window.view.selected_key() == "inception4e"
    assert window.details.node_name == "inception4e"
    assert window.graph_page.find("branch2.1.conv") == "inception3a/b1/l1"  # a layer inside a block opens it
    assert "inception3a" in window.state.expanded


def test_svg_export_is_xml_with_text(window, tmp_path):
    window.graph_page.expand("inception3a")
    path = window.exports.export_svg(tmp_path / "graph.svg")
    root = ET.parse(path).getroot()
    texts = " ".join("".join(el.itertext()) for el in root.iter() if el.tag.endswith("text"))
    for node in window.state.graph.nodes():
        assert node.name in texts
    assert "1×1 conv, 96" in texts and "filter concatenation" in texts


def test_png_export_has_requested_size(window, tmp_path):
    rect = window.view.scene().sceneRect()
    for scale in (0.5, 2.0):
        path = window.exports.export_png(tmp_path / f"graph{scale}.png", scale)
        img = QImage(str(path))
        assert not img.isNull()
        assert (img.width(), img.height()) == (int(-(-rect.width() * scale // 1)), int(-(-rect.height() * scale // 1)))


def test_presentation_steps_through_every_block(window, qtbot):
    blocks = [n.name for n in window.state.graph.blocks() if not n.training_only]
    assert len(blocks) == 9
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    with qtbot.waitSignal(window.presentation.entered):
        qtbot.keyClick(window.view, Qt.Key.Key_F5)
    assert window.presentation.active and window.caption.isVisible() and not window.toolbar.isVisible()
    assert not window.weights_bar.isVisible()
    window.models._restore_weights_badge()  # a weights message arriving mid-talk stays out of the picture
    assert not window.weights_bar.isVisible()
    seen = []
    window.presentation.stepped.connect(lambda i, name: seen.append(name))
    for i, name in enumerate(blocks):
        qtbot.keyClick(window.view, Qt.Key.Key_Space if i % 2 else Qt.Key.Key_Right)
        assert window.state.expanded == {name}  # the previous block collapsed
        assert window.view.frames[name].highlighted
        assert name in window.caption.text()
        assert fmt_shape(window.state.trace.nodes[name].output_shape) in window.caption.text()
    assert seen == blocks
    qtbot.keyClick(window.view, Qt.Key.Key_Right)  # stays on the last block
    assert window.presentation.index == len(blocks) - 1
    qtbot.keyClick(window.view, Qt.Key.Key_Left)
    assert window.state.expanded == {blocks[-2]}
    with qtbot.waitSignal(window.presentation.left):
        qtbot.keyClick(window.view, Qt.Key.Key_Escape)
    assert not window.presentation.active and window.toolbar.isVisible() and not window.state.expanded
    assert window.weights_bar.isVisible()
    # F5 toggles too, although the menu bar holding its action is hidden while presenting.
    qtbot.keyClick(window.view, Qt.Key.Key_F5)
    assert window.presentation.active and not window.menuBar().isVisible()
    qtbot.keyClick(window.view, Qt.Key.Key_F5)
    assert not window.presentation.active and window.menuBar().isVisible()


def test_settings_persist_across_windows(make_window, settings_path, qtbot):
    w1 = make_window()
    with qtbot.waitSignal(w1.graph_ready, timeout=120_000):
        w1.models.set_model("inception_v3")
    w1.graph_page.set_input_size(320, 480)
    w1.graph_page.expand("Mixed_5b")
    w1.resize(780, 600)  # within the offscreen screen (800×800): restoreGeometry clamps to it
    # The layout applies the new model's minimum width (its labels are longer) on its next activation: let it,
    # so that the size saved is the size the window has.
    qtbot.waitUntil(lambda: w1.size().width() >= w1.minimumSizeHint().width(), timeout=5_000)
    w1.close()
    assert QSettings(settings_path, QSettings.Format.IniFormat).value("model/name") == "inception_v3"
    w2 = make_window()
    assert w2.state.model == "inception_v3"
    assert w2.state.input_size == InputSize(320, 480, 1)
    assert not w2.size_control.linked
    assert w2.state.expanded == {"Mixed_5b"} and "Mixed_5b/b0" in w2.view.boxes
    assert w2.size() == w1.size()


def test_weights_from_file_and_bad_file(window, qtbot, tmp_path):
    import torch

    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with qtbot.waitSignal(window.error_shown, timeout=60_000) as blocker:
        window.models.load_weights(str(bad), False)
    assert "bad.pth" in blocker.args[0] and blocker.args[0] in window.banner.text()
    assert window.weights_bar.isVisible()  # still random, still says so
    good = tmp_path / "googlenet.pth"
    torch.save(window.state.loaded.module.state_dict(), good)
    with qtbot.waitSignal(window.model_loaded, timeout=60_000):
        window.models.load_weights(str(good), False)
    assert window.state.loaded.weights.kind == "file"
    assert not window.weights_bar.isVisible()
    assert "googlenet.pth" in window.weights_label.text()


def test_download_progress_and_cancel(window, qtbot, monkeypatch):
    """Progress reported on a worker thread reaches the bar; Cancel stops the download."""
    import threading
    import time

    from explorer.core.cancel import Cancelled

    threads = []

    def fake_download(*args, progress=None, cancel=None, **kwargs):
        threads.append(threading.current_thread())
        total = 10_000_000
        for i in range(1000):
            cancel.raise_if_cancelled()
            progress(i * 10_000, total)
            time.sleep(0.01)
        raise AssertionError("never cancelled")

    from explorer.core.model import loading

    monkeypatch.setattr(loading, "load_model", fake_download)  # the first load, if still running
    monkeypatch.setattr(loading, "retry_download", fake_download)  # Retry download of the loaded model
    window.models.retry_download()
    bar = window.weights_bar
    qtbot.waitUntil(lambda: bar.progress.maximum() == 1000 and bar.progress.value() > 0, timeout=10_000)
    assert threads and threads[0] is not threading.main_thread()
    assert bar.cancel.isVisible() and bar.progress.format().endswith(" / 9.54 MiB")  # 10⁷ bytes in MiB
    qtbot.mouseClick(bar.cancel, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bar.retry.isVisible(), timeout=10_000)
    assert "cancelled" in bar.text()
    assert not bar.progress.isVisible()


def test_retry_download_offline_keeps_the_weights_and_says_so(window, qtbot, monkeypatch, tmp_path):
    """Retry download without network: the bar says "still offline: … — weights unchanged" and the model
    object and its weights stay as they were."""
    import socket
    import urllib.error

    import torch

    from explorer.core.model import weights

    def offline(*args, **kwargs):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))  # an empty torch hub cache
    monkeypatch.setattr(weights.urllib.request, "urlopen", offline)
    before = window.state.loaded
    state = {k: v.clone() for k, v in before.module.state_dict().items()}
    try:
        window.models.retry_download()
        qtbot.waitUntil(lambda: "weights unchanged" in window.weights_bar.text(), timeout=60_000)
    finally:
        torch.hub.set_dir(old)
    text = window.weights_bar.text()
    assert "still offline: no network connection" in text and "Errno" not in text
    assert window.state.loaded is before
    assert all(torch.equal(v, state[k]) for k, v in before.module.state_dict().items())
    assert window.weights_bar.retry.isVisible()


def test_zoom_and_fit(window, qtbot):
    view = window.view
    z = view.zoom()
    qtbot.keyClick(window, Qt.Key.Key_Equal, Qt.KeyboardModifier.ControlModifier)
    assert view.zoom() == pytest.approx(z * 1.25)
    qtbot.keyClick(window, Qt.Key.Key_Minus, Qt.KeyboardModifier.ControlModifier)
    assert view.zoom() == pytest.approx(z)
    view.fit(min_zoom=0)  # the whole drawing, however small its text
    visible = view.mapToScene(view.viewport().rect()).boundingRect()
    assert visible.contains(view.scene().sceneRect().adjusted(1, 1, -1, -1))
    # Dragging the background pans.
    view.set_zoom(1.0)
    view.centerOn(view.boxes["inception4a"])
    center = view.mapToScene(view.viewport().rect().center())
    start = QPoint(8, view.viewport().height() // 2)
    assert view.itemAt(start) is None
    qtbot.mousePress(view.viewport(), Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(view.viewport(), start + QPoint(0, -120))
    qtbot.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton, pos=start + QPoint(0, -120))
    moved = view.mapToScene(view.viewport().rect().center()) - center
    assert moved.y() == pytest.approx(120, abs=2)


def test_paper_table_follows_model_and_size(window, monkeypatch):
    pytest.importorskip("explorer.qt.shapes.paper_table")
    assert window.paper_table is not None
    # The table is a tab of the central area (room for its columns), not a squeezed dock.
    assert window.tabs.count() == 2 and window.tabs.widget(1) is window.paper_table
    calls = []
    monkeypatch.setattr(window.paper_table, "set_model", lambda graph, trace: calls.append((graph, trace)))
    window.graph_page.set_input_size(320)
    assert calls and calls[-1][0] is window.state.graph and calls[-1][1] is window.state.trace
    assert calls[-1][1].input_shape[2:] == (320, 320)
    window.graph_page.set_input_size(5)  # too small: the table keeps the last valid trace
    assert calls[-1][1].input_shape[2:] == (320, 320)


def test_drawing_follows_palette(window, qtbot):
    from PySide6.QtGui import QColor, QPalette
    from PySide6.QtWidgets import QApplication

    old = QApplication.palette()
    dark = QPalette(old)
    for role, color in ((QPalette.ColorRole.Window, "#202020"), (QPalette.ColorRole.Base, "#181818"),
                        (QPalette.ColorRole.Text, "#eeeeee"), (QPalette.ColorRole.WindowText, "#eeeeee")):
        dark.setColor(role, QColor(color))
    try:
        QApplication.setPalette(dark)
        qtbot.waitUntil(lambda: window.view.theme.dark, timeout=5000)
        assert window.view.scene().backgroundBrush().color() == QColor("#181818")
        assert window.view.theme.text == QColor("#eeeeee")
    finally:
        QApplication.setPalette(old)
    qtbot.waitUntil(lambda: not window.view.theme.dark, timeout=5000)


def test_selecting_a_block_right_after_a_model_switch(make_window, qtbot):
    """The image panels hold the previous model until the new one's capture model is ready."""
    w = make_window()
    qtbot.waitUntil(lambda: w.images is not None and w.images.network_key is not None, timeout=120_000)
    with qtbot.waitSignal(w.model_loaded, timeout=120_000):
        w.models.set_model("inception_v3")
    w.view.select("Mixed_7b")  # before the new capture model exists: must not raise
    qtbot.waitUntil(lambda: w.images.network_key is not None
                    and w.images.network_key.model == "inception_v3", timeout=120_000)
    w.view.select("Mixed_6a")
    assert w.images.attribution.graph.name == "inception_v3"


def test_a_new_capture_keeps_the_graphs_selection(make_window, qtbot):
    w = make_window()
    qtbot.waitUntil(lambda: w.images is not None and w.images.network_key is not None, timeout=120_000)
    w.view.select("inception4c")
    from explorer.core.model.samples import sample_images

    with qtbot.waitSignal(w.images.classify.image_shown, timeout=120_000):
        w.images.classify.classify_paths([sample_images()[1].path])
    qtbot.waitUntil(lambda: w.images.activations.capture is not None, timeout=120_000)
    assert w.graph_page.selected_block() == "inception4c"
    assert w.images.activations.state.block == "inception4c"  # the view follows the graph


def test_the_image_on_screen_is_classified_again_after_a_model_switch(make_window, qtbot):
    w = make_window()
    qtbot.waitUntil(lambda: w.images is not None, timeout=60_000)
    from explorer.core.model.samples import sample_images

    path = str(sample_images()[1].path)
    with qtbot.waitSignal(w.images.classify.image_classified, timeout=120_000):
        w.images.classify.classify_paths([path])
    with qtbot.waitSignal(w.images.classify.image_classified, timeout=180_000) as blocker:
        w.models.set_model("inception_v3")
    assert blocker.args[0].source == path and w.images.classify.classifier.loaded.name == "inception_v3"


def test_weights_help_names_both_caches(monkeypatch, tmp_path):
    import huggingface_hub.constants

    from explorer.qt.window.help import weights_help_html

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    text = weights_help_html()
    assert str(tmp_path / "hf-cache") in text and str(tmp_path / "torch-home" / "hub" / "checkpoints") in text
    assert "Inception-v4" in text and "Open weights file" in text


def test_the_engine_fallback_timer_stops_once_a_paint_started_the_engine(qtbot, settings_path):
    """A shown window starts the engine from its first paint; the timer meant for a window that is
    never shown must not stay armed and fire later."""
    from PySide6.QtCore import QSettings

    from explorer.qt.window.main_window import MainWindow

    w = MainWindow(None, weights="none", allow_download=False,
                   settings=QSettings(settings_path, QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    with qtbot.waitSignal(w.graph_ready, timeout=120_000):
        w.show()
        qtbot.waitUntil(lambda: w.models._engine_started, timeout=5_000)
        assert w.models._engine_fallback is None or not w.models._engine_fallback.isActive()
    w.jobs.cancel_all()
    w.jobs.wait(30000)


def test_the_view_menu_names_each_entry_once(window):
    """Each entry of the View menu (the tabs, the docks, the toolbar) has its own name."""
    names = [a.text().replace("&", "") for a in window.view_menu.actions() if not a.isSeparator() and a.text()]
    assert "Graph" in names and len(names) == len(set(names)), names


def test_help_windows_and_compare_fit_the_screen(window, qtbot):
    """The shortcuts list is taller than a laptop's screen and Compare was 1500 px wide: both fit and scroll."""
    free = window.screen().availableGeometry()
    for box in (window.help_windows.show_shortcuts(), window.help_windows.show_weights_help()):
        qtbot.waitExposed(box)
        assert box.width() <= free.width() and box.height() <= free.height(), (box.size(), free.size())
        box.close()
    window.compare.open(0)
    compare = window.compare.compare_window
    qtbot.waitUntil(lambda: compare.isVisible(), timeout=10_000)
    assert compare.width() <= free.width() and compare.height() <= free.height(), (compare.size(), free.size())
    compare.shutdown()
    compare.close()


def test_retry_download_offline_updates_the_classify_panels_banner_too(window, qtbot, monkeypatch, tmp_path):
    """Both banners that say the weights are random say why after a failed retry, not only the graph's."""
    import socket
    import urllib.error

    import torch

    from explorer.core.model import weights

    def offline(*args, **kwargs):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    qtbot.waitUntil(lambda: window.images is not None, timeout=60_000)
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))
    monkeypatch.setattr(weights.urllib.request, "urlopen", offline)
    try:
        window.models.retry_download()
        qtbot.waitUntil(lambda: "weights unchanged" in window.weights_bar.text(), timeout=60_000)
    finally:
        torch.hub.set_dir(old)
    badge = window.images.classify.badge.text()
    assert "still offline" in badge and "weights unchanged" in badge and "random weights" in badge


def test_double_clicking_a_block_keeps_it_in_details(window, qtbot):
    """Opening a block with a double-click keeps it selected and described (Details went blank)."""
    view = window.view
    item = view.boxes["inception4a"]
    view.centerOn(item)
    pos = view.mapFromScene(item.sceneBoundingRect().center())
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=pos)  # a double-click's first click
    assert view.selected_key() == "inception4a" and "inception4a" in window.details.toPlainText()
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    qtbot.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert "inception4a" in window.state.expanded
    assert window.view.selected_key() == "inception4a"
    text = window.details.toPlainText()
    trace = window.state.trace.nodes["inception4a"]
    assert "inception4a" in text and f"{trace.params:,}" in text.replace("\u2009", ",")
    item = view.boxes["inception4a"]
    pos = view.mapFromScene(item.sceneBoundingRect().center())
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=pos)  # and folding it back
    qtbot.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert "inception4a" not in window.state.expanded and "inception4a" in window.details.toPlainText()


def test_the_totals_say_when_images_are_classified_at_another_size(window, qtbot):
    """The shapes may be traced at 75×75 while images are classified at the model's own crop: the status bar
    says so (and says nothing while the two agree)."""
    qtbot.waitUntil(lambda: window.state.loaded is not None, timeout=60_000)
    crop = window.state.loaded.spec.weights_enum().transforms().crop_size[0]  # torchvision's own
    assert "classified at" not in window.totals_label.text()
    window.graph_page.set_input_size(75)
    assert f"images are classified at {crop}×{crop}" in window.totals_label.text()
    window.graph_page.set_input_size(crop)
    assert "classified at" not in window.totals_label.text()
