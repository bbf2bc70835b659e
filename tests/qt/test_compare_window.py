"""The Compare window: opened from the menu, compares in a worker, tints differing cells, exports CSV."""

from __future__ import annotations

import csv

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QFileDialog

from explorer.core.shapes.trace import trace_shapes
from explorer.core.text import fmt_int
from explorer.qt.shapes.compare_window import DIFF_COLOUR, DIFF_ROLE, TAB_FACTORISATION, CompareWindow
from explorer.core.model.graphs import zoo_block_graph as load_block_graph

from .conftest import GRAPH_TIMEOUT_MS


def wait_compared(qtbot, cw, a=None, b=None, size=None):
    def done():
        c = cw.comparison
        assert c is not None and cw.session.runner.running("compare/compare") is None
        assert a is None or c.a.model == a
        assert b is None or c.b.model == b
        assert size is None or c.size == size

    qtbot.waitUntil(done, timeout=GRAPH_TIMEOUT_MS)
    return cw.comparison


@pytest.fixture
def compare(make_window, qtbot):
    windows = []

    def open_(model="googlenet", tab=None):
        w = make_window(model)
        action = w.compare_action if tab is None else w.factorisation_action
        action.trigger()
        cw = w.compare.compare_window
        windows.append(cw)
        return w, cw

    open_.windows = windows  # windows a test makes itself: kept alive, closed and deleted here
    yield open_
    for cw in windows:
        cw.shutdown()
        cw.close()
        cw.deleteLater()


def tinted(item) -> bool:
    return item.background().color() == DIFF_COLOUR


def test_menu_opens_the_pair_and_tints_only_what_differs(compare, qtbot):
    w, cw = compare("googlenet")
    assert w.compare_action.shortcut() == QKeySequence("Ctrl+Shift+K")
    assert cw.isVisible() and not cw.isModal() and cw.tabs.currentIndex() == 0
    c = wait_compared(qtbot, cw, "googlenet", "googlenet_paper", (224, 224))
    kernels_a, kernels_b = cw.item("inception3a", "kernels", "a"), cw.item("inception3a", "kernels", "b")
    assert kernels_a.text() == "1×1 | 3×3 | 3×3 | pool 3×3" and kernels_b.text() == "1×1 | 3×3 | 5×5 | pool 3×3"
    assert tinted(kernels_a) and tinted(kernels_b) and kernels_a.data(DIFF_ROLE) == ("kernels",)
    assert "branch 3: 3×3 vs 5×5" in kernels_a.toolTip()
    same = cw.item("inception3a", "output", "a")
    assert same.text() == "256×28×28" and not tinted(same) and not same.data(DIFF_ROLE) and not same.toolTip()
    params = cw.item("inception3a", "params", "b")
    real = trace_shapes(load_block_graph("googlenet_paper"), (224, 224)).nodes["inception3a"].params
    assert tinted(params) and f"{real:,}" in params.toolTip()
    assert cw.item("lrn1", "node", "b").data(DIFF_ROLE) == ("node",)
    assert "googlenet_paper" in cw.summary.text() and f"{c.params_ratio():.2f}×" in cw.summary.text()


def test_picking_models_and_size_reruns_and_is_remembered(compare, qtbot, tmp_path):
    w, cw = compare("googlenet")
    wait_compared(qtbot, cw, "googlenet", "googlenet_paper")
    cw.combo_b.setCurrentIndex(cw.combo_b.findData("inception_v3"))
    wait_compared(qtbot, cw, "googlenet", "inception_v3", (224, 224))
    row = cw.table_row("inception3a", "a")
    assert cw.table_row("Mixed_5b", "b") == row  # aligned on one row of the table
    out_b = cw.item("Mixed_5b", "output", "b")
    expected = trace_shapes(load_block_graph("inception_v3"), (224, 224)).nodes["Mixed_5b"].output_shape
    assert out_b.text() == "×".join(map(str, expected)) and tinted(out_b)

    cw.h_box.setValue(160)
    cw.w_box.setValue(192)
    c = wait_compared(qtbot, cw, size=(160, 192))
    expected = trace_shapes(load_block_graph("inception_v3"), (160, 192)).nodes["Mixed_5b"].output_shape
    assert cw.item("Mixed_5b", "output", "b").text() == "×".join(map(str, expected))
    assert c.size == (160, 192) and "160×192" in cw.summary.text()

    assert (w.settings.value("compare/model_a"), w.settings.value("compare/model_b")) == ("googlenet", "inception_v3")
    again = CompareWindow(w.settings, "googlenet", (224, 224), session=w.session)
    qtbot.addWidget(again)
    assert again.models() == ("googlenet", "inception_v3")
    wait_compared(qtbot, again)
    again.shutdown()
    fresh = CompareWindow(QSettings(str(tmp_path / "other.ini"), QSettings.Format.IniFormat), "inception_v3",
                          session=w.session)
    qtbot.addWidget(fresh)
    assert fresh.models() == ("inception_v3", "googlenet")  # no saved pair: the natural partner
    wait_compared(qtbot, fresh)
    fresh.shutdown()
    # A parentless window must not be left to the garbage collector inside Qt's event processing
    # (PySide deleting it there corrupted the heap); the fixture closes and deletes it.
    compare.windows.extend([again, fresh])


