"""Details names a selected layer inside an expanded block in words, 1-based, with its own numbers."""

from __future__ import annotations

from explorer.core.model.graphs import zoo_block_graph
from explorer.core.shapes.trace import trace_shapes
from explorer.qt.window.details_panel import DetailsPanel


def test_a_selected_layer_is_named_in_words(qtbot):
    # Old behaviour: "selected: inception3a/b1/l1" — the branch's 0-based index beside the table's 1-based "#".
    graph = zoo_block_graph("googlenet")
    details = DetailsPanel()
    qtbot.addWidget(details)
    details.show_node(graph, trace_shapes(graph, (224, 224)), "inception3a", "inception3a/b1/l1")
    text = details.toPlainText()
    assert "Selected: branch 2 of 4 (#3×3 reduce → #3×3), layer 2 of 2" in text
    assert "3×3 conv, 128 (inception3a.branch2.1.conv)" in text and f"{96 * 128 * 9:,}" in text
    assert "128×28×28" in text and "b1/l1" not in text
    assert "256×28×28" in text  # the block's own rows follow
    details.show_node(graph, None, "inception3a", "inception3a/b1/l1")  # no trace (a preview): no shapes
    assert "Selected: branch 2 of 4" in details.toPlainText() and "—" in details.toPlainText()
