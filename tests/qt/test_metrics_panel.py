"""Issue 27's metrics in the Attributions tab: the Metrics button measures the map on screen (SRG, ROAD, smooth and
efficient MPRT, over noise seeds) and the Metrics tab shows each value with its interval beside its reference's, a
verdict only where the interval clears the reference, and the drawn shape's localisation; the methods table shows the
metric cells and ranks methods only where the metrics agree. The texts are checked against the record's scores
formatted by hand and the intervals compared by hand, on the trained demo model and its drawn star."""

import dataclasses

import numpy as np
import pytest
from PIL import Image

from explorer.core.attribution.metrics import MetricScore
from explorer.core.demo.drawing import draw_images
from explorer.core.demo.samples import SAMPLE_SEED
from explorer.core.demo.task import SHAPE_CLASSES
from explorer.core.graph.capture import CaptureModel
from explorer.core.model.graphs import zoo_block_graph
from explorer.core.model.loading import load_model
from explorer.core.model.zoo import get_spec
from explorer.core.session.state import ExplorerState, ImageInput
from explorer.qt.attribution.attribution_evidence import TABLE_COLUMNS
from explorer.qt.attribution.attribution_panel import AttributionPanel
from explorer.qt.panels import UNLEARNED

RUN_MS = 60_000
STAR = SHAPE_CLASSES.index("star")
NAMES = {"SRG": "srg", "ROAD": "road", "smooth MPRT": "smooth_mprt", "efficient MPRT": "efficient_mprt"}


@pytest.fixture(scope="module")
def demo():
    graph = zoo_block_graph("shapes_inception")
    loaded = load_model("shapes_inception")
    assert not loaded.weights.is_random
    return graph, CaptureModel(loaded.module, graph).eval(), list(loaded.categories)


@pytest.fixture
def panel(qtbot, demo, job_runner):
    graph, cm, categories = demo
    state = ExplorerState()
    p = AttributionPanel(runner=job_runner.lanes("images"), explorer_state=state)
    qtbot.addWidget(p)
    p.resize(1100, 600)
    p.show()
    p.set_model(cm, graph, categories)
    star = draw_images(len(SHAPE_CLASSES), SAMPLE_SEED)[STAR]
    pil = Image.fromarray(star.image)
    state.image = ImageInput(pil, "<drawn star>", mask=star.mask)
    p.set_image(get_spec("shapes_inception").transforms()(pil)[None], star.image, top1=STAR)
    yield p
    p.shutdown()


def run(qtbot, panel, method):
    panel.set_method(method)
    with qtbot.waitSignal(panel.attribution_finished, timeout=RUN_MS):
        panel.run_button.click()
    panel.curve_steps.setValue(4)  # SRG's removal steps: few, to keep the test short
    with qtbot.waitSignal(panel.metrics_finished, timeout=RUN_MS) as sig:
        panel.metrics_button.click()
    return sig.args[0]


def by_hand(score):
    """(value text, reference text, verdict) from the score's own numbers, formatted and compared here."""
    lo, hi = float(np.min(score.values)), float(np.max(score.values))
    value = f"{lo:.3f}" if f"{lo:.3f}" == f"{hi:.3f}" else f"{np.mean(score.values):.3f} [{lo:.3f}, {hi:.3f}]"
    r_lo, r_hi = float(np.min(score.reference)), float(np.max(score.reference))
    ref = f"{r_lo:.3f}" if f"{r_lo:.3f}" == f"{r_hi:.3f}" else f"[{r_lo:.3f}, {r_hi:.3f}]"
    cleared = lo > r_hi + 1e-3 if score.higher_is_better else hi < r_lo - 1e-3
    return value, ref, cleared


