"""View → Overlay colours the graph's boxes like the values rank, with a legend in the shared number formats;
measured time runs in a worker and feeds "where does the time go"."""

import pytest
from netutil import gradient_x_activation_by_hooks
from PySide6.QtGui import QColor

from explorer.core.text import fmt_count, fmt_fraction, fmt_seconds


def _lum(c: QColor) -> float:
    return 0.299 * c.red() + 0.587 * c.green() + 0.114 * c.blue()


def _node_fills(window) -> dict[str, QColor]:
    return {k: item.overlay_fill for k, item in window.view.boxes.items()
            if item.box.role == "node" and item.overlay_fill is not None}


def test_parameters_overlay_colours_rank_like_the_modules_parameters(window, qtbot):
    module = window.loaded.module
    window.overlay_menu.actions["params"].trigger()
    assert window.state.overlay == "params"
    fills = _node_fills(window)
    # Independent of the trace: each node module's own parameters.
    params = {k: sum(p.numel() for p in module.get_submodule(k).parameters()) for k in fills}
    ranked = sorted(fills, key=lambda k: params[k])
    lums = [_lum(fills[k]) for k in ranked]
    assert all(a >= b for a, b in zip(lums, lums[1:])), list(zip(ranked, lums))
    darkest = min(fills, key=lambda k: _lum(fills[k]))
    assert params[darkest] == max(params.values())
    legend = window.view.legend_widget
    assert legend.isVisible()
    assert legend.texts()[1] == fmt_count(max(params.values()))
    assert legend.texts()[0] == fmt_count(min(v for v in params.values() if v > 0))  # log scale: smallest non-zero

    window.graph_page.expand("inception4a")  # a redraw keeps the overlay: the opened block's header is coloured
    assert window.view.boxes[window.view.diagram.entry["inception4a"]].overlay_fill is not None

    window.overlay_menu.actions["none"].trigger()
    assert not _node_fills(window) and not legend.isVisible()


def test_measured_time_runs_in_a_worker_and_ranks_the_time_table(window, qtbot):
    window.graph_page.set_input_size(64)
    window.overlay_menu.actions["time"].trigger()
    qtbot.waitUntil(lambda: window.state.block_times is not None, timeout=120_000)
    times = window.state.block_times
    assert times.input_shape[-2:] == (64, 64) and times.repeats >= 3
    fills = _node_fills(window)
    med = times.median
    assert set(fills) == set(med)
    slowest = max(med, key=med.get)
    assert _lum(fills[slowest]) == min(_lum(c) for c in fills.values())
    assert window.view.legend_widget.texts()[1] == fmt_seconds(max(med.values()))

    table = window.overlay_menu.show_time_table()
    qtbot.addWidget(table)
    assert table.table.rowCount() == len(med)
    assert table.table.item(0, 0).text() == slowest
    assert table.table.item(0, 1).text() == fmt_seconds(med[slowest])
    table.close()

    window.graph_page.set_input_size(72)  # the times follow the input size: measured again
    qtbot.waitUntil(lambda: window.state.block_times.input_shape[-2:] == (72, 72), timeout=120_000)
    window.graph_page.set_input_size(80)
    assert window.runner.running("overlay") is not None
    window.overlay_menu.actions["none"].trigger()  # leaving the time overlay cancels the measurement
    assert window.runner.running("overlay") is None
    assert window.state.block_times.input_shape[-2:] == (72, 72)


def test_zero_activations_of_the_classified_image_match_hooks_on_the_plain_model(make_window, qtbot):
    import torch

    w = make_window(classify_sample=True)
    w.overlay_menu.actions["zeros"].trigger()
    qtbot.waitUntil(lambda: getattr(w.state.shown_image, "capture", None) is not None, timeout=120_000)
    qtbot.waitUntil(lambda: bool(_node_fills(w)), timeout=10_000)
    module, x = w.loaded.module, w.state.shown_image.x.detach().cpu().float()
    zeros = {}
    hooks = [module.get_submodule(k).register_forward_hook(
        lambda m, i, o, k=k: zeros.__setitem__(k, float((o == 0).float().mean()))) for k in w.view.overlay_values]
    try:
        with torch.no_grad():
            module.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    for k, v in zeros.items():  # the classifier's network has its batch norms folded: rounding differs
        assert w.view.overlay_values[k] == pytest.approx(v, abs=2e-3), k
    fills = _node_fills(w)
    darkest = min(fills, key=lambda k: _lum(fills[k]))
    assert zeros[darkest] == pytest.approx(max(zeros[k] for k in fills), abs=2e-3)
    assert w.view.legend_widget.texts()[1] == fmt_fraction(max(w.view.overlay_values.values()))


