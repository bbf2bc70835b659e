"""Data-flow slides in presentation mode: the image on screen, stepped through GoogLeNet without a forward.

Maps are compared with hooks on the plain loaded network run on the image's network input, the first
slide with torchvision's own transforms of the file, the last with the classifier's top-5.
"""

import numpy as np
import pytest
import torch
from PIL import Image
from PySide6.QtCore import QMimeData, Qt, QUrl

from tests.netutil import synthetic_batch

TIMEOUT_MS = 180_000
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def write_picture(path, seed):
    img = synthetic_batch(4, 260, torch.Generator().manual_seed(seed))[seed % 4]
    Image.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype("uint8")[:, 10:]).save(path)
    return path


@pytest.fixture
def pictures(tmp_path):
    return write_picture(tmp_path / "first.png", 3), write_picture(tmp_path / "second.png", 5)


def ready(w) -> bool:
    d = w.images
    return d is not None and d.network_key is not None and d.classify.classifier is not None and not d.classify.busy


def show(w, qtbot, path):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    with qtbot.waitSignal(w.images.classify.image_shown, timeout=TIMEOUT_MS) as sig:
        assert w.images.classify.handle_drop(mime)
    qtbot.waitUntil(lambda: w.state.shown_image is sig.args[0], timeout=5000)
    return sig.args[0]


def branch_outputs(module, x, block):
    """GoogLeNet's branches of `block`, from hooks on the plain network run on `x`."""
    seen, handles = {}, []
    for k in range(4):
        handles.append(module.get_submodule(f"{block}.branch{k + 1}").register_forward_hook(
            lambda m, i, o, k=k: seen.__setitem__(k, o[0].clone())))
    try:
        with torch.no_grad():
            module.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def assert_real_maps(slide, module, x):
    seen = branch_outputs(module, x, slide.name)
    for b in slide.branches:
        t = seen[b.index]
        assert b.out_shape == tuple(t.shape)
        expected = t[torch.as_tensor(b.channels)].numpy()
        np.testing.assert_allclose(b.maps, expected, rtol=1e-3, atol=1e-4 * float(t.abs().max()) + 1e-7)
        means = t.mean(dim=(1, 2))
        assert float(means[b.channels[0]]) >= float(means.max()) * (1 - 1e-4) - 1e-6  # the most active first


@pytest.fixture
def counting(monkeypatch):
    """Every convolution's forward from now on, on any thread, in any copy of any network."""
    calls = []
    real = torch.nn.Conv2d.forward
    monkeypatch.setattr(torch.nn.Conv2d, "forward", lambda self, t: calls.append(1) or real(self, t))
    return calls


