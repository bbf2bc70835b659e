"""View → Feature-map thumbnails: each box shows the image's strongest map at its output, from the capture."""

import numpy as np
import torch
from PySide6.QtGui import QImage

from tests.qt.test_presentation_dataflow import TIMEOUT_MS, ready, show, write_picture


def pixels(image: QImage) -> np.ndarray:
    img = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    return np.frombuffer(img.constBits(), np.uint8).reshape(h, bpl)[:, : 3 * w].reshape(h, w, 3).copy()


def test_thumbnails_show_each_blocks_strongest_map_and_go_with_the_image(make_window, qtbot, tmp_path, monkeypatch):
    w = make_window()
    qtbot.waitUntil(lambda: ready(w), timeout=TIMEOUT_MS)
    first, second = write_picture(tmp_path / "a.png", 3), write_picture(tmp_path / "b.png", 5)
    shown = show(w, qtbot, first)
    action = w.thumbnails.action
    assert not action.isChecked() and w.view.thumbnails == {}
    calls = []
    real = torch.nn.Conv2d.forward
    monkeypatch.setattr(torch.nn.Conv2d, "forward", lambda self, t: calls.append(1) or real(self, t))
    action.trigger()
    assert calls == []  # from the capture: no forward
    assert w.state.thumbnails and str(w.settings.value("view/thumbnails")).lower() == "true"
    assert {"inception3a", "inception5b", "conv1"} <= set(w.view.thumbnails)
    # The map beside inception4c is its strongest channel: hooks on the plain network, same input.
    seen = {}
    h = w.state.loaded.module.get_submodule("inception4c").register_forward_hook(lambda m, i, o: seen.update(out=o[0]))
    with torch.no_grad():
        w.state.loaded.module.eval()(shown.x.detach().cpu().float().contiguous())
    h.remove()
    out = seen["out"]
    m = out[out.mean(dim=(1, 2)).argmax()]
    m = ((m - m.min()) / (m.max() - m.min())).numpy()
    thumb = w.view.thumbnails["inception4c"].image
    assert (thumb.height(), thumb.width()) == m.shape
    lum = pixels(thumb).astype(float).sum(axis=2)  # inferno's brightness grows with the value
    assert np.corrcoef(lum.ravel(), m.ravel())[0, 1] > 0.97
    # Kept across a redraw (a block expanded), beside the boxes.
    w.graph_page.expand("inception3a")
    item = w.view.thumbnails["inception3a"]
    box = w.view.boxes["inception3a"].sceneBoundingRect()
    assert item.sceneBoundingRect().right() <= box.left() + 5
    assert not item.collidesWithItem(w.view.boxes["aux1"])
    # Another image: new maps; off: none.
    show(w, qtbot, second)
    assert not np.array_equal(pixels(w.view.thumbnails["inception4c"].image), pixels(thumb))
    action.trigger()
    assert w.view.thumbnails == {} and not w.state.thumbnails
    action.trigger()
    assert w.view.thumbnails
    # A model switch clears them (the image belonged to the previous model).
    w.state.shown_image = None
    assert w.view.thumbnails == {}


def test_thumbnails_beside_the_widest_boxes_stay_inside_the_scene_and_the_exported_png(window, tmp_path):
    """A thumbnail is as wide as its box is tall, more than the scene's margin: beside the widest boxes
    (the Inception blocks, at the diagram's left edge) the scene must grow, or exports cut them off."""
    view = window.view
    maps = {b.node: np.full((4, 4), 1.0) for b in view.diagram.boxes.values() if b.role in ("node", "header")}
    view.set_thumbnails(maps)
    scene_rect = view.scene().sceneRect()
    leftmost = min(view.thumbnails.values(), key=lambda t: t.sceneBoundingRect().left())
    assert scene_rect.contains(leftmost.sceneBoundingRect()), (scene_rect, leftmost.sceneBoundingRect())
    # In the PNG (scale 1, scene's top-left at pixel 0): the thumbnail's whole width is the colormap's
    # brightest yellow, from its left edge on.
    png = QImage(str(window.exports.export_png(tmp_path / "g.png", 1.0)))
    r = leftmost.sceneBoundingRect().translated(-scene_rect.left(), -scene_rect.top())
    row = pixels(png)[int(r.center().y())]
    strip = row[int(r.left()) + 2:int(r.right()) - 2].astype(int)
    assert len(strip) > 0 and (strip[:, 0] > 200).all() and (strip[:, 1] > 200).all(), strip[:5]
    view.set_thumbnails(None)
    assert view.scene().sceneRect().left() == -40.0