def test_attribution_overlay_follows_the_branch_shares_of_the_image_on_screen(make_window, qtbot):
    """Computing branch shares colours the graph by each block's share of |gradient × activation|, equal to
    hooks on the plain network; a new image takes the colours away until its shares are computed."""
    import torch

    w = make_window(classify_sample=True)
    qtbot.waitUntil(lambda: getattr(w.state.shown_image, "capture", None) is not None, timeout=120_000)
    shares = w.images.shares
    qtbot.waitUntil(lambda: w.session.captures is not None and shares.x is not None, timeout=120_000)
    w.overlay_menu.actions["attribution"].trigger()
    assert w.view.overlay_values is None  # nothing computed yet: the window says how to get it
    with qtbot.waitSignal(shares.shares_ready, timeout=120_000):
        shares.compute_button.click()
    qtbot.waitUntil(lambda: bool(_node_fills(w)), timeout=10_000)

    module, x = w.loaded.module.eval(), shares.x.detach().clone()
    target = w.state.branch_evidence.target
    raw = gradient_x_activation_by_hooks(module, x, target, w.view.overlay_values)
    whole = sum(raw.values())
    for b, v in raw.items():
        assert w.view.overlay_values[b] == pytest.approx(v / whole, rel=1e-3, abs=1e-7), b
    fills = _node_fills(w)
    darkest = min(fills, key=lambda k: _lum(fills[k]))
    assert raw[darkest] == pytest.approx(max(raw.values()), rel=1e-3)

    assert shares.network_chart.blocks and shares.shares
    w.state.shown_image = None  # another image (or none): its evidence is not this one's
    assert w.state.branch_evidence is None and w.view.overlay_values is None
    assert shares.shares == {} and shares.network_chart.blocks == []  # the charts follow the state


def test_knock_out_overlay_colours_each_block_by_its_largest_drop(make_window, qtbot):
    """View → Overlay → Knock-out effect: each block's largest drop in p(target) with one of its branches off
    (zeros), equal to hooks on the plain network replacing each branch's output; the darkest box is the block
    whose branch matters most; a new image takes the colours away."""
    import torch

    w = make_window(classify_sample=True)
    qtbot.waitUntil(lambda: getattr(w.state.shown_image, "capture", None) is not None, timeout=120_000)
    shares = w.images.shares
    qtbot.waitUntil(lambda: w.session.captures is not None and shares.x is not None, timeout=120_000)
    w.overlay_menu.actions["knockout"].trigger()
    assert w.view.overlay_values is None  # nothing computed yet: the status line says how to get it
    assert "Knock out each" in w.status_line.text()
    shares.knockout_button.click()
    qtbot.waitUntil(lambda: w.view.overlay_values is not None, timeout=120_000)

    module, x = w.state.loaded.module.eval(), shares.x.detach().clone()
    with torch.no_grad():
        probs = torch.softmax(module(x), 1)[0]
    target = int(probs.argmax())
    assert w.state.knockouts.target == target
    for name in ("inception3a", "inception4e", "inception5b"):
        block, drops = module.get_submodule(name), []
        for branch in (block.branch1, block.branch2, block.branch3, block.branch4):
            handle = branch.register_forward_hook(lambda m, i, o: torch.zeros_like(o))
            with torch.no_grad():
                drops.append(float(probs[target] - torch.softmax(module(x), 1)[0, target]))
            handle.remove()
        assert w.view.overlay_values[name] == pytest.approx(max(0.0, *drops), abs=1e-5), name
    fills = _node_fills(w)
    darkest = min(fills, key=lambda k: _lum(fills[k]))
    assert w.view.overlay_values[darkest] == pytest.approx(max(w.view.overlay_values.values()))
    # the legend names the class as the model does, not by its index
    assert f"p({w.state.loaded.categories[target]})" in w.view.legend_widget.legend.note
    w.state.shown_image = None
    assert w.state.knockouts is None and w.view.overlay_values is None


