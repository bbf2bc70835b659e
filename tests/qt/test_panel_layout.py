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
    # The rest of the dock shows the image and its heatmap, with how it is shown (the display row) under it.
    view = rect_in(panel.view, panel)
    under = panel.display_row.height() + panel.map_box.layout().spacing()
    assert view.width() >= size[0] - 500 and view.height() >= size[1] - 40 - under
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


RUN_MS = 120_000


def drawn_rect(view, item) -> QRect:
    """Where a graphics item of a pyqtgraph view is drawn, in the view's pixels."""
    return view.mapFromScene(item.mapRectToScene(item.boundingRect())).boundingRect()


@pytest.fixture
def attributed_window(sized_window, qtbot):
    """attributed_window(w, h) -> the window of that size with GoogLeNet's Grad-CAM of a sample photo on
    inception4a and its deletion and insertion curves in the Attributions dock (random weights)."""
    from explorer.core.model.samples import sample_images

    def make(width, height):
        w = sized_window(width, height)
        panel = w.images.attribution
        w.images.attribution_dock.raise_()
        w.images.classify.classify_paths([sample_images()[0].path])
        qtbot.waitUntil(lambda: panel.x is not None, timeout=RUN_MS)
        panel.set_method("grad_cam")
        panel.set_gradcam_layer("inception4a")
        with qtbot.waitSignal(panel.attribution_finished, timeout=RUN_MS):
            panel.run()
        panel.curve_steps.setValue(4)
        with qtbot.waitSignal(panel.faithfulness_finished, timeout=RUN_MS):
            panel.run_faithfulness()
        qtbot.wait(100)  # the splitter makes room for the evidence on the next turn of the event loop
        return w

    return make


@pytest.mark.parametrize("size", WINDOW_SIZES)
def test_the_attribution_map_grows_with_the_dock_beside_its_evidence(attributed_window, size):
    """Issue 25: with the evidence under the map, a laptop's 339 px dock drew the map 94 px tall (404 px: ~120);
    beside it, the map takes most of the dock's height, whole, with its title whole."""
    w = attributed_window(*size)
    dock, panel = w.images.attribution_dock, w.images.attribution
    view = panel.view
    drawn = drawn_rect(view, view.image_item)
    assert drawn.height() >= 0.6 * dock.height(), (drawn, dock.height())
    assert view.rect().contains(drawn)
    # The evidence is beside the map, not under it, and the map's title is drawn whole ("cowboy bo…" was cut).
    assert rect_in(panel.evidence_tabs, panel).left() >= rect_in(view, panel).right()
    title = view.title
    assert view.rect().contains(view.mapFromScene(title.mapRectToScene(title.itemRect())).boundingRect())


@pytest.mark.parametrize("size", WINDOW_SIZES)
def test_the_curves_and_their_verdict_are_readable_and_the_legend_covers_no_data(attributed_window, size):
    """Issue 25: at 1280×800 the curves' plot was 68 px tall, its data area 8 px wide beside the legend (which
    overlapped it), its y label cut, and the verdict under it cut mid-line ("…network that has not learned")."""
    w = attributed_window(*size)
    panel = w.images.attribution
    assert panel.plot_box.isVisible()
    plot = panel.curve_plot
    area = plot.getPlotItem().vb.sceneBoundingRect()
    assert area.height() >= 80 and area.width() >= 150, area
    legend = panel.curve_legend.sceneBoundingRect()
    assert not legend.intersects(area), (legend, area)
    # The legend and both axes' labels are drawn whole inside the plot.
    inside = plot.mapToScene(plot.viewport().rect()).boundingRect()
    for name in ("left", "bottom"):
        label = plot.getAxis(name).label
        m = label.document().documentMargin()  # blank around the text
        assert inside.contains(label.mapRectToScene(label.boundingRect().adjusted(m, m, -m, -m))), name
    assert inside.contains(legend), (legend, inside)
    # The verdict, with its random-weights caveat, shows whole: laid out at its full height, all of it in view.
    caption, scroll = panel.curve_caption, panel.plot_box.caption_scroll
    assert "mean nothing" in caption.text()
    needed = caption.heightForWidth(caption.width())
    assert caption.height() >= needed and scroll.viewport().height() >= needed, (needed, scroll.viewport().height())
    # So does the status line in the column of controls.
    assert panel.status.height() >= panel.status.heightForWidth(panel.status.width())
