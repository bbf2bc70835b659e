"""The paper table widget shows the engine's table, highlights deviations and exports files."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import functools  # noqa: E402

import pytest  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QFileDialog  # noqa: E402

from explorer.core.shapes.papertable import paper_table  # noqa: E402
from explorer.qt.shapes.paper_table import DEVIATION_COLOUR, NOTE_ROLE, PaperTableWidget  # noqa: E402


@functools.cache
def _graph(name):
    from explorer.core.graph.blockgraph import build_block_graph
    from explorer.core.model.zoo import get_spec

    return build_block_graph(get_spec(name))


def _trace(name, size):
    from explorer.core.shapes.trace import trace_shapes

    return trace_shapes(_graph(name), size)


@pytest.fixture
def widget(qtbot):
    w = PaperTableWidget()
    qtbot.addWidget(w)
    w.set_model(_graph("googlenet"), _trace("googlenet", (224, 224)))
    return w


def column(w: PaperTableWidget, title: str) -> int:
    headers = [w.view.horizontalHeaderItem(j).text() for j in range(w.view.columnCount())]
    return headers.index(title)


def row_of(w: PaperTableWidget, node: str) -> int:
    return next(i for i, r in enumerate(w.table().rows) if node in r.nodes)


def test_rows_are_the_inference_path(widget):
    graph = _graph("googlenet")
    expected = paper_table(graph, _trace("googlenet", (224, 224)))
    assert widget.view.rowCount() == len(expected.rows)
    assert widget.view.columnCount() == len(expected.columns)
    shown = [widget.view.verticalHeaderItem(i).text() for i in range(widget.view.rowCount())]
    assert "aux1" not in " ".join(shown) and "input" not in shown
    assert shown[-1] == "fc"


def test_cell_text_comes_from_the_real_layers(widget):
    m = _graph("googlenet").model.inception3a
    i = row_of(widget, "inception3a")
    assert widget.view.item(i, column(widget, "#3×3")).text() == str(m.branch2[1].conv.out_channels)
    assert widget.view.item(i, column(widget, "#1×1")).text() == str(m.branch1.conv.out_channels)
    assert widget.view.item(i, column(widget, "type")).text() == "inception (3a)"
    assert widget.view.item(i, column(widget, "params")).textAlignment() & Qt.AlignmentFlag.AlignRight


def test_deviating_cell_is_highlighted_with_its_note(widget):
    i = row_of(widget, "inception3a")
    item = widget.view.item(i, column(widget, "#5×5"))
    assert "(3×3)" in item.text()
    assert item.background().color() == DEVIATION_COLOUR
    assert "3×3" in item.toolTip() and "5×5" in item.toolTip()
    assert item.data(NOTE_ROLE) == item.toolTip()
    plain = widget.view.item(i, column(widget, "#3×3"))
    assert plain.data(NOTE_ROLE) is None
    assert plain.background().style() == Qt.BrushStyle.NoBrush
    highlighted = sum(1 for r in range(widget.view.rowCount()) for c in range(widget.view.columnCount())
                      if widget.view.item(r, c).data(NOTE_ROLE))
    assert highlighted == len(widget.table().deviations()) > 0
    assert "highlighted" in widget.notes.text()


def test_retrace_updates_the_output_sizes(widget):
    i, j = row_of(widget, "inception3a"), column(widget, "output size")
    before = widget.view.item(i, j).text()
    trace = _trace("googlenet", (320, 320))
    widget.set_model(_graph("googlenet"), trace)
    c, h, w = trace.nodes["inception3a"].output_shape
    assert widget.view.item(i, j).text() == f"{h}×{w}×{c}" != before
    assert "320×320" in widget.caption.text()


def choose_layout(w, layout) -> None:
    """Pick `layout` (None: automatic) in the table's layout box, as a person does."""
    [index] = [i for i in range(w.layout_box.count()) if w.layout_box.itemData(i) == layout]
    w.layout_box.setCurrentIndex(index)