def _svg(path):
    import re
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    fills = {el.get("fill").lower() for el in root.iter() if re.fullmatch(r"#[0-9a-fA-F]{6}", el.get("fill") or "")}
    texts = " ".join("".join(el.itertext()) for el in root.iter() if el.tag.endswith("text"))
    return fills, texts


def test_svg_and_png_exports_carry_the_overlay_colours_and_legend(window, tmp_path):
    from PySide6.QtGui import QImage

    from explorer.core.overlay.quantities import static_overlay

    plain_fills, plain_texts = _svg(window.exports.export_svg(tmp_path / "plain.svg"))
    plain_png = QImage(str(window.exports.export_png(tmp_path / "plain.png", 1.0)))
    window.overlay_menu.actions["macs"].trigger()
    # The engine's numbers for the same graph and trace, coloured on the legend's scale.
    engine = static_overlay("macs", window.graph, window.trace)
    expected = {"#%02x%02x%02x" % engine.legend.colour(v) for v in engine.values.values()}
    fills, texts = _svg(window.exports.export_svg(tmp_path / "macs.svg"))
    assert expected <= fills, expected - fills
    assert len(expected - plain_fills) >= 5  # the colours come from the overlay, not the kinds' own fills
    assert "Multiply-adds" in texts and "Multiply-adds" not in plain_texts
    assert engine.legend.low_text in texts and engine.legend.high_text in texts and engine.legend.note in texts
    png = QImage(str(window.exports.export_png(tmp_path / "macs.png", 1.0)))
    assert png.width() > plain_png.width()  # widened for the legend beside the drawing
    darkest = max(engine.values, key=engine.values.get)
    at = window.view.boxes[darkest].sceneBoundingRect().translated(-window.view.scene().sceneRect().topLeft())
    c = png.pixelColor(int(at.left() + 6), int(at.center().y()))  # inside the box, left of its text
    assert (c.red(), c.green(), c.blue()) == engine.legend.colour(engine.values[darkest])


def test_a_hint_of_what_an_overlay_needs_goes_once_another_overlay_is_on_screen(window):
    """Choosing an image quantity with no image says how to get it; choosing parameters then colours the
    graph, and the status line no longer tells the user to classify an image (it stayed for its timeout)."""
    window.overlay_menu.actions["energy"].trigger()
    assert window.view.overlay_values is None
    assert "classify an image" in window.status_line.text()
    window.overlay_menu.actions["params"].trigger()
    assert window.view.overlay_values
    assert "classify an image" not in window.status_line.text()

    window.overlay_menu.actions["attribution"].trigger()
    assert "branch shares" in window.status_line.text()
    window.overlay_menu.actions["none"].trigger()
    assert window.status_line.text() == ""


def test_a_large_size_is_timed_when_asked_not_on_every_size_change(window, qtbot):
    """Measured time at 1024 px (31 G multiply-adds a forward) is not re-run by a size change: the status line
    says how to ask for it; asked, it runs and the menu's Cancel stops it."""
    from explorer.qt.window.overlay_menu import AUTO_MACS

    window.graph_page.set_input_size(64)
    window.overlay_menu.actions["time"].trigger()
    qtbot.waitUntil(lambda: window.state.block_times is not None, timeout=120_000)
    window.graph_page.set_input_size(1024)
    assert window.state.trace.total_macs > AUTO_MACS
    assert window.runner.running("overlay") is None and window.view.overlay_values is None
    assert "Measure time at this size" in window.status_line.text()
    window.overlay_menu.measure_action.trigger()
    assert window.runner.running("overlay") is not None and window.overlay_menu.cancel_action.isEnabled()
    window.overlay_menu.cancel_action.trigger()
    assert window.runner.running("overlay") is None
    assert window.state.block_times.input_shape[-2:] == (64, 64)
