"""The attribution panel's evidence: deletion / insertion curves beside the map, the table of methods
computed for the image (kept in ExplorerState.attributions), and the sanity check's strip of maps."""

import numpy as np
import pytest
import torch
from netutil import calibrated_model, synthetic_batch
from scipy.stats import spearmanr

from explorer.core.attribution.methods import attribute
from explorer.core.graph.capture import CaptureModel
from explorer.core.attribution.faithfulness import AttributionRecord, SanityCheck, faithfulness_curves, sanity_check
from explorer.core.session.state import ExplorerState
from explorer.core.model.zoo import get_spec
from explorer.qt.attribution.attribution_evidence import COL_DELETION, COL_INSERTION, COL_SANITY, TABLE_COLUMNS
from explorer.qt.attribution.attribution_panel import AttributionPanel
from explorer.core.model.graphs import zoo_block_graph as load_block_graph

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
SIZE = 64
RUN_MS = 60_000
LAST_BLOCK = "inception5b"


def _image(x):
    return ((x * STD + MEAN)[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()


@pytest.fixture(scope="module")
def setup():
    graph = load_block_graph("googlenet")
    cm = CaptureModel(calibrated_model("googlenet"), graph)
    xs = (synthetic_batch(4, SIZE, torch.Generator().manual_seed(11)) - MEAN) / STD
    return graph, cm, xs[1:2], xs[3:4], get_spec("googlenet").categories()


@pytest.fixture
def state():
    return ExplorerState()


@pytest.fixture
def panel(qtbot, setup, state, job_runner):
    graph, cm, x, _, categories = setup
    p = AttributionPanel(runner=job_runner.lanes("images"), explorer_state=state)
    qtbot.addWidget(p)
    p.resize(1100, 600)
    p.show()
    p.set_model(cm, graph, categories)
    p.set_image(x, _image(x))
    yield p
    p.shutdown()


def compute_map(qtbot, panel, method, block=None, branch=None):
    panel.set_method(method)
    if block is not None:
        panel.set_gradcam_layer(block, branch)
    with qtbot.waitSignal(panel.attribution_finished, timeout=RUN_MS) as sig:
        panel.run_button.click()
    return sig.args[0]


def test_the_plotted_curves_are_the_maps_deletion_and_insertion_curves(qtbot, panel, setup):
    """The panel's curves are the map's, deleting to the image blurred (the window's substrate), and say so."""
    _, cm, x, _, _ = setup
    assert not panel.faithfulness_button.isEnabled()  # no map yet
    result = compute_map(qtbot, panel, "saliency")
    assert panel.faithfulness_button.isEnabled()
    panel.curve_steps.setValue(12)
    with qtbot.waitSignal(panel.faithfulness_finished, timeout=RUN_MS):
        panel.faithfulness_button.click()
        assert panel.attributions.running() and not panel.faithfulness_button.isEnabled()
    # Independently: the map recomputed from scratch, its curves computed outside the panel.
    heat = attribute(cm, x, "saliency", result.target).heatmap
    np.testing.assert_array_equal(heat, result.heatmap)
    ref = faithfulness_curves(cm, x, heat, result.target, steps=12, deletion_substrate="blur")
    for kind, c in ref.items():
        xs, ys = panel.curve_items[kind].getData()
        np.testing.assert_allclose(xs, np.linspace(0, 1, 13))
        np.testing.assert_allclose(ys, c.scores, rtol=1e-5, atol=1e-6)
        _, rs = panel.curve_items[f"{kind}_random"].getData()
        np.testing.assert_allclose(rs, c.random_scores, rtol=1e-5, atol=1e-6)
        legend = {label.text for _, label in panel.curve_legend.items}
        assert f"{kind} AUC {c.auc:.3f}" in legend and f"random order {c.random_auc:.3f}" in legend
        assert f"{c.auc:.3f} vs {c.random_auc:.3f}" in panel.curve_caption.text()
    # Beside the curves, what the pixels became: the image blurred, for deletion as for insertion.
    assert "Deleted to the image blurred; inserted into the image blurred." in panel.curve_caption.text()
    assert "not a flat colour" in panel.curve_caption.toolTip()
    row = [panel.table.item(0, col).text() for col in range(panel.table.columnCount())]
    assert row[COL_DELETION].startswith(f"{ref['deletion'].auc:.3f} ({ref['deletion'].random_auc:.3f})")
    assert row[COL_INSERTION].startswith(f"{ref['insertion'].auc:.3f} ({ref['insertion'].random_auc:.3f})")


def test_a_second_maps_curves_reuse_the_random_references(qtbot, panel, setup, state):
    """The random order does not depend on the map: the second map's curves classify only their own
    images, and equal the curves computed from scratch outside the panel."""
    from explorer.core.attribution.faithfulness import RANDOM_ORDERS, curve_images

    _, cm, x, _, _ = setup
    panel.curve_steps.setValue(12)
    classified = []
    for method, block in (("saliency", None), ("grad_cam", LAST_BLOCK)):
        result = compute_map(qtbot, panel, method, block)
        seen = []
        hook = cm.register_forward_pre_hook(lambda m, args: seen.append(len(args[0])))
        try:
            with qtbot.waitSignal(panel.faithfulness_finished, timeout=RUN_MS) as sig:
                panel.faithfulness_button.click()
        finally:
            hook.remove()
        classified.append(sum(seen))
    assert classified == [curve_images(12), curve_images(12) - RANDOM_ORDERS * 2 * 11]  # no random-order image again
    ref = faithfulness_curves(cm, x, result.heatmap, result.target, steps=12)
    for kind, c in ref.items():
        np.testing.assert_allclose(sig.args[0].curves[kind].random_scores, c.random_scores, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(sig.args[0].curves[kind].scores, c.scores, rtol=1e-5, atol=1e-6)
    assert len(state.attributions) == 2 and all(rec.curves for rec in state.attributions)


def test_the_table_has_one_row_per_method_computed_for_the_image(qtbot, panel, state):
    compute_map(qtbot, panel, "saliency")
    compute_map(qtbot, panel, "grad_cam", LAST_BLOCK)
    compute_map(qtbot, panel, "grad_cam", LAST_BLOCK, 1)
    compute_map(qtbot, panel, "saliency")  # the same method again replaces its row
    assert panel.table.rowCount() == len(state.attributions) == 3
    rows = [(panel.table.item(r, 0).text(), panel.table.item(r, 1).text()) for r in range(3)]
    assert rows == [("Saliency", "input"), ("Grad-CAM", LAST_BLOCK), ("Grad-CAM", state.attributions[2].result.layer)]
    assert state.attributions[2].result.layer != LAST_BLOCK  # the branch's own row
    assert all(panel.table.item(r, TABLE_COLUMNS.index("Time")).text().startswith("map ") for r in range(3))


def test_results_are_cleared_when_the_image_or_the_model_changes(qtbot, panel, setup, state):
    graph, cm, x, other, categories = setup
    compute_map(qtbot, panel, "saliency")
    # No evidence yet: the overlay has the panel to itself (no empty axes, no empty table).
    assert not panel.plot_box.isVisible() and not panel.evidence_tabs.isVisible()
    panel.curve_steps.setValue(4)
    with qtbot.waitSignal(panel.faithfulness_finished, timeout=RUN_MS):
        panel.run_faithfulness()
    assert panel.table.rowCount() == 1 and len(panel.curve_items["deletion"].getData()[1]) == 5
    assert panel.plot_box.isVisible() and panel.evidence_tabs.isVisible()
    panel.set_image(other, _image(other))
    assert not panel.plot_box.isVisible() and not panel.evidence_tabs.isVisible()
    assert state.attributions == () and panel.table.rowCount() == 0 and panel.result is None
    assert panel.curve_items["deletion"].getData()[1] is None or len(panel.curve_items["deletion"].getData()[1]) == 0
    assert not panel.faithfulness_button.isEnabled() and not panel.sanity_button.isEnabled()
    compute_map(qtbot, panel, "saliency")
    assert panel.table.rowCount() == 1
    # A model switch in the window's state clears the table too, and the image the maps were for (the panel
    # follows the state's result key): a map needs the next model's image.
    state.begin_model("inception_v3", get_spec("inception_v3"))
    assert panel.table.rowCount() == 0 and panel.x is None and panel.result is None
    panel.set_image(x, _image(x))
    compute_map(qtbot, panel, "saliency")
    panel.set_model(cm, graph, categories)
    assert state.attributions == () and panel.table.rowCount() == 0


def test_cancelling_the_curves_leaves_the_panel_usable(qtbot, panel):
    compute_map(qtbot, panel, "saliency")
    panel.curve_steps.setValue(1000)  # about 240 batched forwards: long enough to cancel midway
    failures = []
    panel.attribution_failed.connect(failures.append)
    panel.faithfulness_button.click()
    qtbot.waitUntil(lambda: panel.progress.maximum() > 0 and panel.progress.value() >= 1, timeout=RUN_MS)
    with qtbot.waitSignal(panel.attribution_cancelled, timeout=10_000):
        panel.cancel_button.click()
    assert failures == [] and "Faithfulness cancelled" in panel.status.text()
    assert panel.run_button.isEnabled() and panel.faithfulness_button.isEnabled() and panel.sanity_button.isEnabled()
    assert panel.table.item(0, COL_DELETION).text() == "—"
    panel.curve_steps.setValue(4)
    with qtbot.waitSignal(panel.faithfulness_finished, timeout=RUN_MS) as sig:
        panel.faithfulness_button.click()
    assert len(sig.args[0].curves["deletion"].scores) == 5


def test_the_sanity_strip_shows_each_randomised_map_and_its_correlation(qtbot, panel, setup):
    _, cm, x, _, _ = setup
    result = compute_map(qtbot, panel, "grad_cam", LAST_BLOCK)
    k = 3
    panel.sanity_steps.setValue(k)
    with qtbot.waitSignal(panel.sanity_finished, timeout=RUN_MS):
        panel.sanity_button.click()
    assert len(panel.sanity_items) == len(panel.sanity_labels) == k + 1
    # Independently: the same cascade (same seed) on the same network, correlations by scipy.
    ref = sanity_check(cm, lambda m: attribute(m, x, "grad_cam", result.target, node=LAST_BLOCK).heatmap,
                       k=k, original=result.heatmap)
    shown = [item.image for item in panel.sanity_items]
    np.testing.assert_allclose(shown[0], np.abs(result.heatmap), rtol=1e-6)
    for i, m in enumerate(ref.maps):
        np.testing.assert_allclose(shown[i + 1], np.abs(m), rtol=1e-5, atol=1e-7)
        rho = spearmanr(np.abs(result.heatmap).ravel(), np.abs(m).ravel()).statistic
        assert f"ρ {rho:.2f}" in panel.sanity_labels[i + 1].text
        assert ref.blocks[i] in panel.sanity_labels[i + 1].text
    assert "original" in panel.sanity_labels[0].text
    assert ref.correlations[-1] < 0.9 and "changes" in panel.sanity_caption.text()  # Grad-CAM passes
    assert panel.table.item(0, COL_SANITY).text().startswith("passes")


def test_a_map_that_does_not_change_is_flagged(qtbot, panel, state):
    """A row whose cascade left the map as it was: the strip says so in the warning colour."""
    result = compute_map(qtbot, panel, "saliency")
    same = result.heatmap * 2  # a rescaled map ranks its pixels exactly as the original
    check = SanityCheck(["inception5b"], [0.99], [same])
    state.attributions = (AttributionRecord(result, 0.1, sanity=check),)
    panel.table.selectRow(0)
    assert "does not change" in panel.sanity_caption.text() and "⚠" in panel.sanity_caption.text()
    assert panel.table.item(0, COL_SANITY).text() == "unchanged (ρ 0.99)"


def test_evidence_without_a_map_is_an_error_in_the_window(qtbot, panel):
    with qtbot.waitSignal(panel.attribution_failed) as sig:
        panel.run_sanity_check()
    assert "map first" in sig.args[0] and panel.status.text().startswith("Sanity check failed")
    assert not panel.attributions.running()


def test_in_a_laptops_dock_the_map_and_the_curves_have_room_and_the_legend_covers_no_curve(qtbot, panel):
    """In a 1280×800 laptop's Attributions dock (about 1260×290) with a map, its curves and the methods table:
    the map is drawn at least 70 px tall (it was ~15–57 px), the curves' plot area at least 60 px (~15–30 px),
    and the curves' legend lies outside that area (it covered the curves)."""
    compute_map(qtbot, panel, "saliency")
    panel.curve_steps.setValue(4)
    with qtbot.waitSignal(panel.faithfulness_finished, timeout=RUN_MS):
        panel.run_faithfulness()
    panel.resize(1260, 290)
    qtbot.wait(100)
    image = panel.view.image_item.mapRectToScene(panel.view.image_item.boundingRect())
    assert panel.view.mapFromScene(image).boundingRect().height() >= 70
    plot = panel.curve_plot.getPlotItem()
    area = plot.vb.sceneBoundingRect()
    assert area.height() >= 60, area
    legend = panel.curve_legend.sceneBoundingRect()
    assert not legend.intersects(area) and legend.top() >= area.bottom() - 1  # under it, not over it