def test_the_metrics_tab_shows_intervals_references_and_verdicts(qtbot, panel):
    record = run(qtbot, panel, "saliency")
    tabs = panel.evidence_tabs
    assert tabs.currentWidget() is tabs.metrics and tabs.isTabVisible(tabs.indexOf(tabs.metrics))
    table = tabs.metrics.table
    rows = {table.item(r, 0).text(): [table.item(r, c).text() for c in range(1, 4)] for r in range(table.rowCount())}
    assert set(NAMES) <= set(rows) and {"Pointing game", "Inside share"} <= set(rows)
    for label, name in NAMES.items():
        value, ref, cleared = by_hand(record.metrics[name])
        shown_value, shown_ref, verdict = rows[label]
        assert shown_value == value and shown_ref.startswith(ref + " ")
        beats = "✓ changes with the weights" if "MPRT" in label else "✓ beats random"
        assert (verdict == beats) == cleared and (verdict.startswith("✓")) == cleared
    assert "noise seeds" in tabs.metrics.caption.text()
    # The learned network's gradient map clears SRG's random orders (measured: 0.44 against ±0.18).
    assert rows["SRG"][2] == "✓ beats random"
    # The methods table's metric cells: the interval over seeds, ✗ where it does not clear the reference.
    for label, column in (("SRG", "SRG"), ("ROAD", "ROAD"), ("smooth MPRT", "Smooth MPRT")):
        score = record.metrics[NAMES[label]]
        lo, hi = f"{np.min(score.values):.3f}", f"{np.max(score.values):.3f}"
        _, _, cleared = by_hand(score)
        text = panel.table.item(0, TABLE_COLUMNS.index(column)).text()
        assert text == (lo if lo == hi else f"[{lo}, {hi}]") + ("" if cleared else " ✗")
    assert panel.table.item(0, TABLE_COLUMNS.index("Time")).text().split(", ")[-1].startswith("metrics ")
    # Scores that do not clear their references get no verdict: an overlap, and an interval on the wrong side.
    made = dataclasses.replace(record, metrics={"srg": MetricScore("srg", [0.05], [-0.1, 0.1], True),
                                                "road": MetricScore("road", [-0.3, -0.2], [-0.1, 0.1], True)})
    tabs.metrics.show_metrics(made, panel.categories, None)
    assert [[table.item(r, c).text() for c in (0, 1, 3)] for r in range(table.rowCount())] == [
        ["SRG", "0.050", "not distinguishable"], ["ROAD", "-0.250 [-0.300, -0.200]", "no better than random"]]
    # Drawn for a network with random weights: no verdict, and the caption says the numbers mean nothing.
    tabs.metrics.show_metrics(record, panel.categories, None, unlearned=True)
    assert [table.item(r, 3).text() for r in range(table.rowCount())] == ["meaningless: random weights"] * 4
    assert UNLEARNED[1:] in tabs.metrics.caption.text()


def test_the_methods_table_declines_to_rank_where_the_metrics_disagree(qtbot, panel):
    first = run(qtbot, panel, "saliency")
    panel.set_method("grad_cam")
    panel.set_gradcam_layer(panel.graph.blocks()[-1].name, None)
    with qtbot.waitSignal(panel.attribution_finished, timeout=RUN_MS):
        panel.run_button.click()
    state = panel.explorer_state
    second = state.attributions[1]
    assert second is not None and panel.ranking_label.text() == ""  # one map measured: nothing to rank

    def scores(srg, road):
        return {"srg": MetricScore("srg", srg, [-0.2, 0.2], True), "road": MetricScore("road", road, [-0.1, 0.1], True)}

    # SRG puts Grad-CAM first, ROAD puts Saliency first: no ranking, and the line says so.
    state.attributions = (dataclasses.replace(first, metrics=scores([0.44], [0.35, 0.36])),
                          dataclasses.replace(second, metrics=scores([0.59], [0.24, 0.25])))
    text = panel.ranking_label.text()
    assert panel.ranking_label.isVisible() and text.startswith("No ranking: ")
    assert "SRG puts Grad-CAM (" in text and "first, ROAD puts Saliency first" in text
    # Intervals that overlap on ROAD: no ranking either.
    state.attributions = (dataclasses.replace(first, metrics=scores([0.44], [0.30, 0.36])),
                          dataclasses.replace(second, metrics=scores([0.59], [0.34, 0.40])))
    assert "overlap on ROAD" in panel.ranking_label.text()
    # Both metrics put Grad-CAM first with intervals apart: ranked.
    state.attributions = (dataclasses.replace(first, metrics=scores([0.44], [0.20, 0.22])),
                          dataclasses.replace(second, metrics=scores([0.59], [0.34, 0.40])))
    text = panel.ranking_label.text()
    assert text.startswith("Ranking (SRG and ROAD agree") and text.index("Grad-CAM") < text.index("Saliency")
