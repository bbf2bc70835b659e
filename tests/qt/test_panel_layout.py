"""The attribution and branch-share docks at the window's default size (1280×860: docks ~1280×290).

No model is needed: these are the panels' layouts and their empty states."""

import pytest
from PySide6.QtCore import QRect

from explorer.qt.attribution.attribution_panel import METHOD_PARAMS, AttributionPanel
from explorer.qt.attribution.branch_share_chart import BranchShareChart, BranchSharePanel, NetworkShareChart

#: The attribution dock's content at the default window size, and the shortest dock we allow for.
DOCK_SIZES = [(1280, 290), (1600, 400)]
#: A form field wider than this is stretched across the dock, not sized for its content.
SENSIBLE_FIELD_WIDTH = 450


def rect_in(widget, ancestor) -> QRect:
    return QRect(widget.mapTo(ancestor, widget.rect().topLeft()), widget.size())


@pytest.mark.parametrize("size", DOCK_SIZES)
@pytest.mark.parametrize("method", list(METHOD_PARAMS))
def test_attribution_controls_stay_in_view_and_keep_their_width(qtbot, size, method, job_runner):
    panel = AttributionPanel(runner=job_runner.lanes("images"))
    qtbot.addWidget(panel)
    panel.resize(*size)
    panel.show()
    qtbot.waitExposed(panel)
    panel.set_method(method)
    qtbot.wait(20)  # the layout settles after rows are shown or hidden
    # It fits the dock: a dock cannot shrink its panel below the panel's minimum size.
    assert panel.minimumSizeHint().height() <= size[1] and panel.height() == size[1]
    fields = [panel.method_combo, panel.target_combo] + [w for k, (_, w) in panel._rows.items()
                                                         if k in METHOD_PARAMS[method]]
    controls = [panel.run_button, panel.cancel_button, panel.display_combo, panel.opacity_slider,
                panel.export_button]
    for w in fields + controls:
        assert w.isVisible()
        assert panel.rect().contains(rect_in(w, panel)), f"{w} lies outside the panel"
    for w in fields:
        assert w.width() <= SENSIBLE_FIELD_WIDTH
    # The rest of the dock shows the image and its heatmap.
    view = rect_in(panel.view, panel)
    assert view.width() >= size[0] - 500 and view.height() >= size[1] - 40
    panel.shutdown()


def test_empty_share_charts_show_a_line_of_text_not_an_axis(qtbot, job_runner):
    panel = BranchSharePanel(runner=job_runner.lanes("images"))
    qtbot.addWidget(panel)
    panel.resize(1280, 290)
    panel.show()
    qtbot.waitExposed(panel)
    for chart in (panel.network_chart, panel.block_chart):
        assert chart.placeholder.isVisible() and chart.placeholder.text()
        plot = chart.canvas if isinstance(chart, NetworkShareChart) else chart.plot
        assert not plot.isVisible()  # no 0.1–0.9 axis for no data
    panel.shutdown()


def test_charts_with_shares_show_their_axes_and_clearing_brings_the_text_back(qtbot):
    network, block = NetworkShareChart(), BranchShareChart()
    for chart in (network, block):
        qtbot.addWidget(chart)
        chart.resize(800, 300)
        chart.show()
        qtbot.waitExposed(chart)
    shares = {"inception3a": [0.1, 0.2, 0.3, 0.4], "inception3b": [0.4, 0.3, 0.2, 0.1]}
    labels = {b: ["#1×1", "#3×3 reduce → #3×3", "#5×5 reduce → #5×5", "pool proj"] for b in shares}
    network.set_shares(shares, labels)
    block.set_block("inception3a", shares["inception3a"], labels["inception3a"])
    assert network.canvas.isVisible() and not network.placeholder.isVisible()
    assert block.plot.isVisible() and not block.placeholder.isVisible()
    assert list(block.bars.opts["height"]) == shares["inception3a"]  # the bars drawn
    network.clear()
    block.clear()
    assert network.placeholder.isVisible() and not network.canvas.isVisible()
    assert block.placeholder.isVisible() and not block.plot.isVisible()
    network.set_shares({}, {})  # nothing computed: still the text
    assert network.placeholder.isVisible()