def test_dataflow_slides_step_through_the_image_without_a_forward(make_window, qtbot, pictures, counting):
    w = make_window()
    qtbot.waitUntil(lambda: ready(w), timeout=TIMEOUT_MS)
    shown = show(w, qtbot, pictures[0])
    p = w.presentation
    with qtbot.waitSignal(p.entered):
        qtbot.keyClick(w.view, Qt.Key.Key_F5)
    assert p.showing_dataflow() and p.slide_view.isVisible() and not w.view.isVisible()
    deck = p.deck
    assert deck.names() == ["input", *p.blocks(), "top-5"]
    # The first slide: torchvision's preprocessing of the file, de-normalised.
    x = w.state.spec.weights_enum().transforms()(Image.open(pictures[0]).convert("RGB"))
    ref = ((x * STD + MEAN).clamp(0, 1) * 255).round().permute(1, 2, 0).numpy()
    assert p.slide_view.slide.kind == "input"
    assert np.abs(p.slide_view.slide.image.astype(float) - ref).max() <= 1.0
    counting.clear()
    names = []
    p.stepped.connect(lambda i, name: names.append(name))
    for _ in range(len(deck) - 1):
        qtbot.keyClick(p.slide_view, Qt.Key.Key_Right)
        p.slide_view.repaint()
    assert counting == []  # no network ran while stepping (and painting)
    assert names == deck.names()[1:]
    last = p.slide_view.slide
    assert last.kind == "top5"
    assert [label for label, _ in last.top] == [t.label for t in shown.result.top[:5]]
    # The maps are the image's: hooks on the plain network, run on the same network input.
    module, xin = w.state.loaded.module, shown.x.detach().cpu().float().contiguous()
    for name in ("inception3a", "inception4e"):
        assert_real_maps(deck.slide(deck.index_of(name)), module, xin)
    # Text is readable from the back of the hall.
    assert min(f.pointSizeF() for f in p.slide_view.fonts().all()) >= 18
    # Branch shares computed during the talk: each branch's share of the attribution joins its energy.
    from explorer.core.lecture.dataflow import Position

    p.go_slide(Position(deck.index_of("inception4e"), 0))
    assert all(b.attribution_share is None for b in p.slide_view.slide.branches)
    with qtbot.waitSignal(w.images.shares.shares_ready, timeout=TIMEOUT_MS):
        w.images.shares.compute()
    expected = w.images.shares.shares["inception4e"]
    assert [b.attribution_share for b in p.slide_view.slide.branches] == pytest.approx(expected)
    # Knock-outs computed during the talk: what the top-1 loses with each branch off joins the slide, equal to
    # hooks on the plain network replacing that branch's output by zeros.
    assert all(b.knockout_delta is None for b in p.slide_view.slide.branches)
    w.images.shares.knockout_button.click()
    qtbot.waitUntil(lambda: w.state.knockouts is not None, timeout=TIMEOUT_MS)
    import torch

    module = w.state.loaded.module.eval()
    xin = w.images.shares.x.detach().clone()
    with torch.no_grad():
        probs = torch.softmax(module(xin), 1)[0]
    top1, block, deltas = int(probs.argmax()), module.inception4e, []
    for branch in (block.branch1, block.branch2, block.branch3, block.branch4):
        handle = branch.register_forward_hook(lambda m, i, o: torch.zeros_like(o))
        with torch.no_grad():
            deltas.append(float(torch.softmax(module(xin), 1)[0, top1] - probs[top1]))
        handle.remove()
    assert [b.knockout_delta for b in p.slide_view.slide.branches] == pytest.approx(deltas, abs=1e-5)
    p.slide_view.repaint()
    qtbot.keyClick(p.slide_view, Qt.Key.Key_Escape)
    assert not p.active and w.view.isVisible() and not p.slide_view.isVisible()


