"""AttributionPanel and BranchSharePanel: methods and parameters, worker runs, cancel, Grad-CAM on a branch,
branch-share charts, exports."""

import csv
import threading
import time

import numpy as np
import pytest
import torch
from netutil import calibrated_model, synthetic_batch
from PySide6.QtCore import QPoint, QPointF, Qt

from explorer.core.attribution.methods import IG_GAUSS_LEGENDRE_MAX_STEPS, IG_MAX_STEPS
from explorer.core.graph.capture import CaptureModel
from explorer.core.model.zoo import get_spec
from explorer.core.session.attributions import SHARES
from explorer.qt.attribution.attribution_panel import AttributionPanel
from explorer.qt.attribution.branch_share_chart import BranchSharePanel
from explorer.core.model.graphs import zoo_block_graph as load_block_graph

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
SIZE = 64
RUN_MS = 60_000


@pytest.fixture(scope="module")
def setup():
    graph = load_block_graph("googlenet")
    cm = CaptureModel(calibrated_model("googlenet"), graph)
    x = (synthetic_batch(2, SIZE, torch.Generator().manual_seed(11))[1:2] - MEAN) / STD
    image = ((x * STD + MEAN)[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
    return graph, cm, x, image, get_spec("googlenet").categories()


@pytest.fixture
def panel(qtbot, setup, job_runner):
    graph, cm, x, image, categories = setup
    p = AttributionPanel(runner=job_runner.lanes("images"))
    qtbot.addWidget(p)
    p.resize(500, 700)
    p.show()
    p.set_model(cm, graph, categories)
    p.set_image(x, image)
    yield p
    p.shutdown()


def shown_parameters(panel) -> list[str]:
    """The parameter rows the form shows for the method chosen."""
    return [k for k, (_, w) in panel._rows.items() if panel.form.isRowVisible(w)]


def test_switching_method_shows_its_parameters(panel):
    panel.method_combo.setCurrentIndex(panel.method_combo.findData("integrated_gradients"))
    assert shown_parameters(panel) == ["ig_steps", "ig_baseline", "internal_batch_size"]
    assert panel.ig_steps.isVisible() and not panel.occlusion_window.isVisible()
    panel.method_combo.setCurrentIndex(panel.method_combo.findData("occlusion"))
    assert panel.state.method == "occlusion"
    assert shown_parameters(panel) == ["occlusion_window", "occlusion_stride"]
    assert panel.occlusion_window.isVisible() and not panel.ig_steps.isVisible()
    panel.set_method("grad_cam")
    assert shown_parameters(panel) == ["block", "branch", "cam_map"] and panel.block_combo.isVisible()
    panel.set_method("saliency")
    assert shown_parameters(panel) == []


def test_the_controls_write_the_parameters_into_the_state(panel):
    """What runs is read from the panel's state, which every control writes as it changes."""
    panel.ig_steps.setValue(77)
    panel.ig_baseline.setCurrentIndex(panel.ig_baseline.findData("blur"))
    panel.internal_batch.setValue(8)
    panel.occlusion_window.setValue(40)
    panel.occlusion_stride.setValue(20)
    panel.cam_map.setCurrentIndex(panel.cam_map.findData("signed"))
    panel.curve_steps.setValue(12)
    panel.sanity_steps.setValue(3)
    p = panel.state.params
    assert (p.ig_steps, p.ig_baseline, p.internal_batch_size) == (77, "blur", 8)
    assert (p.occlusion_window, p.occlusion_stride, p.cam_map) == (40, 20, "signed")
    assert (panel.state.curve_steps, panel.state.sanity_steps) == (12, 3) and panel.params() == p
    panel.block_combo.setCurrentIndex(panel.block_combo.findText("inception4a"))
    panel.branch_combo.setCurrentIndex(panel.branch_combo.findData(2))
    assert (panel.state.block, panel.state.branch) == ("inception4a", 2)


def test_target_search_finds_a_category(panel, setup):
    categories = setup[4]
    assert panel.target() is None  # top-1 by default
    tabby = categories.index("tabby")
    panel.target_combo.setEditText("tabby")
    assert panel.target() == tabby
    panel.target_combo.setEditText("no such animal")
    with pytest.raises(ValueError):
        panel.target()


def test_saliency_runs_in_a_worker_and_overlays_the_image(qtbot, panel, setup):
    *_, image, categories = setup
    target = categories.index("goldfish")
    panel.set_method("saliency")
    panel.target_combo.setCurrentIndex(panel.target_combo.findData(target))  # as a person picks it
    with qtbot.waitSignal(panel.attribution_finished, timeout=RUN_MS) as sig:
        panel.run_button.click()
        assert panel.attributions.running() and not panel.run_button.isEnabled()
    result = sig.args[0]
    assert result.method == "saliency" and result.target == target
    assert result.heatmap.shape == image.shape[:2]
    assert panel.heat_item.image.shape == image.shape[:2]
    assert not panel.attributions.running() and panel.run_button.isEnabled() and not panel.progress.isVisible()
    assert "goldfish" in panel.status.text() and "done" in panel.status.text()


def test_cancelling_integrated_gradients_returns_to_idle(qtbot, panel):
    panel.set_method("integrated_gradients")
    # Many steps, one per forward: a run of minutes.
    panel.ig_steps.setValue(400)
    panel.internal_batch.setValue(1)
    failures = []
    panel.attribution_failed.connect(failures.append)
    panel.run()
    qtbot.waitUntil(lambda: panel.progress.maximum() > 0 and panel.progress.value() >= 1, timeout=RUN_MS)
    with qtbot.waitSignal(panel.attribution_cancelled, timeout=10_000):
        t0 = time.monotonic()
        panel.cancel_button.click()
    assert time.monotonic() - t0 < 5
    assert failures == [] and panel.result is None
    assert not panel.attributions.running() and panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()
    assert "cancelled" in panel.status.text().lower()
    # Planned: per block, 400 batches' forward and backward plus the completeness gap's forward.
    assert panel.progress.maximum() == len(panel.attributions.networks_on("cpu").block_branches) * (2 * 400 + 1)


def test_ig_steps_are_capped_and_the_tooltip_says_why(panel):
    panel.ig_steps.setValue(10 * IG_MAX_STEPS)
    assert panel.ig_steps.value() == panel.ig_steps.maximum() == IG_MAX_STEPS
    tip = panel.ig_steps.toolTip()
    assert str(IG_MAX_STEPS) in tip and str(IG_GAUSS_LEGENDRE_MAX_STEPS) in tip and "trapezoid" in tip
    assert panel.params().ig_steps == IG_MAX_STEPS


def test_grad_cam_on_one_branch(qtbot, panel, setup):
    graph, cm, x, image, _ = setup
    panel.set_method("grad_cam")
    panel.block_combo.setCurrentIndex(panel.block_combo.findText("inception4a"))
    assert panel.branch_combo.count() == 1 + len(graph.node("inception4a").branches)
    panel.branch_combo.setCurrentIndex(panel.branch_combo.findData(2))
    with qtbot.waitSignal(panel.attribution_finished, timeout=RUN_MS) as sig:
        panel.run()
    result = sig.args[0]
    assert result.layer == "inception4a branch 3"
    assert result.raw.shape == tuple(cm.capture(x).branch("inception4a", 2).shape[-2:])
    assert result.heatmap.shape == image.shape[:2]
    assert "inception4a branch 3" in panel.title.text


@pytest.mark.parametrize("method", ["grad_cam_plus_plus", "eigen_cam"])
def test_library_cams_on_one_branch(qtbot, panel, setup, method):
    graph, cm, x, image, _ = setup
    panel.set_method(method)
    assert shown_parameters(panel) == ["block", "branch", "cam_map"]
    panel.block_combo.setCurrentIndex(panel.block_combo.findText("inception4a"))
    panel.branch_combo.setCurrentIndex(panel.branch_combo.findData(1))
    with qtbot.waitSignal(panel.attribution_finished, timeout=RUN_MS) as sig:
        panel.run()
    result = sig.args[0]
    assert result.method == method and result.layer == "inception4a branch 2"
    assert result.heatmap.shape == image.shape[:2]
    assert panel.method_combo.currentText() in panel.title.text


def test_an_empty_cam_is_said_and_the_signed_map_shown(qtbot, panel, setup):
    """Grad-CAM for a class against which every weighted activation argues: the status says so in the
    warning colour, and the signed map shows it."""
    from explorer.core.attribution.methods import attribute

    graph, cm, x, image, _ = setup
    with torch.no_grad():
        order = cm(x)[0].argsort().tolist()
    names = setup[4]
    target = next(t for t in order[:300] if names.count(names[t]) == 1
                  and attribute(cm, x, "grad_cam", t, node="inception4a").notice)
    panel.set_method("grad_cam")
    panel.block_combo.setCurrentIndex(panel.block_combo.findText("inception4a"))
    panel.target_combo.setEditText(names[target])
    assert panel.target() == target
    with qtbot.waitSignal(panel.attribution_finished, timeout=RUN_MS) as sig:
        panel.run()
    assert (sig.args[0].heatmap == 0).all() and "signed or absolute" in panel.status.text()
    assert "c62828" in panel.status.styleSheet().lower()
    panel.cam_map.setCurrentIndex(panel.cam_map.findData("signed"))
    with qtbot.waitSignal(panel.attribution_finished, timeout=RUN_MS) as sig:
        panel.run()
    assert sig.args[0].signed and sig.args[0].heatmap.min() < 0 and sig.args[0].notice is None


def test_integrated_gradients_flags_a_large_delta(qtbot, panel, tmp_path):
    panel.set_method("integrated_gradients")
    panel.ig_steps.setValue(2)
    with qtbot.waitSignal(panel.attribution_finished, timeout=RUN_MS) as sig:
        panel.run()
    result = sig.args[0]
    assert result.delta is not None and result.delta_flagged  # two steps cannot integrate this network
    assert "Gauss–Legendre" in panel.delta_label.text()
    assert "⚠" in panel.delta_label.text() and "increase the steps" in panel.delta_label.text()
    assert result.signed and panel.heat_item.getLevels()[0] < 0  # signed: symmetric diverging scale
    panel.set_display("absolute")
    assert panel.heat_item.getLevels()[0] == 0 and panel.heat_item.image.min() >= 0
    png = panel.export_overlay_png(tmp_path / "overlay.png")
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 1000


def test_a_new_image_clears_the_result_and_errors_reach_the_signal(qtbot, panel, setup):
    panel.set_image(None)
    with qtbot.waitSignal(panel.attribution_failed) as sig:
        panel.run()
    assert "image" in sig.args[0] and not panel.attributions.running()


def shares_running(p) -> bool:
    """Whether the session runs a branch-shares job (the panel's lane)."""
    return p.session.runner.running(SHARES) is not None


def bar_heights(chart) -> np.ndarray:
    """The heights of the bars a branch-shares chart draws."""
    return np.asarray(chart.bars.opts["height"], float)


def test_branch_shares_chart_sums_to_one_per_block(qtbot, setup, tmp_path, job_runner):
    graph, cm, x, _, _ = setup
    p = BranchSharePanel(runner=job_runner.lanes("images"))
    qtbot.addWidget(p)
    p.resize(900, 700)
    p.show()
    p.set_model(cm, graph)
    p.set_image(x)
    with qtbot.waitSignal(p.shares_ready, timeout=RUN_MS) as sig:
        p.compute_button.click()
    shares = sig.args[0]
    blocks = [b.name for b in graph.blocks()]
    assert list(shares) == blocks == p.network_chart.blocks
    np.testing.assert_allclose(p.network_chart.totals(), 1.0, atol=1e-6)
    assert len(p.network_chart.bars) == 4
    assert [it.text for _, it in p.network_chart.legend.items][0].startswith("branch 1 · #1×1")
    chart = p.network_chart
    qtbot.wait(50)  # final layout before mapping positions
    i = blocks.index("inception4c")
    scene_pos = chart.plot.getViewBox().mapViewToScene(QPointF(i, 0.5))
    pos = chart.canvas.mapFromScene(scene_pos)
    with qtbot.waitSignal(p.block_selected) as sel:
        qtbot.mouseClick(chart.canvas.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(pos.x(), pos.y()))
    assert sel.args == ["inception4c"] and p.block_chart.block == "inception4c"
    assert chart.current.isVisible() and chart.current.rect().center().x() == pytest.approx(i)
    np.testing.assert_allclose(bar_heights(p.block_chart), shares["inception4c"])
    assert bar_heights(p.block_chart).sum() == pytest.approx(1.0)
    ticks = p.block_chart.plot.getAxis("bottom")._tickLevels[0]
    # The branches' own labels (torchvision's "#5×5" branch says it has a 3×3 kernel).
    assert [t[1] for t in ticks] == ["1 · #1×1", "2 · #3×3", "3 · #5×5 (3×3 kernel)", "4 · pool proj"]
    for path in (p.export_network_png(tmp_path / "net.png"), p.export_block_png(tmp_path / "block.png")):
        assert path.stat().st_size > 1000
    rows = list(csv.DictReader(p.export_csv(tmp_path / "shares.csv").open(encoding="utf-8")))
    assert len(rows) == 4 * len(blocks)
    assert sum(float(r["share"]) for r in rows if r["block"] == "inception5b") == pytest.approx(1, abs=1e-4)
    p.shutdown()


def test_cancelling_network_shares_returns_to_idle_and_stays_usable(qtbot, setup, job_runner):
    graph, cm, x, _, _ = setup
    p = BranchSharePanel(runner=job_runner.lanes("images"))
    qtbot.addWidget(p)
    p.resize(900, 700)
    p.show()
    p.set_model(cm, graph)
    p.set_image(x)
    assert not p.cancel_button.isEnabled() and not p.progress.isVisible()
    # Hold the worker at the second block until Cancel is clicked: the run is then certainly still going.
    release = threading.Event()
    ui_thread = threading.get_ident()

    late = []  # the last block's passes on the worker: none once it stopped at the second block

    def hold(module, inputs, output):
        if threading.get_ident() != ui_thread:
            release.wait(30)

    handles = [cm.layer("inception3b").register_forward_hook(hold),
               cm.layer("inception5b").register_forward_hook(
                   lambda *a: late.append(1) if threading.get_ident() != ui_thread else None)]
    try:
        p.compute_button.click()
        assert shares_running(p) and p.cancel_button.isEnabled() and p.progress.isVisible()
        assert not p.compute_button.isEnabled()
        qtbot.waitUntil(lambda: p.progress.maximum() > 0 and p.progress.value() >= 1, timeout=RUN_MS)
        with qtbot.waitSignal(p.shares_cancelled, timeout=10_000):
            p.cancel_button.click()
            assert "cancelling" in p.status.text().lower() and not p.cancel_button.isEnabled()
            release.set()
    finally:
        release.set()
        for h in handles:
            h.remove()
    assert late == []
    assert p.progress.maximum() == 3 * len(graph.blocks())  # top-1 forward, forward, backward per block
    assert not shares_running(p) and p.shares == {} and p.network_chart.blocks == []
    assert "cancelled" in p.status.text().lower()
    assert p.compute_button.isEnabled() and not p.cancel_button.isEnabled() and not p.progress.isVisible()
    with qtbot.waitSignal(p.shares_ready, timeout=RUN_MS):  # still usable
        p.compute_button.click()
    assert p.network_chart.blocks == [b.name for b in graph.blocks()] and "cancelled" not in p.status.text()
    p.shutdown()


def test_attributions_run_on_the_classifiers_device_and_say_when_the_cpu_took_over(qtbot, setup, monkeypatch,
                                                                                   job_runner):
    """On a GPU the panel runs the gradient methods there (attribute_on_device, with the CPU as fallback);
    here a fake GPU runs out of memory on every call, so the CPU computes it and the panel says so."""
    import explorer.core.attribution.methods as attribution

    graph, cm, x, image, categories = setup
    asked = []

    def capture_model_for(device):
        asked.append(device)
        if device.startswith("cuda"):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return cm

    monkeypatch.setattr(torch.cuda, "device", lambda device: __import__("contextlib").nullcontext())
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    p = AttributionPanel(runner=job_runner.lanes("images"))
    qtbot.addWidget(p)
    p.set_model(cm, graph, categories, capture_model_for=capture_model_for)
    p.set_image(x, image)
    p.device = "cuda:0"
    p.set_method("saliency")
    with qtbot.waitSignal(p.attribution_finished, timeout=RUN_MS) as done:
        p.run()
    result = done.args[0]
    assert asked == ["cuda:0", "cpu"] and result.device == "cpu" and "ran out of memory" in result.notice
    assert "ran out of memory" in p.status.text()
    expected = attribution.attribute(cm, x, "saliency", result.target)
    np.testing.assert_allclose(result.heatmap, expected.heatmap, rtol=1e-5, atol=1e-7)
    p.shutdown()


def shares_panel(qtbot, setup, job_runner) -> BranchSharePanel:
    """A Branch shares panel on the calibrated GoogLeNet, shown, with the setup's image."""
    graph, cm, x, _, _ = setup
    p = BranchSharePanel(runner=job_runner.lanes("images"))
    qtbot.addWidget(p)
    p.show()
    p.set_model(cm, graph)
    p.set_image(x)
    return p


def test_decompose_block_shows_each_branchs_part_and_what_they_add_up_to(qtbot, setup, job_runner):
    """The Branch shares tab's Decompose block: the selected block's layer conductance per branch, the sum, f(x) −
    f(baseline) from two plain forwards of the network (computed here on the plain model) and the error."""
    from explorer.core.attribution.methods import baseline_for

    graph, cm, x, _, _ = setup
    p = shares_panel(qtbot, setup, job_runner)
    p.show_block("inception4a")
    import dataclasses

    p.attributions.choices.params = dataclasses.replace(p.attributions.choices.params, ig_baseline="zero")
    p.decompose_button.click()
    qtbot.waitUntil(lambda: p.session.state.conductance is not None, timeout=RUN_MS)
    result = p.session.state.conductance
    plain = calibrated_model("googlenet")  # the same weights, without the capture network's probes
    with torch.no_grad():
        logits, logits0 = plain(x), plain(baseline_for(x, "zero"))
    target = int(logits.argmax(1))
    assert result.block == "inception4a" and result.target == target and result.baseline == "zero"
    assert result.difference == pytest.approx(float(logits[0, target] - logits0[0, target]), abs=1e-4)
    text = p.conductance_label.text()
    assert "inception4a" in text and f"{result.difference:.4g}" in text and "branch 4" in text
    assert f"{result.total:.4g}" in text
    p.set_image(x.clone())  # another image: its decomposition is not this one's
    assert p.session.state.conductance is None and p.conductance_label.text() == ""


def test_knock_out_each_charts_what_each_branch_off_does(qtbot, setup, job_runner):
    """Knock out each: the block's chart shows each branch's Δ p(target), equal to torchvision's own network with
    that branch's output replaced through a forward hook (the independent reference); the top-1 changes marked."""
    graph, cm, x, _, _ = setup
    p = shares_panel(qtbot, setup, job_runner)
    p.show_block("inception4a")
    p.knockout_mode.setCurrentIndex(p.knockout_mode.findData("mean"))
    p.knockout_button.click()
    qtbot.waitUntil(lambda: p.session.state.knockouts is not None, timeout=RUN_MS)
    effects = p.session.state.knockouts
    assert effects.mode == "mean" and len(effects.effects) == 36
    plain = calibrated_model("googlenet")
    with torch.no_grad():
        probs = torch.softmax(plain(x), 1)[0]
    target = int(probs.argmax())
    expected = []
    block = plain.inception4a
    for branch in (block.branch1, block.branch2, block.branch3, block.branch4):
        handle = branch.register_forward_hook(lambda m, i, o: o.mean(dim=(2, 3), keepdim=True).expand_as(o))
        with torch.no_grad():
            knocked = torch.softmax(plain(x), 1)[0]
        handle.remove()
        expected.append((float(knocked[target] - probs[target]), int(knocked.argmax()) != target))
    chart = p.knockout_chart
    assert chart.block == "inception4a"
    np.testing.assert_allclose(bar_heights(chart), [d for d, _ in expected], atol=1e-5)
    ticks = [t[1] for t in chart.plot.getAxis("bottom")._tickLevels[0]]
    assert [t.endswith("top-1") for t in ticks] == [changed for _, changed in expected]
    p.show_block("inception5b")  # the chart follows the block shown
    assert chart.block == "inception5b" and len(bar_heights(chart)) == 4
    p.set_image(x.clone())
    assert p.session.state.knockouts is None and chart.bars is None
