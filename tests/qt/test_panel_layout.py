"""The attribution and branch-share docks at the window's default size (1280×860: docks ~1280×290), and the
window's default layout on a 1280×800 laptop (window 1264×760) and at 1280×860.

No model is needed for the panels: these are their layouts and their empty states; the window's tests draw
GoogLeNet with random weights."""

import pytest
from PySide6.QtCore import QRect, QSettings

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


#: The window's size on a 1280×800 laptop (its free area less a frame) and its default size (1600×1000 screen).
WINDOW_SIZES = [(1264, 760), (1280, 860)]


@pytest.fixture
def sized_window(qtbot, tmp_path):
    """sized_window(w, h) -> a MainWindow of that size, shown, its GoogLeNet drawn and its image docks built."""
    from explorer.qt.window.main_window import MainWindow
    from tests.qt.conftest import GRAPH_TIMEOUT_MS

    made = []

    def make(width, height):
        w = MainWindow("googlenet", weights="none", allow_download=False, restore=False, classify_sample=False,
                       settings=QSettings(str(tmp_path / "layout.ini"), QSettings.Format.IniFormat))
        qtbot.addWidget(w)
        made.append(w)
        w.resize(width, height)  # before the image docks are built: they take their share of this height
        with qtbot.waitSignal(w.graph_ready, timeout=GRAPH_TIMEOUT_MS):
            w.show()
        qtbot.waitUntil(lambda: w.images is not None and w.state.graph is not None
                        and not getattr(w.state.graph, "is_preview", False), timeout=GRAPH_TIMEOUT_MS)
        qtbot.wait(50)
        return w

    yield make
    for w in made:
        if w.images is not None:
            w.images.shutdown()
        w.jobs.cancel_all()
        w.jobs.wait(30000)


@pytest.mark.parametrize("size", WINDOW_SIZES)
def test_the_image_docks_get_half_the_height_and_the_graph_stays_usable(sized_window, size):
    """At 340 px the attribution map was drawn ~80 px tall on a laptop."""
    w = sized_window(*size)
    dock = w.images.classify_dock
    assert dock.height() >= 0.44 * w.height(), (dock.height(), w.height())
    assert w.view.viewport().height() >= 200 and w.view.viewport().width() >= 800


@pytest.mark.parametrize("size", WINDOW_SIZES)
def test_details_show_a_blocks_rows_and_branches_without_scrolling(sized_window, qtbot, size):
    """Details took the graph's height and cut inception4a's branch table at its third row."""
    w = sized_window(*size)
    assert w.view.select("inception4a")
    qtbot.waitUntil(lambda: w.details.node_name == "inception4a")
    details = w.details
    assert details.document().size().height() <= details.viewport().height()
    assert not details.verticalScrollBar().isVisible()
    # Details run from the toolbar to the status bar; the image docks share the bottom with the graph only.
    assert w.details_dock.geometry().bottom() > w.images.classify_dock.geometry().top()


@pytest.mark.parametrize("size", WINDOW_SIZES)
def test_an_opened_block_is_shown_whole_and_readable(sized_window, qtbot, size):
    w = sized_window(*size)
    view = w.view
    assert view.select("inception4a")
    w.graph_page._on_box_activated("inception4a")  # what a double-click on the box does
    assert "inception4a" in w.state.expanded
    frame = view.node_rect("inception4a")
    visible = view.mapToScene(view.viewport().rect()).boundingRect()
    assert visible.contains(frame), (frame, visible)
    assert view.zoom() >= view.readable_zoom()


def test_four_branch_mosaics_fit_the_activation_dock_beside_details(qtbot):
    """Beside the Details column the mosaics get ~510 px: labels on one or two lines made the columns
    ~750 px wide, and the fourth branch fell out of sight."""
    from explorer.qt.microscope.branch_mosaics import BranchMosaics

    grid = BranchMosaics()
    qtbot.addWidget(grid)
    grid.set_branches(["1 · #1×1 · 192 ch", "2 · #3×3 reduce → #3×3 · 208 ch",
                       "3 · #5×5 reduce → #5×5 (3×3 kernel) · 48 ch", "4 · 3×3 max pool → pool proj · 64 ch"],
                      ["mean 0.000502 · max 0.00433 · zeros 48 % · energy 59 %"] * 4)
    assert grid.ci.minimumWidth() <= 500
