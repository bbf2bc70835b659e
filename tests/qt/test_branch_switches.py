"""Branches switched off from the window (issue 26), on the demo model with its shipped weights: the graph's
right-click menu switches inception3b's branch 2 off; the strip above the graph and the top-5's heading say so, the
graph marks the branch, the top-5 is the demo network's with a forward hook zeroing that branch (independent of our
switches), and Restore brings the plain network back."""

import copy

import pytest
import torch
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QContextMenuEvent
from PySide6.QtWidgets import QApplication

from explorer.qt.window.actions import shortcuts_html

TIMEOUT_MS = 120_000
BLOCK, K = "inception3b", 1


def hooked_top5(module, x, mode: str | None):
    net = copy.deepcopy(module).eval()
    if mode == "zero":
        net.get_submodule(f"{BLOCK}.branch{K + 1}").register_forward_hook(lambda m, i, o: torch.zeros_like(o))
    with torch.no_grad():
        probs = torch.softmax(net(x.to("cpu").float().contiguous()), 1)[0]
    return probs.topk(5).indices.tolist(), probs.topk(5).values.tolist()


@pytest.fixture
def window(make_window, qtbot):
    w = make_window("shapes_inception", weights="auto")
    qtbot.waitUntil(lambda: w.images is not None and w.images.classify.classifier is not None, timeout=TIMEOUT_MS)
    star = w.images.classify.drawn_buttons[1]
    qtbot.mouseClick(star, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.state.shown_image is not None and w.state.classification is not None, timeout=TIMEOUT_MS)
    return w


def menu_action(w, key: str, text: str):
    menu = w.branch_switches.menu_for(key)
    found = [a for a in menu.actions() if a.text() == text]
    assert found, [a.text() for a in menu.actions()]
    return found[0]


def test_a_branch_switched_off_from_the_graph_and_restored(window, qtbot):
    w, st = window, window.state
    plain_top = [p.index for p in st.classification.top]
    assert plain_top[0] == 3  # the star
    heading = w.images.classify.result_view.modified
    assert not heading.isVisible() and not w.branch_switches.bar.isVisible()

    w.graph_page.expand(BLOCK)
    menu_action(w, f"{BLOCK}/b{K}", f"Switch {BLOCK} branch 2 off").trigger()
    assert st.branches_off == {(BLOCK, K)}
    bar = w.branch_switches.bar
    assert bar.isVisible() and "inception3b branch 2 off (zeros)" in bar.text() and "modified network" in bar.text()
    caption, layer = w.view.boxes[f"{BLOCK}/b{K}"], w.view.boxes[f"{BLOCK}/b{K}/l0"]
    assert caption.off_tag == "off" and layer.off_tag == "" and w.view.boxes[f"{BLOCK}/b0"].off_tag is None
    qtbot.waitUntil(lambda: st.classification is not None and st.shown_image is not None, timeout=TIMEOUT_MS)
    assert heading.isVisible() and heading.text() == "Modified network: inception3b branch 2 off (zeros)"
    indices, values = hooked_top5(st.loaded.module, st.shown_image.x, "zero")
    assert [p.index for p in st.classification.top] == indices
    assert [p.prob for p in st.classification.top] == pytest.approx(values, abs=1e-4)
    assert indices[0] != plain_top[0]  # the star is no longer first
    # The chart shows it: its first row is the new top-1's label.
    assert w.images.classify.result_view.result.top[0].index == indices[0]
    # Activations: the switched-off branch's column says so, the others do not.
    acts = w.images.activations
    qtbot.waitUntil(lambda: acts.capture is st.shown_image.capture, timeout=TIMEOUT_MS)
    acts.show_block(BLOCK)
    titles = acts.grid.titles
    assert "OFF (zeros)" in titles[K] and not any("OFF" in t for i, t in enumerate(titles) if i != K)
    # A map made now says whose network it explains.
    panel = w.images.attribution
    qtbot.waitUntil(lambda: panel.x is not None, timeout=TIMEOUT_MS)
    with qtbot.waitSignal(panel.attribution_finished, timeout=TIMEOUT_MS):
        panel.run()
    assert "modified network: inception3b branch 2 off (zeros)" in panel.status.text()

    w.graph_page.collapse(BLOCK)
    assert w.view.boxes[BLOCK].off_tag == "branch 2 off"
    assert menu_action(w, BLOCK, f"Switch {BLOCK} branch 2 (#3×3 reduce → #3×3) on") is not None
    w.branch_switches.mode_actions["mean"].trigger()
    assert st.knockout_mode == "mean" and "(per-channel mean)" in bar.text()
    qtbot.waitUntil(lambda: st.classification is not None and st.shown_image is not None, timeout=TIMEOUT_MS)
    assert "per-channel mean" in heading.text()

    qtbot.mouseClick(bar.restore, Qt.MouseButton.LeftButton)
    assert st.branches_off == frozenset() and not bar.isVisible() and not heading.isVisible()
    assert w.view.boxes[BLOCK].off_tag is None
    qtbot.waitUntil(lambda: st.classification is not None and st.shown_image is not None, timeout=TIMEOUT_MS)
    assert [p.index for p in st.classification.top] == hooked_top5(st.loaded.module, st.shown_image.x, None)[0]
    assert not w.actions["restore_branches"].isEnabled()


def test_restore_is_an_action_with_a_shortcut_in_help(window):
    w = window
    act = w.actions["restore_branches"]
    w.session.switch_branch(BLOCK, K, on=False)
    assert act.isEnabled()
    assert "Restore all branches" in shortcuts_html(w.actions) and act.shortcut().toString() == "Ctrl+Shift+R"
    act.trigger()
    assert w.state.branches_off == frozenset()


def test_a_right_click_on_a_branch_opens_its_menu(window, qtbot):
    """A real right-click on the branch's box in the graph: the menu pops up with the branch's entry, which
    switches it off."""
    w = window
    w.graph_page.expand(BLOCK)
    item = w.view.boxes[f"{BLOCK}/b{K}"]
    w.view.centerOn(item)
    pos = w.view.mapFromScene(item.sceneBoundingRect().center())
    seen = []

    def choose():
        menu = QApplication.activePopupWidget()
        seen.append([a.text() for a in menu.actions()] if menu is not None else None)
        if menu is not None:
            [act] = [a for a in menu.actions() if a.text() == f"Switch {BLOCK} branch 2 off"]
            menu.close()
            act.trigger()

    QTimer.singleShot(300, choose)
    event = QContextMenuEvent(QContextMenuEvent.Reason.Mouse, pos, w.view.viewport().mapToGlobal(pos))
    QApplication.sendEvent(w.view.viewport(), event)
    qtbot.waitUntil(lambda: bool(seen), timeout=5000)
    assert seen[0] is not None and "Restore all branches" in seen[0]
    assert w.state.branches_off == {(BLOCK, K)} and w.view.boxes[f"{BLOCK}/b{K}"].off_tag == "off"


def test_the_data_flow_slides_say_the_network_is_modified(window, qtbot):
    w, st = window, window.state
    w.session.switch_branch(BLOCK, K, on=False)
    qtbot.waitUntil(lambda: st.shown_image is not None and st.result_key.off is not None, timeout=TIMEOUT_MS)
    p = w.presentation
    p.enter()
    try:
        qtbot.waitUntil(lambda: p.showing_dataflow(), timeout=10_000)
        assert p.slide_view.caveat == "⚠ Modified network: inception3b branch 2 off (zeros)"
        assert w.branch_switches.bar.isVisible()  # the strip stays over the slides
    finally:
        p.leave()