def test_too_small_for_one_side_shows_its_error(compare, qtbot):
    _, cw = compare("googlenet")
    wait_compared(qtbot, cw)
    cw.set_input_size(20)
    c = wait_compared(qtbot, cw, size=(20, 20))
    assert c.a.error is None and c.b.error and c.b.failing_layer in c.b.error
    assert cw.banner.isVisible() and c.b.failing_layer in cw.banner.label.text()
    assert cw.item("inception3a", "output", "b").text() == "—"
    assert cw.item("inception3a", "output", "a").text() != "—"


def test_export_csv_writes_the_table(compare, qtbot, tmp_path, monkeypatch):
    _, cw = compare("googlenet")
    c = wait_compared(qtbot, cw)
    target = tmp_path / "pair"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "CSV (*.csv)"))
    with qtbot.waitSignal(cw.csv_exported) as sig:
        cw.export_button.click()
    path = tmp_path / "pair.csv"
    assert sig.args == [str(path)]
    rows = list(csv.reader(path.open(encoding="utf-8")))
    assert len(rows) == 1 + len(c.rows) + 1
    assert next(r for r in rows if r[1] == "inception3a")[6] == cw.item("inception3a", "kernels", "a").text()


def test_factorisation_menu_opens_that_tab(compare, qtbot):
    _, cw = compare("inception_v3", tab=TAB_FACTORISATION)
    assert cw.tabs.currentIndex() == TAB_FACTORISATION and cw.tabs.currentWidget() is cw.factorisation
    wait_compared(qtbot, cw, "inception_v3", "googlenet")
    assert set(cw.factorisation.usage_tables) == {"inception_v3", "googlenet"}
    assert cw.factorisation.layer_combo.count() == 1 + len(cw.factorisation.convs())


def test_a_model_opened_in_the_window_is_compared_against_the_zoo(make_window, qtbot, tmp_path):
    """File → Open model… then Compare: the opened network (here torchvision's resnet18 by name) is
    side A, against GoogLeNet; its rows are its own residual blocks with its own traced numbers."""
    from explorer.core.model.anycnn import open_block_graph

    w = make_window("googlenet")
    with qtbot.waitSignal(w.model_opened, timeout=GRAPH_TIMEOUT_MS):
        w.models.open_model("torchvision:resnet18")
    cw = w.compare.open(0)
    try:
        assert cw.models() == ("torchvision:resnet18", "googlenet")
        assert cw.combo_a.findData("torchvision:resnet18") >= 0 and cw.combo_b.findData("torchvision:resnet18") >= 0
        c = wait_compared(qtbot, cw, size=(224, 224))
        graph = open_block_graph("torchvision:resnet18")[1]
        trace = trace_shapes(graph, (224, 224))
        names_a = [r.a.name for r in c.rows if r.a is not None]
        assert names_a == [n.name for n in graph.nodes() if not n.training_only]
        assert cw.item("layer2.0", "params", "a").toolTip().startswith(f"{fmt_int(trace.nodes['layer2.0'].params)} ")
        assert c.a.total_params == trace.total_params_inference and c.a.total_macs == trace.total_macs
    finally:
        cw.shutdown()
