"""ActivationView: branches side by side from a Capture, sorting, scales, channel selection, stepping, exports."""

import csv

import numpy as np
import pytest
import torch
from netutil import calibrated_model, synthetic_batch
from PySide6.QtCore import QPoint, Qt

from explorer.core.microscope.activations import branch_stats
from explorer.core.graph.capture import CaptureModel
from explorer.qt.microscope.activation_view import ActivationView
from explorer.qt.microscope.branch_mosaics import GAP
from explorer.core.model.graphs import zoo_block_graph as load_block_graph

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
SIZE = 96


def display_image(x: torch.Tensor) -> np.ndarray:
    """The de-normalised RGB image the window would show for x."""
    return ((x * STD + MEAN)[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()


@pytest.fixture(scope="module")
def captured():
    graph = load_block_graph("googlenet")
    cm = CaptureModel(calibrated_model("googlenet"), graph)
    x = (synthetic_batch(2, SIZE, torch.Generator().manual_seed(5))[1:2] - MEAN) / STD
    return graph, cm.capture(x), display_image(x)


@pytest.fixture
def view(qtbot, captured):
    graph, cap, image = captured
    v = ActivationView()
    qtbot.addWidget(v)
    v.resize(1200, 800)
    v.show()
    v.set_capture(graph, cap, image)
    return v


def tiles(item) -> list[np.ndarray]:
    """The maps drawn in a branch's mosaic, in display order (row by row)."""
    h, w = item.tile
    cells = (divmod(i, item.columns) for i in range(item.count))
    return [item.image[r * (h + GAP): r * (h + GAP) + h, q * (w + GAP): q * (w + GAP) + w] for r, q in cells]


def test_block_shows_one_column_per_branch_with_the_engines_labels(qtbot, captured, view):
    graph, cap, _ = captured
    with qtbot.waitSignal(view.block_changed) as sig:
        view.show_block("inception3b")
    assert sig.args == ["inception3b"]
    with qtbot.waitSignal(view.block_changed):
        view.show_block("inception3a")
    node = graph.node("inception3a")
    titles = view.grid.titles
    assert len(titles) == 4 == len(view.grid.items)
    for k, (title, branch) in enumerate(zip(titles, node.branches)):
        assert branch.label in title and f"{branch.out_channels} ch" in title
        assert view.grid.items[k].count == branch.out_channels == cap.branch("inception3a", k).shape[1]
    stats = branch_stats(cap, graph, "inception3a")
    assert len(view.grid.stat_lines) == len(stats) == 4
    for line, s in zip(view.grid.stat_lines, stats):
        assert f"energy {s.energy_share * 100:.0f} %" in line and f"zeros {s.zero_fraction * 100:.0f} %" in line


def test_mosaic_tiles_are_the_captured_maps_on_the_chosen_scale(captured, view):
    _, cap, _ = captured
    view.show_block("inception4a")
    k = 2
    t = cap.branch("inception4a", k)[0].numpy()
    item = view.grid.items[k]
    h, w = item.tile

    def tile(i):
        r, q = divmod(i, item.columns)
        return item.image[r * (h + GAP): r * (h + GAP) + h, q * (w + GAP): q * (w + GAP) + w]

    lo, hi = t.min(), t.max()
    np.testing.assert_allclose(tile(5), (t[5] - lo) / (hi - lo), atol=1e-6)  # shared: one scale per branch
    view.set_scale("channel")
    assert view.scale_combo.currentData() == "channel"
    c = int(np.argmax(t.max(axis=(1, 2)) - t.min(axis=(1, 2))))
    m = t[c]
    np.testing.assert_allclose(tile(c), (m - m.min()) / (m.max() - m.min()), atol=1e-6)


def test_sorting_by_mean_orders_channels_by_descending_mean(captured, view):
    """What the mosaics draw: on the shared scale a tile is (map - lo) / (hi - lo) of its branch, so its mean
    is its channel's mean on that scale; in channel order the tiles follow the tensor, sorted by mean the
    tiles' means descend and are the same channels' means."""
    _, cap, _ = captured
    view.show_block("inception3a")

    def drawn_and_scaled_means(k):
        t = cap.branch("inception3a", k)[0].numpy()
        lo, hi = t.min(), t.max()
        drawn = np.array([tile.mean() for tile in tiles(view.grid.items[k])])
        return drawn, (t.mean(axis=(1, 2)) - lo) / (hi - lo)

    drawn, means = drawn_and_scaled_means(1)
    assert len(drawn) == 128
    np.testing.assert_allclose(drawn, means, rtol=1e-5, atol=1e-6)  # tensor order
    assert not np.all(np.diff(means) <= 1e-7)  # so that sorting has something to do
    view.order_combo.setCurrentIndex(view.order_combo.findData("mean"))  # through the control
    assert view.state.order == "mean"
    for k in range(4):
        drawn, means = drawn_and_scaled_means(k)
        assert len(drawn) == cap.branch("inception3a", k).shape[1]
        assert np.all(np.diff(drawn) <= 1e-6)
        np.testing.assert_allclose(drawn, np.sort(means)[::-1], rtol=1e-5, atol=1e-6)
    drawn, means = drawn_and_scaled_means(1)
    assert not np.allclose(drawn, means, rtol=1e-5, atol=1e-6)  # no longer in tensor order


def test_clicking_a_tile_selects_that_channel_and_enlarges_the_captured_map(qtbot, captured, view):
    _, cap, image = captured
    view.show_block("inception3a")
    view.set_order("mean")
    qtbot.wait(50)  # let the layout settle so that scene positions are final
    branch, position = 1, 7
    item = view.grid.items[branch]
    scene_pos = item.mapToScene(item.tile_center(position))
    widget_pos = view.grid.mapFromScene(scene_pos)
    with qtbot.waitSignal(view.channel_selected) as sig:
        qtbot.mouseClick(view.grid.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(widget_pos.x(), widget_pos.y()))
    block, got_branch, channel = sig.args
    assert (block, got_branch) == ("inception3a", branch) and view.state.selected == (branch, channel)
    t = cap.branch("inception3a", branch)[0].numpy()
    # The channel selected is the one drawn in the tile clicked (sorted by mean, not tensor order).
    assert channel != position
    np.testing.assert_allclose(tiles(item)[position], (t[channel] - t.min()) / (t.max() - t.min()), atol=1e-6)
    np.testing.assert_array_equal(view.detail_map(), t[channel])
    assert view.overlay_item.image.shape == image.shape[:2]
    assert f"channel {channel}" in view.detail_title.text
    view.opacity_slider.setValue(25)
    assert view.overlay_item.opacity() == pytest.approx(0.25)


def test_select_channel_by_index(qtbot, captured, view):
    _, cap, _ = captured
    view.show_block("inception5b")
    with qtbot.waitSignal(view.channel_selected) as sig:
        view.select_channel(3, 100)
    assert sig.args == ["inception5b", 3, 100]
    np.testing.assert_array_equal(view.detail_map(), cap.branch("inception5b", 3)[0, 100].numpy())
    with pytest.raises(KeyError):
        view.select_channel(3, 128)  # the pool projection has 128 channels


def test_keys_and_combo_step_through_blocks_from_the_capture(qtbot, captured, view):
    graph, _, _ = captured
    blocks = [b.name for b in graph.blocks()]
    view.show_block(blocks[0])
    view.setFocus()
    with qtbot.waitSignal(view.block_changed) as sig:
        qtbot.keyClick(view, Qt.Key.Key_Right)
    assert sig.args == [blocks[1]] and view.block_combo.currentText() == blocks[1]
    qtbot.keyClick(view, Qt.Key.Key_PageDown)
    assert view.state.block == blocks[2]
    qtbot.keyClick(view.grid, Qt.Key.Key_Left)  # the graphics view hands arrows to the block stepper
    assert view.state.block == blocks[1]
    qtbot.keyClick(view, Qt.Key.Key_PageUp)
    qtbot.keyClick(view, Qt.Key.Key_PageUp)  # stays on the first block
    assert view.state.block == blocks[0] and not view.prev_button.isEnabled()
    view.block_combo.setCurrentIndex(len(blocks) - 1)
    assert view.state.block == blocks[-1] and not view.next_button.isEnabled()
    assert len(view.grid.titles) == len(graph.node(blocks[-1]).branches)


def test_exports_write_pngs_and_a_csv_of_every_block(tmp_path, captured, view):
    graph, _, _ = captured
    view.show_block("inception4a")
    grid = view.export_grid_png(tmp_path / "grid.png")
    with pytest.raises(ValueError):
        view.export_map_png(tmp_path / "none.png")
    view.select_channel(0, 3)
    enlarged = view.export_map_png(tmp_path / "map.png")
    for p in (grid, enlarged):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 1000
    rows = list(csv.DictReader(view.export_stats_csv(tmp_path / "stats.csv").open(encoding="utf-8")))
    assert len(rows) == sum(len(b.branches) for b in graph.blocks())
    shares = {}
    for r in rows:
        shares.setdefault(r["block"], []).append(float(r["energy_share"]))
    for values in shares.values():
        assert sum(values) == pytest.approx(1, abs=1e-4)


def test_only_the_block_on_screen_is_read(qtbot, captured):
    """A capture stays where the forward ran (the GPU): showing a block reads that block's tensors
    and no other. Here every other tensor is on the meta device, where reading one raises."""
    from explorer.core.graph.capture import Capture

    graph, cap, image = captured
    first = graph.blocks()[0].name
    meta = Capture(
        logits=cap.logits.to("meta"),
        outputs={k: t if k == first else t.to("meta") for k, t in cap.outputs.items()},
        branches={k: ts if k == first else [t.to("meta") for t in ts] for k, ts in cap.branches.items()},
        graph_name=cap.graph_name,
    )
    v = ActivationView()
    qtbot.addWidget(v)
    v.show()
    v.set_capture(graph, meta, image)  # lists every block, reads the first
    assert v.state.block == first and v.blocks() == [b.name for b in graph.blocks()]
    v.set_order("mean")
    v.set_scale("channel")
    v.select_channel(2, 5)
    np.testing.assert_array_equal(v.detail_map(), cap.branch(first, 2)[0, 5].numpy())
    with pytest.raises((NotImplementedError, RuntimeError)):
        v.show_block(graph.blocks()[1].name)  # the test has teeth: a meta tensor cannot be read


def test_in_a_laptops_dock_every_branch_and_the_enlarged_map_have_room(qtbot, captured):
    """In the Activations dock of a 1280×800 laptop (about 860×330, beside the Details column) all four branches
    of inception4a are on screen side by side, each mosaic at least 100 px, and the enlarged channel beside them
    at least 180 px (they were ~75 px and ~30 px, the fourth branch cut off)."""
    graph, cap, image = captured
    v = ActivationView()
    qtbot.addWidget(v)
    v.resize(860, 330)
    v.show()
    v.set_capture(graph, cap, image)
    v.show_block("inception4a")
    v.select_channel(1, 3)
    qtbot.wait(100)
    grid = v.grid
    shown = grid.viewport().rect() if hasattr(grid, "viewport") else grid.rect()
    for col in grid.columns:
        rect = col.box.mapRectToScene(col.box.boundingRect())
        on_screen = grid.mapFromScene(rect).boundingRect()
        assert shown.contains(on_screen), (on_screen, shown)
        assert min(on_screen.width(), on_screen.height()) >= 100, on_screen
    detail = v.detail  # the enlarged map and the image, drawn side by side
    assert min(detail.width(), detail.height()) >= 180, (detail.width(), detail.height())