def test_flow_mode_lights_branches_then_the_join_and_a_new_image_keeps_the_slide(make_window, qtbot, pictures):
    w = make_window()
    qtbot.waitUntil(lambda: ready(w), timeout=TIMEOUT_MS)
    show(w, qtbot, pictures[0])
    p = w.presentation
    p.enter()
    v = p.slide_view
    qtbot.keyClick(v, Qt.Key.Key_Right)  # inception3a
    assert "F flow" in v.footer and v.lit is None
    qtbot.keyClick(v, Qt.Key.Key_F)
    assert p.flow and v.slide.name == "inception3a"
    assert "→ or Space lights the next branch" in v.footer  # the slide says how flow mode steps
    lit = [v.lit]
    for key in (Qt.Key.Key_Right, Qt.Key.Key_Space, Qt.Key.Key_Right, Qt.Key.Key_Right):
        qtbot.keyClick(v, key)
        lit.append(v.lit)
    assert lit == [("branch", 0), ("branch", 1), ("branch", 2), ("branch", 3), ("merge", None)]
    qtbot.keyClick(v, Qt.Key.Key_F)  # F again: whole slides, on the same slide
    assert not p.flow and v.lit is None and v.slide.name == "inception3a" and "F flow" in v.footer
    qtbot.keyClick(v, Qt.Key.Key_F)  # and on again: from its first branch
    for _ in range(4):
        qtbot.keyClick(v, Qt.Key.Key_Right)
    assert v.slide.name == "inception3a"
    qtbot.keyClick(v, Qt.Key.Key_Right)  # after the join: the next block, its first branch lit
    assert (v.slide.name, v.lit) == ("inception3b", ("branch", 0))
    qtbot.keyClick(v, Qt.Key.Key_Left)
    assert (v.slide.name, v.lit) == ("inception3a", ("merge", None))
    qtbot.keyClick(v, Qt.Key.Key_Right)
    qtbot.keyClick(v, Qt.Key.Key_Right)
    before_index, before = p.position, v.slide
    assert before_index.slide == 2 and before_index.step == 1
    # Another image while presenting: the same slide and step, the new image's maps.
    shown = show(w, qtbot, pictures[1])
    assert p.position == before_index and v.slide.name == before.name == "inception3b"
    assert v.slide is not before
    assert not all(np.array_equal(a.maps, b.maps) for a, b in zip(before.branches, v.slide.branches))
    assert_real_maps(v.slide, w.state.loaded.module, shown.x.detach().cpu().float().contiguous())
    # More maps per branch: remembered in the settings, shown at once.
    n = p.maps_per_branch()
    qtbot.keyClick(v, Qt.Key.Key_Plus)
    assert p.maps_per_branch() == n + 1 and w.settings.value("presentation/maps_per_branch") in (n + 1, str(n + 1))
    assert all(b.maps.shape[0] == n + 1 for b in v.slide.branches)
    # D: graph slides on the same block, and back.
    qtbot.keyClick(v, Qt.Key.Key_D)
    assert not p.showing_dataflow() and w.view.isVisible() and p.blocks()[p.index] == "inception3b"
    qtbot.keyClick(w.view, Qt.Key.Key_D)
    assert p.showing_dataflow() and v.slide.name == "inception3b"
    p.leave()


def test_an_opened_resnet_gets_residual_slides(make_window, qtbot, pictures, counting):
    """Any opened CNN: torchvision's resnet18 by name, its residual blocks as two-branch slides joined by add."""
    from tests.qt.conftest import GRAPH_TIMEOUT_MS

    w = make_window()
    qtbot.waitUntil(lambda: ready(w), timeout=TIMEOUT_MS)
    with qtbot.waitSignals([w.model_opened, w.model_loaded], timeout=GRAPH_TIMEOUT_MS, order="strict"):
        w.models.open_model("torchvision:resnet18")
    qtbot.waitUntil(lambda: ready(w) and w.images.network_key.model == w.state.graph.name, timeout=TIMEOUT_MS)
    shown = show(w, qtbot, pictures[0])
    p = w.presentation
    p.enter()
    assert p.deck.names() == ["input", *[f"layer{i}.{j}" for i in range(1, 5) for j in range(2)], "top-5"]
    counting.clear()
    for _ in range(len(p.deck) - 1):
        qtbot.keyClick(p.slide_view, Qt.Key.Key_Right)
        p.slide_view.repaint()
    assert counting == []
    s = p.deck.slide(p.deck.index_of("layer2.0"))
    assert s.merge == "add" and len(s.branches) == 2 and s.out_shape == (128, 28, 28) and s.in_shape == (64, 56, 56)
    seen = {}
    block = w.state.loaded.module.get_submodule("layer2.0")
    h = block.downsample.register_forward_hook(lambda m, i, o: seen.update(short=o[0].clone()))
    with torch.no_grad():
        w.state.loaded.module.eval()(shown.x.detach().cpu().float().contiguous())
    h.remove()
    t = seen["short"]
    b = s.branches[1]
    top = t.mean(dim=(1, 2)).topk(len(b.channels)).indices
    assert b.channels.tolist() == top.tolist()
    np.testing.assert_allclose(b.maps, t[top].numpy(), rtol=1e-3, atol=1e-4 * float(t.abs().max()) + 1e-7)
    p.leave()