def test_inception_v3_gets_its_layout(qtbot):
    w = PaperTableWidget()
    qtbot.addWidget(w)
    w.set_model(_graph("inception_v3"), _trace("inception_v3", (299, 299)))
    assert column(w, "input size") >= 0 and column(w, "branch 1") >= 0
    i = row_of(w, "Mixed_5b")
    assert "→" in w.view.item(i, column(w, "branch 2")).text()
    choose_layout(w, "googlenet")  # does not fit: falls back and says why
    assert w.table().layout == "inception_v3"
    assert "does not fit" in w.notes.text()
    choose_layout(w, None)
    assert "does not fit" not in w.notes.text()


def test_layout_choice_switches_googlenet_to_the_v3_columns(widget):
    choose_layout(widget, "inception_v3")
    assert widget.table().layout == "inception_v3"
    assert column(widget, "branch 4") >= 0
    choose_layout(widget, None)
    assert widget.table().layout == "googlenet"


@pytest.mark.parametrize("fmt,suffix", [("csv", ".csv"), ("markdown", ".md"), ("latex", ".tex")])
def test_export_writes_the_file(widget, qtbot, tmp_path, fmt, suffix):
    path = tmp_path / f"table{suffix}"
    with qtbot.waitSignal(widget.table_exported) as blocker:
        widget.export(path, fmt)
    assert blocker.args == [str(path), fmt]
    text = path.read_text(encoding="utf-8")
    assert text == widget.table().export(fmt)
    assert "inception (3a)" in text


def test_export_button_asks_for_a_file_and_adds_the_suffix(widget, qtbot, tmp_path, monkeypatch):
    target = tmp_path / "googlenet"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), "")))
    with qtbot.waitSignal(widget.table_exported):
        qtbot.mouseClick(widget.export_buttons["latex"], Qt.MouseButton.LeftButton)
    assert "\\begin{tabular}" in (tmp_path / "googlenet.tex").read_text(encoding="utf-8")


def test_export_failure_is_reported(widget, qtbot, tmp_path, monkeypatch):
    target = tmp_path / "missing-folder" / "t.csv"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), "")))
    with qtbot.waitSignal(widget.export_failed) as blocker:
        assert widget.choose_and_export("csv") is None
    assert "t.csv" in blocker.args[0]


def test_cancelled_dialog_writes_nothing(widget, tmp_path, monkeypatch):
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: ("", "")))
    assert widget.choose_and_export("csv") is None


def test_selecting_a_row_names_its_node(widget, qtbot):
    with qtbot.waitSignal(widget.node_selected) as blocker:
        widget.view.selectRow(row_of(widget, "inception4e"))
    assert blocker.args == ["inception4e"]


def test_empty_widget_has_nothing_to_export(qtbot, tmp_path):
    w = PaperTableWidget()
    qtbot.addWidget(w)
    assert w.view.rowCount() == 0
    assert not any(b.isEnabled() for b in w.export_buttons.values())
    with pytest.raises(RuntimeError):
        w.export(tmp_path / "x.csv", "csv")


def test_paper_faithful_googlenet_marks_where_the_papers_numbers_do_not_add_up(qtbot, tmp_path):
    """Cells whose printed params / ops the layers contradict are tinted, carry the note as tooltip and
    footnote, and the CSV export keeps it; cells that agree stay plain."""
    w = PaperTableWidget()
    qtbot.addWidget(w)
    w.set_model(_graph("googlenet_paper"), _trace("googlenet_paper", (224, 224)))
    marked = {(r.nodes[-1], c.key): cell.note for r, c, cell in w.table().deviations()}
    assert ("conv1", "params") in marked and ("inception5a", "ops") in marked
    for (node, key), note in marked.items():
        item = w.view.item(row_of(w, node), column(w, key))
        assert item.background().color() == DEVIATION_COLOUR
        assert item.toolTip() == item.data(NOTE_ROLE) == note
        assert note in w.notes.text().replace("&#x27;", "'")
    assert "9,408 weights" in marked[("conv1", "params")]
    plain = w.view.item(row_of(w, "inception3a"), column(w, "params"))  # 159K printed: adds up
    assert plain.data(NOTE_ROLE) is None and plain.background().style() == Qt.BrushStyle.NoBrush
    text = w.export(tmp_path / "t.csv", "csv").read_text(encoding="utf-8")
    assert marked[("conv1", "params")] in text
